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


def load_diagnostic(name: str):
    """A script of bench/diagnostics/ as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "diagnostics" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def itc_attributes():
    return load_diagnostic("itc_attributes")


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


def _run_folder(path: Path, itc: float, attribute_gap: float) -> str:
    path.mkdir()
    (path / "all_results.json").write_text(json.dumps({
        "eval_itc_loss": itc, "eval_mlm_accuracy": 0.6, "eval_itm_accuracy": 0.8,
        "eval_image_acc1_attribute": 0.1 + attribute_gap, "eval_blank_acc1_attribute": 0.1,
        "eval_image_acc1_object": 0.05, "eval_blank_acc1_object": 0.05}))
    return str(path)


def test_seed_table_pairs_settings_by_seed_and_judges_by_the_interval(tmp_path, monkeypatch, capsys):
    seed_table = load_diagnostic("seed_table")
    a = [_run_folder(tmp_path / f"a{i}", itc, gap) for i, (itc, gap) in enumerate([(3.0, 0.10), (2.9, 0.02), (3.1, 0.2)])]
    b = [_run_folder(tmp_path / f"b{i}", itc, gap) for i, (itc, gap) in enumerate([(2.6, 0.12), (2.5, 0.0), (2.7, 0.25)])]
    monkeypatch.setattr(sys, "argv", ["seed_table.py", "cls=" + ",".join(a), "mean=" + ",".join(b)])
    seed_table.main()
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in capsys.readouterr().out.splitlines()}
    itc = rows["held-out ITC loss"]
    assert itc[1].startswith("3.000 [") and itc[2].startswith("2.600 [")
    assert itc[3] == "-0.400 [-0.400, -0.400]" and itc[4].strip(" |") == "yes, lower"  # same drop on every seed
    gap = rows["attribute gap (points)"]
    assert gap[3].startswith("1.667 [") and gap[4].strip(" |") == "no"  # +2, -2, +5 points: the interval holds 0
    assert rows["colour Acc@1 with the scene"][1] == "–"  # no attribute_types records given


def test_seed_table_names_a_folder_that_is_not_a_finished_run(tmp_path, monkeypatch):
    seed_table = load_diagnostic("seed_table")
    monkeypatch.setattr(sys, "argv", ["seed_table.py", f"x={tmp_path}"])
    with pytest.raises(SystemExit, match=f"{tmp_path}: no all_results.json"):
        seed_table.main()
