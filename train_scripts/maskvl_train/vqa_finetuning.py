"""Fine-tune a MaskVL pre-training checkpoint for visual question answering; report test accuracy.

`MaskVLForQuestionAnswering.from_pretrained(checkpoint, num_labels, id2label, label2id)` (the
answer head is new, everything else comes from the checkpoint) is trained with the `Trainer` on
a fraction of the training questions, then scored on the test split: accuracy overall and per
question type. Every (train fraction, seed) pair is a separate run from the same checkpoint; the
subset of a fraction is fixed by `--subset_seed` (nested: the 10% subset is part of the 20% one),
`--seeds` change the head initialisation and the data order. Scores use the local `evaluate`
module `maskvl_train/vqa_accuracy` (hard labels: exact match; VQAv2 soft scores: the
score of the predicted answer, `min(1, #annotators / 3)`).

Data (`vqa_data`): easy-VQA by default (the `easy-vqa` package: real 64×64 shape images,
resized by the checkpoint's image processor); `--dataset_name` (Hub, VQAv2 format, soft scores)
or `--data_dir` (a folder with `train.jsonl` / `test.jsonl`) go through the same code. Questions
are tokenised with the checkpoint's tokenizer; words it does not know become [UNK] (no error) and
the share of [UNK] word-pieces is reported (`oov`).

Launch commands and output files: `train_scripts/finetune_vqa.py`
(console script `maskvl-finetune-vqa`).
"""

import json
import logging
import os
import time
from dataclasses import dataclass, field

import evaluate
import torch
from maskvl_processing import MaskVLDataError, MaskVLProcessor, load_image
from maskvl_processing.masking_primitives import IGNORE_INDEX
from transformers import AutoModelForVisualQuestionAnswering, Trainer, TrainingArguments, set_seed

import modeling_maskvl  # noqa: F401  (registers the Auto classes)

from .arguments import parse_args
from .checkpoints import check_checkpoint_argument
from .metrics import mean_and_spread, model_index_results
from .vqa_data import answer_targets, answer_vocabulary, is_multi_answer, load_easy_vqa, load_vqa_dataset

logger = logging.getLogger(__name__)
METRIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vqa_accuracy")


@dataclass
class VQAArguments:
    """Checkpoint, data and the fractions / seeds to run."""

    checkpoint: str = field(default=None, metadata={"help": "Pre-training checkpoint folder (model + processor)."})
    dataset_name: str | None = field(default=None, metadata={"help": "Hub VQA data set (VQAv2 format)."})
    dataset_config_name: str | None = field(default=None)
    data_dir: str | None = field(default=None, metadata={"help": "Folder with <split>.jsonl and the images."})
    train_split: str = field(default="train")
    test_split: str = field(default="test")
    image_column: str = field(default="image")
    question_column: str = field(default="question")
    answers_column: str = field(default="answers")
    question_type_column: str | None = field(
        default=None, metadata={"help": "Column of the reported groups (default answer_type / question_type)."}
    )
    train_fraction: list[float] = field(default_factory=lambda: [1.0], metadata={"help": "e.g. 0.1 0.2 0.5 1.0"})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "Training seeds (mean and spread)."})
    subset_seed: int = field(default=0, metadata={"help": "Seed of the training subsets (same for every seed)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Training pool before the fractions."})
    max_test_samples: int | None = field(default=None, metadata={"help": "Score only this many test questions."})
    max_answers: int | None = field(default=None, metadata={"help": "Answer vocabulary size (VQAv2: 3129)."})
    max_question_length: int = field(default=32, metadata={"help": "Questions are truncated to this many word-pieces."})

    def __post_init__(self):
        check_checkpoint_argument(self.checkpoint)
        if self.dataset_name and self.data_dir:
            raise ValueError("give at most one of --dataset_name and --data_dir")
        bad = [f for f in self.train_fraction if not 0.0 < f <= 1.0]
        if bad:
            raise ValueError(f"--train_fraction values must be in (0, 1], got {bad}")
        if not self.seeds:
            raise ValueError("--seeds needs at least one seed")

    @property
    def dataset_label(self) -> str:
        return self.dataset_name or (f"folder {os.path.basename(os.path.normpath(self.data_dir))}" if self.data_dir
                                     else "easy-VQA")


