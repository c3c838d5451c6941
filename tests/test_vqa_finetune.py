"""VQA fine-tuning (train_scripts/finetune_vqa.py -> maskvl_train.vqa_finetuning) and maskvl_train.vqa_data: loaders, targets, the accuracy metric, end-to-end runs."""

import json
import os

import evaluate
import pytest
from maskvl_train import vqa_finetuning as finetune_vqa
from maskvl_train.vqa_data import answer_targets, answer_vocabulary, is_multi_answer, load_easy_vqa, load_vqa_dataset
from PIL import Image
from test_eval_checkpoints import tiny_checkpoint, tiny_tokenizer


def test_easy_vqa_loads_with_question_types_from_the_answers():
    test = load_easy_vqa("test")
    assert len(test) == 9673 and test.column_names == ["image", "question", "answers", "question_type"]
    row = test[0]
    assert row["image"].size == (64, 64) and len(row["answers"]) == 1
    kinds = dict(zip(test["question_type"][:200], test["answers"][:200]))
    assert set(test["question_type"]) == {"shape", "color", "yes/no"}
    assert all(answer[0] in ("yes", "no") for kind, answer in kinds.items() if kind == "yes/no")
    assert len(answer_vocabulary(load_easy_vqa("train")["answers"])) == 13
    with pytest.raises(ValueError, match="'validation'"):
        load_easy_vqa("validation")


def test_answer_targets_hard_and_vqav2_soft_scores():
    label2id = {"yes": 0, "no": 1, "2": 2}
    assert answer_targets(["no"], label2id, soft=False) == 1
    assert answer_targets(["maybe"], label2id, soft=False) == -100
    annotators = ["yes"] * 7 + ["no"] * 2 + ["maybe"]
    assert answer_targets(annotators, label2id, soft=True) == pytest.approx([1.0, 2 / 3, 0.0])
    assert is_multi_answer([["a"], annotators]) and not is_multi_answer([["a"], ["b"]])
    assert answer_vocabulary([["b", "a"], ["a"], ["c", "b"]], max_answers=2) == ["a", "b"]


def test_vqa_accuracy_metric_loads_offline_and_scores_hard_and_soft_labels():
    metric = evaluate.load(finetune_vqa.METRIC_DIR)
    hard = metric.compute(predictions=[1, 0, 2, 2], references=[1, 2, 2, -100], question_types=["a", "b", "a", "b"])
    assert hard["accuracy"] == 0.5 and hard["accuracy_by_type"] == {"a": 1.0, "b": 0.0}
    assert hard["count_by_type"] == {"a": 2, "b": 2}
    soft = metric.compute(predictions=[1, 0], references=[[0.0, 0.3, 1.0], [0.6, 0.0, 0.0]])
    assert soft["accuracy"] == pytest.approx(0.45)


def test_unknown_question_words_become_unk_and_are_counted():
    tokenizer = tiny_tokenizer()  # trained on synthetic captions: no "rectangle", "teal" or "?"
    oov = finetune_vqa.oov_rate(tokenizer, ["what color is the teal rectangle?", "a red circle."])
    assert oov["num_questions"] == 2 and oov["question_rate"] == 0.5
    assert 0.0 < oov["token_rate"] < 1.0 and oov["unk_token"] == "[UNK]"


def make_vqa_folder(root, n=12):
    """A VQAv2-format folder: ten annotator answers per question, answer_type, image files."""
    os.makedirs(root / "images")
    for split in ("train", "test"):
        with open(root / f"{split}.jsonl", "w") as handle:
            for i in range(n):
                colour = ("red", "blue")[i % 2]
                Image.new("RGB", (48, 40), colour).save(root / "images" / f"{split}{i}.png")
                answers = [{"answer": "yes" if colour == "red" else "no"}] * 8 + [{"answer": "maybe"}] * 2
                handle.write(json.dumps({"image": f"images/{split}{i}.png", "question": "is it red?",
                                         "answers": answers, "answer_type": "yes/no"}) + "\n")
    return root


