"""The ITC / vision-tower attribute diagnostic (bench/diagnostics/itc_attributes.py, docs/pretraining.md item 9):
its scoring on hand-made encoders, and a run on a tiny saved checkpoint."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from maskvl_processing.synthetic_scenes import COLORS, SHAPES, SIZES, TEXTURES

from test_eval_checkpoints import tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def itc_attributes():
    spec = importlib.util.spec_from_file_location("itc_attributes", ROOT / "bench" / "diagnostics" / "itc_attributes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ColourOnlyEncoder:
    """Images and captions embedded as the one-hot of their colour: matches colour, nothing else."""
    image_size = 32

    @staticmethod
    def _onehot(index: int) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.tensor(index), len(COLORS)).float()

    def image(self, objects):
        embeds = torch.stack([self._onehot(list(COLORS).index(o.color)) for o in objects])
        return embeds, embeds, embeds

    def text(self, captions):
        def colour(caption):
            found = [i for i, c in enumerate(COLORS) if f" {c} " in caption]
            return self._onehot(found[0]) if found else torch.ones(len(COLORS)) / len(COLORS) ** 0.5
        return torch.stack([colour(c) for c in captions])


def test_itc_match_scores_the_attribute_the_embeddings_carry_and_chance_otherwise(itc_attributes):
    result = itc_attributes.itc_match(ColourOnlyEncoder(), num_bases=3, rng=np.random.default_rng(0))
    assert result["colour"]["itc_match"] == 1.0
    assert result["colour"]["image_cosine_between_values"] == 0.0  # one-hots of different colours
    # every variant of a size / texture / shape base has the same colour: all images tie, argmax picks the first
    for name, values in (("size", SIZES), ("texture", TEXTURES), ("shape", SHAPES)):
        assert result[name]["itc_match"] == pytest.approx(1 / len(values))
        assert result[name]["chance"] == pytest.approx(1 / len(values))
        assert result[name]["image_cosine_between_values"] == pytest.approx(1.0)


def test_ridge_probe_separates_separable_classes_and_not_noise(itc_attributes):
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (400,), generator=generator)
    informative = torch.nn.functional.one_hot(labels, 4).float() * 3 + torch.randn(400, 4, generator=generator) * 0.1
    noise = torch.randn(400, 8, generator=generator)
    assert itc_attributes.ridge_accuracy(informative[:300], labels[:300], informative[300:], labels[300:], 4) == 1.0
    assert itc_attributes.ridge_accuracy(noise[:300], labels[:300], noise[300:], labels[300:], 4) < 0.45


def test_itc_attributes_runs_on_a_saved_checkpoint(itc_attributes, monkeypatch, capsys):
    folder = tiny_checkpoint()
    monkeypatch.setattr(sys, "argv", ["itc_attributes.py", folder, "--num_bases", "2", "--num_train", "40",
                                      "--num_test", "20"])
    itc_attributes.main()
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith(f"| {folder} |")]
    assert [row.split(" | ")[1] for row in rows] == ["colour", "size", "texture", "shape"]
    result = json.loads(next(line for line in lines if line.startswith("JSON "))[5:])
    assert set(result["itc"]) == set(result["probe"]) == set(result["probe_at_init"]) == {"colour", "size", "texture",
                                                                                         "shape"}
    for part in ("probe", "probe_at_init"):
        for scores in result[part].values():
            assert 0.0 <= scores["cls"] <= 1.0 and 0.0 <= scores["mean_patch"] <= 1.0
    assert result["logit_scale"] > 0