@dataclass
class VQATrainingArguments(TrainingArguments):
    """transformers' `TrainingArguments` with defaults for a tiny model on CPU (no checkpoints saved)."""

    output_dir: str | None = field(default="outputs/vqa", metadata={"help": "Where the results go."})
    num_train_epochs: float = field(default=3.0)
    learning_rate: float = field(default=1e-3)
    per_device_train_batch_size: int = field(default=64)
    per_device_eval_batch_size: int = field(default=128)
    warmup_steps: float = field(default=0.1)
    weight_decay: float = field(default=0.01)
    lr_scheduler_type: str = field(default="linear")
    logging_steps: float = field(default=50)
    save_strategy: str = field(default="no")
    dataloader_pin_memory: bool = field(default=False, metadata={"help": "Pin memory (only useful with a GPU)."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep `image` / `question` for the collator."})
    report_to: None | str | list[str] = field(default="none")


class VQACollator:
    """Features with `image`, `question`, `labels` -> `input_ids`, `attention_mask`, `pixel_values`, `labels`."""

    def __init__(self, processor, max_length: int):
        self.processor = processor
        self.max_length = max_length

    def __call__(self, features: list) -> dict:
        images = [load_image(f["image"], f"question {f.get('index', i)} (field 'image')")
                  for i, f in enumerate(features)]
        batch = self.processor(images=images, text=[f["question"] for f in features], max_length=self.max_length)
        labels = [f["labels"] for f in features]
        soft = isinstance(labels[0], (list, tuple))
        batch["labels"] = torch.tensor(labels, dtype=torch.float32 if soft else torch.long)
        return dict(batch)


def load_splits(args: VQAArguments):
    """(train, test) in the common VQA columns (see `vqa_data`)."""
    columns = dict(image_column=args.image_column, question_column=args.question_column,
                   answers_column=args.answers_column, question_type_column=args.question_type_column)
    def load(split):
        if args.dataset_name or args.data_dir:
            return load_vqa_dataset(args.dataset_name, args.dataset_config_name, args.data_dir, split, **columns)
        return load_easy_vqa(split)

    train, test = load(args.train_split), load(args.test_split)
    if args.max_train_samples is not None:
        train = train.shuffle(seed=args.subset_seed).select(range(min(args.max_train_samples, len(train))))
    if args.max_test_samples is not None:
        test = test.shuffle(seed=args.subset_seed).select(range(min(args.max_test_samples, len(test))))
    return train, test


def oov_rate(tokenizer, questions: list[str]) -> dict:
    """Share of question word-pieces that are [UNK], and of questions with at least one."""
    ids = tokenizer(questions, add_special_tokens=False)["input_ids"]
    unk = tokenizer.unk_token_id
    tokens = sum(len(q) for q in ids)
    unknown = [sum(t == unk for t in q) for q in ids]
    return {"unk_token": tokenizer.unk_token, "token_rate": sum(unknown) / tokens if tokens else 0.0,
            "question_rate": sum(u > 0 for u in unknown) / len(ids) if ids else 0.0, "num_questions": len(ids)}


def add_targets(dataset, label2id: dict, soft: bool):
    """Add `labels` (int or soft scores) and `index` columns."""
    return dataset.map(lambda row, i: {"labels": answer_targets(row["answers"], label2id, soft), "index": i},
                       with_indices=True, desc="answer targets")


def train_and_score(args: VQAArguments, training_args: VQATrainingArguments, processor, train, test, labels: list,
                    fraction: float, seed: int, metric) -> dict:
    """One run: fine-tune on the first `fraction` of the (shuffled) training pool, score on the test set."""
    subset = train.select(range(max(1, round(fraction * len(train)))))
    run_dir = os.path.join(training_args.output_dir, f"runs/f{fraction}-s{seed}")
    run_args = VQATrainingArguments(**{**training_args.to_dict(), "seed": seed, "output_dir": run_dir})
    set_seed(seed)
    model = AutoModelForVisualQuestionAnswering.from_pretrained(
        args.checkpoint, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    trainer = Trainer(model=model, args=run_args, train_dataset=subset,
                      data_collator=VQACollator(processor, args.max_question_length))
    start = time.perf_counter()
    train_output = trainer.train()
    seconds = time.perf_counter() - start
    prediction = trainer.predict(test)
    predicted = prediction.predictions.argmax(-1).tolist()
    scores = metric.compute(predictions=predicted, references=list(test["labels"]),
                            question_types=list(test["question_type"]))
    return {"train_fraction": fraction, "seed": seed, "num_train_examples": len(subset), "accuracy": scores["accuracy"],
            "accuracy_by_type": scores["accuracy_by_type"], "train_loss": train_output.training_loss,
            "train_seconds": round(seconds, 2)}


def summarise(runs: list[dict]) -> dict:
    """Mean and spread over seeds, per train fraction (keys are the fractions as strings)."""
    summary = {}
    for fraction in sorted({r["train_fraction"] for r in runs}):
        group = [r for r in runs if r["train_fraction"] == fraction]
        types = sorted({t for r in group for t in r["accuracy_by_type"]})
        summary[str(fraction)] = {
            "accuracy": mean_and_spread([r["accuracy"] for r in group]),
            "accuracy_by_type": {t: mean_and_spread([r["accuracy_by_type"][t] for r in group]) for t in types},
        }
    return summary


def markdown_report(results: dict) -> str:
    summary = results["summary"]
    types = sorted({t for row in summary.values() for t in row["accuracy_by_type"]})
    lines = [f"# VQA fine-tuning: {results['dataset']['name']}", "",
             f"Checkpoint `{results['checkpoint']}`; test questions: {results['dataset']['test_size']}; "
             f"seeds {results['settings']['seeds']}; OOV: {100 * results['oov']['token_rate']:.1f}% of question "
             f"word-pieces are {results['oov']['unk_token']} "
             f"({100 * results['oov']['question_rate']:.1f}% of questions).",
             "", "| train fraction | examples | accuracy % | " + " | ".join(types) + " |",
             "|---|---|---|" + "---|" * len(types)]
    for fraction, row in summary.items():
        examples = next(r["num_train_examples"] for r in results["runs"] if str(r["train_fraction"]) == fraction)
        cells = [f"{100 * row['accuracy']['mean']:.1f} ± {100 * row['accuracy']['std']:.1f}"]
        cells += [f"{100 * row['accuracy_by_type'][t]['mean']:.1f} ± {100 * row['accuracy_by_type'][t]['std']:.1f}"
                  for t in types]
        lines.append(f"| {fraction} | {examples} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    args, training_args = parse_args((VQAArguments, VQATrainingArguments), argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    # data
    processor = MaskVLProcessor.from_pretrained(args.checkpoint)
    train, test = load_splits(args)
    labels = answer_vocabulary(train["answers"], args.max_answers)
    label2id = {label: i for i, label in enumerate(labels)}
    soft = is_multi_answer(list(train["answers"]))
    oov = oov_rate(processor.tokenizer, list(train["question"]) + list(test["question"]))
    train = add_targets(train, label2id, soft)
    if not soft:  # training questions whose answer is outside the vocabulary cannot be learned
        train = train.filter(lambda row: row["labels"] != IGNORE_INDEX, desc="in-vocabulary answers")
    if len(train) == 0:
        raise MaskVLDataError("no training question has an answer in the answer vocabulary")
    train = train.shuffle(seed=args.subset_seed)  # the fractions are prefixes of this order
    test = add_targets(test, label2id, soft)

    # runs
    metric = evaluate.load(METRIC_DIR)
    runs = [train_and_score(args, training_args, processor, train, test, labels, fraction, seed, metric)
            for fraction in args.train_fraction for seed in args.seeds]

    # report
    summary = summarise(runs)
    results = {
        "schema_version": 1, "task": "visual_question_answering", "checkpoint": args.checkpoint,
        "dataset": {"name": args.dataset_label, "train_split": args.train_split, "test_split": args.test_split,
                    "train_pool": len(train), "test_size": len(test), "label_type": "soft" if soft else "hard",
                    "answers": labels},
        "oov": oov,
        "settings": {"train_fraction": args.train_fraction, "seeds": args.seeds, "subset_seed": args.subset_seed,
                     "num_train_epochs": training_args.num_train_epochs, "learning_rate": training_args.learning_rate,
                     "per_device_train_batch_size": training_args.per_device_train_batch_size},
        "runs": runs,
        "summary": summary,
        "model_index": [model_index_results(
            "visual-question-answering", "Visual Question Answering", args.dataset_label,
            args.dataset_name or ("easy-vqa" if not args.data_dir else "vqa-folder"),
            [("accuracy", row["accuracy"]["mean"], f"Test accuracy ({float(fraction):.0%} of training data, "
              f"mean of {row['accuracy']['n']} seeds)") for fraction, row in summary.items()],
            args.test_split)],
    }
    if training_args.process_index == 0:  # one writer under `accelerate launch` (predictions are gathered)
        os.makedirs(training_args.output_dir, exist_ok=True)
        with open(os.path.join(training_args.output_dir, "vqa_results.json"), "w") as handle:
            json.dump(results, handle, indent=2)
        with open(os.path.join(training_args.output_dir, "vqa_results.md"), "w") as handle:
            handle.write(markdown_report(results))
        logger.info("wrote %s", os.path.join(training_args.output_dir, "vqa_results.json"))
    return results


if __name__ == "__main__":
    main()
