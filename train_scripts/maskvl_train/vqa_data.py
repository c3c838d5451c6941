"""VQA data for VQA fine-tuning (`vqa_finetuning`): easy-VQA (the `easy-vqa` PyPI package) and VQAv2-format data.

Every loader returns a `datasets.Dataset` with the same columns:

* `image` (`datasets.Image`), `question` (str),
* `answers` (list[str]): one answer (easy-VQA) or the annotators' answers (VQAv2: ten),
* `question_type` (str): the group reported separately — easy-VQA: `shape` / `color` / `yes/no`
  (from the answer; the package has no type field); VQAv2: the `answer_type` column
  (`yes/no`, `number`, `other`) unless another column is named; `all` when there is none.

Sources:

* `load_easy_vqa(split)` — 38,575 train / 9,673 test questions about 64×64 shape images, 13 answers
  (the package's own files; nothing is downloaded).
* `load_vqa_dataset(dataset_name=...)` — a Hub data set in VQAv2 format (needs network), e.g. columns
  `image`, `question`, `answers` (list of `{"answer": ...}` dicts or strings), `answer_type`.
* `load_vqa_dataset(data_dir=...)` — a folder with `<split>.jsonl` (one question per line: `image`
  (path relative to the folder), `question`, `answers` or `answer`, optional `answer_type`) and the images.

Targets: `answer_vocabulary` picks the most frequent answers of the training split;
`answer_targets` gives an int label (single-answer data: cross-entropy) or VQAv2 soft scores
`min(1, #annotators who gave the answer / 3)` (multi-answer data: BCE).
"""

import json
import os
from collections import Counter

import datasets
from maskvl_processing.masking_primitives import IGNORE_INDEX

EASY_VQA_SHAPES = ("circle", "rectangle", "triangle")
EASY_VQA_COLORS = ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")
VQA_FEATURES = datasets.Features({
    "image": datasets.Image(),
    "question": datasets.Value("string"),
    "answers": datasets.List(datasets.Value("string")),
    "question_type": datasets.Value("string"),
})


def easy_vqa_question_type(answer: str) -> str:
    """`shape`, `color` or `yes/no` from an easy-VQA answer."""
    if answer in ("yes", "no"):
        return "yes/no"
    if answer in EASY_VQA_SHAPES:
        return "shape"
    if answer in EASY_VQA_COLORS:
        return "color"
    raise ValueError(f"unknown easy-VQA answer {answer!r}")


def load_easy_vqa(split: str = "train") -> datasets.Dataset:
    """easy-VQA `train` or `test` in the common VQA columns (images are read lazily from the package)."""
    from easy_vqa import get_test_image_paths, get_test_questions, get_train_image_paths, get_train_questions

    if split not in ("train", "test"):
        raise ValueError(f"easy-VQA has splits 'train' and 'test', got {split!r}")
    questions, answers, image_ids = get_train_questions() if split == "train" else get_test_questions()
    paths = get_train_image_paths() if split == "train" else get_test_image_paths()
    missing = sorted({i for i in image_ids if i not in paths})
    if missing:
        raise FileNotFoundError(f"easy-VQA {split}: no image file for image ids {missing[:5]}")
    return datasets.Dataset.from_dict(
        {
            "image": [paths[i] for i in image_ids],
            "question": list(questions),
            "answers": [[a] for a in answers],
            "question_type": [easy_vqa_question_type(a) for a in answers],
        },
        features=VQA_FEATURES,
    )