def test_vqav2_folder_loads_with_soft_answers_and_bad_rows_are_named(tmp_path):
    folder = make_vqa_folder(tmp_path / "vqa", n=4)
    train = load_vqa_dataset(data_dir=str(folder), split="train")
    assert train.column_names == ["image", "question", "answers", "question_type"]
    assert len(train[0]["answers"]) == 10 and train[0]["question_type"] == "yes/no"
    assert is_multi_answer(list(train["answers"]))
    with open(folder / "test.jsonl", "a") as handle:
        handle.write(json.dumps({"image": "images/missing.png", "question": "q", "answers": ["no"]}) + "\n")
    with pytest.raises(FileNotFoundError, match="line 5.*missing.png"):
        load_vqa_dataset(data_dir=str(folder), split="test")
    with pytest.raises(FileNotFoundError, match="validation.jsonl"):
        load_vqa_dataset(data_dir=str(folder), split="validation")


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="train_fraction.*1.5"):
        finetune_vqa.VQAArguments(checkpoint=tiny_checkpoint(), train_fraction=[0.5, 1.5])
    with pytest.raises(FileNotFoundError, match="no-such-ckpt"):
        finetune_vqa.VQAArguments(checkpoint=str(tmp_path / "no-such-ckpt"))


@pytest.mark.slow
def test_end_to_end_easy_vqa_fractions_and_seeds(tmp_path):
    out = tmp_path / "vqa"
    results = finetune_vqa.main([
        "--checkpoint", tiny_checkpoint(), "--output_dir", str(out), "--max_train_samples", "96",
        "--max_test_samples", "48", "--train_fraction", "0.5", "1.0", "--seeds", "0", "1",
        "--num_train_epochs", "1", "--per_device_train_batch_size", "32", "--disable_tqdm", "true",
    ])
    saved = json.loads((out / "vqa_results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["schema_version"] == 1 and saved["dataset"]["name"] == "easy-VQA"
    assert saved["dataset"]["label_type"] == "hard" and saved["dataset"]["test_size"] == 48
    assert [(r["train_fraction"], r["seed"], r["num_train_examples"]) for r in saved["runs"]] == [
        (0.5, 0, 48), (0.5, 1, 48), (1.0, 0, 96), (1.0, 1, 96)]
    for run in saved["runs"]:
        assert 0.0 <= run["accuracy"] <= 1.0 and set(run["accuracy_by_type"]) <= {"shape", "color", "yes/no"}
    summary = saved["summary"]["1.0"]["accuracy"]
    runs = [r["accuracy"] for r in saved["runs"] if r["train_fraction"] == 1.0]
    assert summary["n"] == 2 and summary["mean"] == pytest.approx(sum(runs) / 2)
    assert saved["oov"]["token_rate"] > 0  # easy-VQA words outside the synthetic-caption vocabulary
    metrics = saved["model_index"][0]["metrics"]
    assert saved["model_index"][0]["task"]["type"] == "visual-question-answering" and len(metrics) == 2
    assert "| 1.0 | 96 |" in (out / "vqa_results.md").read_text()


@pytest.mark.slow
def test_end_to_end_vqav2_folder_uses_soft_scores(tmp_path):
    folder = make_vqa_folder(tmp_path / "vqa")
    out = tmp_path / "out"
    results = finetune_vqa.main([
        "--checkpoint", tiny_checkpoint(), "--data_dir", str(folder), "--output_dir", str(out),
        "--num_train_epochs", "1", "--per_device_train_batch_size", "8", "--disable_tqdm", "true",
    ])
    assert results["dataset"]["label_type"] == "soft" and results["dataset"]["answers"] == ["no", "yes", "maybe"]
    run = results["runs"][0]
    assert list(run["accuracy_by_type"]) == ["yes/no"]
    # soft scores: predicting "maybe" earns 2/3, "yes"/"no" on the right image 1, else 0
    assert run["accuracy"] * 12 * 3 == pytest.approx(round(run["accuracy"] * 12 * 3), abs=1e-4)
