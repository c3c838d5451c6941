"""Model cards: valid Hub metadata, the run's real numbers, evaluation JSON folded into model-index,
nothing machine-specific."""

import getpass
import json
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import ModelCard

from maskvl_train.metrics import model_index_results
from maskvl_train.model_card import (check_no_machine_details, load_eval_results, render_model_card, usage_snippet,
                        write_model_card)
from modeling_maskvl import MaskVLConfig, MaskVLForPreTraining, MaskVLForQuestionAnswering

# What pretrain.py's training_summary() passes (same keys and value kinds).
SUMMARY = {
    "preset": "maskvlm-tiny", "dataset": "synthetic_scenes", "dataset_description": "synthetic scenes",
    "text_masking": {"name": "objects", "rate": 0.15}, "image_masking": {"name": "block", "ratio": 0.6},
    "joint_masking": {"name": "maskvlm"}, "itm_negatives": "in_batch", "max_steps": 120, "num_train_epochs": None,
    "metrics": {"eval_loss": 4.8125, "eval_mlm_accuracy": 0.2734, "eval_mlm_loss": 3.0417,
                "frequency_baseline_accuracy": 0.1172, "eval_itm_loss": None},
    "num_train_examples": 1800, "num_eval_examples": 200, "seed": 7,
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = MaskVLForPreTraining(MaskVLConfig.from_preset("maskvlm-tiny", vision_config={"image_size": 32}))
    folder = tmp_path_factory.mktemp("cards") / "maskvlm-objects"
    model.save_pretrained(folder)
    return folder, model.num_parameters()


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_card_round_trips_with_valid_metadata(checkpoint):
    folder, _ = checkpoint
    path = write_model_card(folder, SUMMARY)
    assert path == folder / "README.md"
    card = ModelCard.load(path, ignore_metadata_errors=False)
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0" and data["library_name"] == "transformers"
    assert data["pipeline_tag"] == "fill-mask"
    assert {"maskvl", "maskvlm", "text-masking-objects", "image-masking-block"} <= set(data["tags"])
    assert data["widget"][0]["text"].count("[MASK]") == 1 and data["widget"][0]["src"].startswith("https://")
    assert front_matter(path.read_text()) == data  # the YAML header is what the card data says
    again = ModelCard(str(card))
    assert again.data.to_dict() == data and again.text == card.text


def test_card_reports_the_run(checkpoint):
    folder, num_parameters = checkpoint
    card = render_model_card(folder, SUMMARY, repo_id="someone/maskvlm-objects")
    results = {r.metric_name: (r.metric_type, r.metric_value) for r in card.data.eval_results}
    assert results == {k: ("accuracy" if "accuracy" in k else "loss", v)
                       for k, v in SUMMARY["metrics"].items() if v is not None}
    assert all(r.dataset_split == "validation" and r.task_type == "fill-mask" for r in card.data.eval_results)
    text = str(card)
    for value in ("4.812", "0.2734", "0.1172", "1800", "120 optimisation steps", "`objects`", "rate=0.15", "seed: 7",
                  f"{num_parameters / 1e6:.1f}M", "32 x 32 pixels", "hidden size 64"):
        assert value in text, value
    for section in ("## Model", "## How to use", "## Training data and masking", "## Metrics", "## Limitations",
                    "## Citation"):
        assert section in text
    for title in ("Data Efficient Masked Language Modeling for Vision and Language",
                  "Masked Vision and Language Modeling for Multi-modal Representation Learning",
                  "{MLIM}: Vision-and-Language Model Pre-training with Masked Language and Image Modeling"):
        assert title in text
    assert "Findings of the Association for Computational Linguistics: EMNLP 2021" in text
    assert '"someone/maskvlm-objects"' in text


def test_three_line_snippet_is_python_naming_the_repo():
    snippet = usage_snippet("someone/maskvlm-objects")
    assert len(snippet.splitlines()) == 3
    compile(snippet, "<card snippet>", "exec")
    assert 'pipeline("image-fill-mask", model="someone/maskvlm-objects", trust_remote_code=True)' in snippet
    vqa = usage_snippet("someone/vqa", task="visual-question-answering")
    assert "question=" in vqa and len(vqa.splitlines()) == 3


def test_vqa_checkpoint_gets_a_vqa_card(tmp_path):
    config = MaskVLConfig.from_preset("maskvlm-tiny", vision_config={"image_size": 32}, num_labels=3)
    MaskVLForQuestionAnswering(config).save_pretrained(tmp_path / "vqa")
    from maskvl_processing.pipelines_maskvl import save_pipelines

    save_pipelines(tmp_path / "vqa")  # as publish does: the card shows the pipelines the folder holds
    card = render_model_card(tmp_path / "vqa", {"preset": "maskvlm-tiny"}, repo_id="someone/vqa")
    assert card.data.pipeline_tag == "visual-question-answering"
    assert 'pipeline("visual-question-answering"' in str(card) and "MaskVLForQuestionAnswering" in str(card)


def test_nothing_machine_specific(checkpoint, tmp_path):
    folder, _ = checkpoint
    local_data = tmp_path / "private" / "my_captions"
    summary = {**SUMMARY, "dataset": str(local_data), "text_model_name_or_path": str(tmp_path / "minilm"),
               "base_models": ["sentence-transformers/all-MiniLM-L6-v2"]}
    write_model_card(folder, summary)
    text = (folder / "README.md").read_text()
    assert str(tmp_path) not in text and str(Path.home()) not in text
    assert "my_captions" in text  # the data set keeps its name, not its location
    data = ModelCard.load(folder / "README.md").data
    assert data.base_model == ["sentence-transformers/all-MiniLM-L6-v2"] and data.datasets is None
    assert str(tmp_path) not in (folder / "training_summary.json").read_text()


@pytest.mark.parametrize("text, message", [
    ("see /tmp/run/ckpt for the weights", "local path"),
    (f"saved in {Path.home()}/runs", "home directory"),
    ("token hf_" + "aB3" * 12, "token"),
])
def test_machine_details_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        check_no_machine_details(text)
    check_no_machine_details("https://huggingface.co/datasets/huggingface/documentation-images")  # URLs are fine


def test_machine_details_refuse_the_user_name(monkeypatch):
    monkeypatch.setattr(getpass, "getuser", lambda: "jdoe42")
    with pytest.raises(ValueError, match="user name 'jdoe42'"):
        check_no_machine_details("trained by jdoe42 on a laptop")


def image_necessity_report(names):
    """An image_necessity.json as evaluate_image_necessity.py writes it (model_index built by its helper)."""
    checkpoints = []
    for i, name in enumerate(names):
        metrics = [("accuracy", 0.61 + i / 10, "Acc@5 with image (objects mask)"),
                   ("loss", 1.25 + i, "Δ loss without image (objects mask)")]
        entry = model_index_results("fill-mask", "image necessity", "maskvl-synthetic-scenes",
                                    "maskvl-synthetic-scenes", metrics, "test")
        checkpoints.append({"checkpoint": f"/scratch/runs/{name}", "name": name, "masks": {}, "model_index": [entry]})
    return {"schema_version": 1, "task": "image_necessity", "checkpoints": checkpoints}


def test_evaluation_json_folds_into_model_index(checkpoint, tmp_path):
    folder, _ = checkpoint
    necessity = tmp_path / "image_necessity.json"
    necessity.write_text(json.dumps(image_necessity_report(["random-run", "maskvlm-objects"])))
    vqa = tmp_path / "vqa_results.json"
    vqa.write_text('{"task": {"type": "visual-question-answering", "name": "easy-VQA"}, '
                   '"dataset": {"type": "easy-vqa", "name": "easy-VQA", "split": "test"}, '
                   '"metrics": {"accuracy": 0.875, "num_questions": 512}}')
    card = render_model_card(folder, SUMMARY, load_eval_results([necessity, vqa]), repo_id="someone/m")
    by_name = {(r.task_name, r.metric_name): r for r in card.data.eval_results}
    # the entry of the checkpoint named like the published folder, not the other one
    assert by_name[("image necessity", "Acc@5 with image (objects mask)")].metric_value == pytest.approx(0.71)
    assert by_name[("image necessity", "Δ loss without image (objects mask)")].metric_value == pytest.approx(2.25)
    assert by_name[("image necessity", "Acc@5 with image (objects mask)")].dataset_split == "test"
    assert by_name[("easy-VQA", "accuracy")].metric_value == 0.875
    assert by_name[("easy-VQA", "accuracy")].task_type == "visual-question-answering"
    text = str(card)
    assert "| Acc@5 with image (objects mask) | 0.71 |" in text and "0.875" in text
    assert "/scratch/runs" not in text


def test_bad_evaluation_results_name_the_file(checkpoint, tmp_path):
    folder, _ = checkpoint
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_eval_results([tmp_path / "missing.json"])
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        load_eval_results([tmp_path / "broken.json"])
    with pytest.raises(ValueError, match="'notes' holds no numeric metric"):
        render_model_card(folder, SUMMARY, {"notes": {"comment": "looks fine"}})
    with pytest.raises(ValueError, match="several checkpoints"):
        render_model_card(folder, SUMMARY, {"image_necessity": image_necessity_report(["a", "b"])})