def _answer_strings(value, row: int) -> list[str]:
    """VQAv2 answers (list of dicts with `answer`, list of str, or one str) -> list of str."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict) and "answer" in value:  # columnar struct: {"answer": [...], ...}
        value = value["answer"]
        return [value] if isinstance(value, str) else [str(a) for a in value]
    if isinstance(value, (list, tuple)):
        return [str(a["answer"]) if isinstance(a, dict) else str(a) for a in value]
    raise ValueError(f"row {row}: cannot read answers from {type(value).__name__} {value!r}")


def standardise_vqa(dataset: datasets.Dataset, image_column="image", question_column="question",
                    answers_column="answers", question_type_column=None) -> datasets.Dataset:
    """Rename / convert a VQA data set to the columns `image`, `question`, `answers`, `question_type`."""
    names = dataset.column_names
    if answers_column not in names and "answer" in names and answers_column == "answers":
        answers_column = "answer"
    for kind, column in (("image", image_column), ("question", question_column), ("answers", answers_column)):
        if column not in names:
            raise ValueError(f"{kind} column {column!r} not found; available columns: {names}")
    if question_type_column is None:
        question_type_column = next((c for c in ("answer_type", "question_type") if c in names), None)
    elif question_type_column not in names:
        raise ValueError(f"question type column {question_type_column!r} not found; available columns: {names}")

    def convert(batch, indices):
        return {
            "question": batch[question_column],
            "answers": [_answer_strings(a, i) for a, i in zip(batch[answers_column], indices)],
            "question_type": [str(t) for t in batch[question_type_column]] if question_type_column
            else ["all"] * len(indices),
        }

    converted = dataset.map(convert, batched=True, with_indices=True, remove_columns=[
        c for c in names if c != image_column], desc="VQA columns")
    if image_column != "image":
        converted = converted.rename_column(image_column, "image")
    if not isinstance(converted.features["image"], datasets.Image):
        converted = converted.cast_column("image", datasets.Image())
    return converted.cast(VQA_FEATURES)


def load_vqa_dataset(dataset_name: str | None = None, dataset_config_name: str | None = None,
                     data_dir: str | None = None, split: str = "train", **columns) -> datasets.Dataset:
    """A VQAv2-format split from the Hub (`dataset_name`) or a local folder (`data_dir/<split>.jsonl`)."""
    if (dataset_name is None) == (data_dir is None):
        raise ValueError("give exactly one of dataset_name and data_dir")
    if dataset_name is not None:
        dataset = datasets.load_dataset(dataset_name, dataset_config_name, split=split)
        return standardise_vqa(dataset, **columns)
    path = os.path.join(data_dir, f"{split}.jsonl")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"VQA folder {data_dir!r} has no {split}.jsonl")
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path} line {number}: not JSON ({error})") from None
    if not rows:
        raise ValueError(f"{path} holds no question")
    image_column = columns.get("image_column", "image")
    for number, row in enumerate(rows, start=1):
        if image_column not in row:
            raise ValueError(f"{path} line {number}: no {image_column!r} field (fields: {sorted(row)})")
        image = os.path.join(data_dir, row[image_column])
        if not os.path.isfile(image):
            raise FileNotFoundError(f"{path} line {number}: image {image!r} does not exist")
        row[image_column] = image
    keys = sorted({key for row in rows for key in row})
    dataset = datasets.Dataset.from_dict({key: [row.get(key) for row in rows] for key in keys})
    return standardise_vqa(dataset, **columns)


def answer_vocabulary(answer_lists, max_answers: int | None = None) -> list[str]:
    """Answers by frequency (ties alphabetical), at most `max_answers` of them."""
    counts = Counter(answer for answers in answer_lists for answer in answers)
    ranked = sorted(counts, key=lambda answer: (-counts[answer], answer))
    return ranked[:max_answers] if max_answers else ranked


def is_multi_answer(answer_lists) -> bool:
    """True when some question has several annotator answers (VQAv2): use soft scores."""
    return any(len(answers) > 1 for answers in answer_lists)


def answer_targets(answers: list[str], label2id: dict, soft: bool):
    """An int label (the most frequent answer; -100 when it is outside the vocabulary) or soft scores
    (list of floats over the vocabulary, `min(1, count / 3)`)."""
    if soft:
        scores = [0.0] * len(label2id)
        for answer, count in Counter(answers).items():
            if answer in label2id:
                scores[label2id[answer]] = min(1.0, count / 3)
        return scores
    top = Counter(answers).most_common(1)[0][0] if answers else None
    return label2id.get(top, IGNORE_INDEX)


__all__ = [
    "VQA_FEATURES",
    "easy_vqa_question_type",
    "load_easy_vqa",
    "standardise_vqa",
    "load_vqa_dataset",
    "answer_vocabulary",
    "is_multi_answer",
    "answer_targets",
]
