"""Image-caption data of the training and evaluation scripts: loading, tagging, screening bad examples.

* Pre-training: `load_raw_splits(data_args, image_size, seed)` -> {"train", "validation"} with `image` and
  `caption` columns (Hub, imagefolder, webdataset or the embedded synthetic scenes, map-style or streaming);
  `tag_splits` tags and tokenises them with `datasets.map` (cached) and adds `example_id`.
* Evaluation: `load_eval_dataset(data_args, data_seed, image_size)` -> the held-out pairs of a pre-training
  run (and a description of them), screened; `tag_dataset` tags them as pre-training does.
* Screening: `screen_examples(dataset, ...)` -- one `datasets.map` pass that opens every image (fully decoded,
  as the collator will) and checks every tagged caption; bad rows either raise one `MaskVLDataError` naming
  them (index, file, field) or, with `on_error="skip"`, are filtered out and counted in a `SkippedExamples`
  report.

VQA data (easy-VQA, VQAv2 format) are in `vqa_data`.
"""

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field

import datasets
from maskvl_processing import CaptionTagger, MaskVLDataError, load_image
from maskvl_processing.pretraining_data import (
    PROBLEM_COLUMN as READ_PROBLEM_COLUMN,
    SOURCE_COLUMN,
    load_image_text_dataset,
    train_eval_split,
)
from maskvl_processing.word_classes import caption_problem

from .arguments import DataArguments
from .statistics import nested_subset_indices

logger = logging.getLogger(__name__)

PROBLEM_COLUMN = "bad_example"

ID_COLUMN = "example_id"


# ---- bad examples ------------------------------------------------------------------------------------
@dataclass
class SkippedExamples:
    """What `screen_examples(..., on_error="skip")` removed from one split."""

    split: str
    total: int | None  # None for a streaming split (counted while it is read)
    skipped: int = 0
    by_reason: Counter = field(default_factory=Counter)
    first: list[str] = field(default_factory=list)  # the first messages, each naming the example

    @property
    def kept(self) -> int | None:
        return None if self.total is None else self.total - self.skipped

    def add(self, message: str, reason: str) -> None:
        self.skipped += 1
        self.by_reason[reason] += 1
        if len(self.first) < 20:
            self.first.append(message)

    def summary(self) -> str:
        total = "?" if self.total is None else self.total
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(self.by_reason.items())) or "none"
        return f"{self.split}: skipped {self.skipped} of {total} examples ({reasons})"


class ExampleChecker:
    """Batched `datasets.map` function: column `bad_example` = "" for a usable row, else why not.

    An image is usable when it opens and fully decodes (`maskvl_processing.load_image`: truncated,
    corrupt, zero-byte, decompression-bomb and NaN / inf array images are not); a caption when it is
    a string with a visible character, or — once tagged — when its `input_ids` hold at least one token outside
    `special_token_ids` (use `non_text_token_ids(tokenizer)`).
    """

    def __init__(self, image_column: str = "image", caption_column: str | None = None,
                 special_token_ids=(), id_column: str | None = None):
        self.image_column = image_column
        self.caption_column = caption_column
        self.special_token_ids = frozenset(int(i) for i in special_token_ids)
        self.id_column = id_column

    def problem(self, example: dict, index: int) -> str:
        """"" or a message naming the example (index and, for local files / shards, its source line or key;
        file; field) and what is wrong. A row the loader could not read (`__problem__`) keeps the loader's
        message, which names the file and line / shard key."""
        if example.get(READ_PROBLEM_COLUMN):
            return f"example {index}: {example[READ_PROBLEM_COLUMN]}"
        name = f"example {index}"
        if example.get(SOURCE_COLUMN):
            name = f"{name} ({example[SOURCE_COLUMN]})"
        if self.image_column not in example:
            return f"{name} (field {self.image_column!r}): missing"
        try:
            load_image(example[self.image_column], f"{name} (field {self.image_column!r})")
        except MaskVLDataError as error:
            return str(error)
        if "input_ids" in example:
            ids = example["input_ids"]
            if ids is None or not any(int(i) not in self.special_token_ids for i in ids):
                return f"{name} (field 'caption'): no text token (empty, blank or unreadable caption)"
        elif self.caption_column is not None:
            problem = caption_problem(example.get(self.caption_column))
            if problem is not None:
                return f"{name} (field {self.caption_column!r}): {problem}"
        return ""

    def __call__(self, batch: dict, indices: list[int]) -> dict:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        if self.id_column is not None and self.id_column in batch:
            indices = batch[self.id_column]
        return {PROBLEM_COLUMN: [self.problem(row, index) for row, index in zip(rows, indices)]}


def non_text_token_ids(tokenizer) -> set[int]:
    """The special token ids that are not text: [CLS], [SEP], [PAD], [MASK]... but not [UNK] (a caption of
    words the tokenizer does not know, e.g. non-Latin script, is still a caption)."""
    return set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}


def reason_of(message: str) -> str:
    """Coarse reason of a problem message, for counting: "image", "caption" or "other"."""
    match = re.search(r"field '(\w+)'", message)
    return match.group(1) if match else "other"


def without_image_decoding(dataset):
    """`dataset` with its `datasets.Image` column(s) left undecoded ({"bytes", "path"} dicts), so that a bad
    file is opened by `load_image` (an error naming it) and never decoded just to be skipped over."""
    features = dataset.features or {}
    for name, feature in features.items():
        if isinstance(feature, datasets.Image) and feature.decode:
            dataset = dataset.cast_column(name, datasets.Image(decode=False))
    return dataset


def screen_examples(dataset, *, split: str = "train", on_error: str = "skip", image_column: str = "image",
                    caption_column: str | None = None, special_token_ids=(), id_column: str | None = None,
                    num_proc: int | None = None, load_from_cache_file: bool = True):
    """Check every example (see `ExampleChecker`); returns `(dataset, SkippedExamples)`.

    `on_error="raise"`: raise one `MaskVLDataError` listing the bad examples (the first 10 by name);
    `"skip"`: filter them out and count them. Streaming data sets are filtered lazily: their report is
    filled in while they are read (exact with `dataloader_num_workers=0`). Image columns come back decoded
    as they came in.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    decoded = [name for name, f in (dataset.features or {}).items() if isinstance(f, datasets.Image) and f.decode]
    dataset = without_image_decoding(dataset)
    checker = ExampleChecker(image_column, caption_column, special_token_ids, id_column)
    if isinstance(dataset, datasets.IterableDataset):
        report = SkippedExamples(split, None)

        def keep(example, index):
            problem = checker.problem(example, example.get(id_column, index) if id_column else index)
            if problem and on_error == "raise":
                raise MaskVLDataError(f"{split}: {problem}")
            if problem:
                report.add(problem, reason_of(problem))
                logger.warning("skipping %s", problem)
            return not problem

        dataset = dataset.filter(keep, with_indices=True)
        for name in decoded:
            dataset = dataset.cast_column(name, datasets.Image())
        return dataset, report

    checked = dataset.map(checker, batched=True, with_indices=True, num_proc=num_proc,
                          load_from_cache_file=load_from_cache_file, desc=f"Checking {split} examples")
    problems = [p for p in checked[PROBLEM_COLUMN] if p]
    report = SkippedExamples(split, len(dataset))
    for problem in problems:
        report.add(problem, reason_of(problem))
    if problems and on_error == "raise":
        listed = "\n  ".join(problems[:10])
        raise MaskVLDataError(
            f"{len(problems)} bad example(s) in {split}{' (first 10)' if len(problems) > 10 else ''}:\n  {listed}\n"
            "Fix or remove them, or skip them (--skip_bad_examples)."
        )
    if problems:
        logger.warning("%s; first: %s", report.summary(), "; ".join(report.first[:5]))
        checked = checked.filter(lambda problem: not problem, input_columns=PROBLEM_COLUMN, num_proc=num_proc,
                                 load_from_cache_file=load_from_cache_file, desc=f"Dropping bad {split} examples")
    checked = checked.remove_columns([PROBLEM_COLUMN] + [c for c in (READ_PROBLEM_COLUMN,) if c in checked.column_names])
    for name in decoded:
        checked = checked.cast_column(name, datasets.Image())
    return checked, report


# ---- pre-training splits -----------------------------------------------------------------------------------
def load_raw_splits(data_args, image_size: int, seed: int) -> dict:
    """{"train": ..., "validation": ...} with `image` and `caption` columns (map-style or streaming)."""
    source = dict(
        dataset_name=data_args.dataset_name, dataset_config_name=data_args.dataset_config_name,
        train_dir=data_args.train_dir, webdataset=data_args.webdataset, streaming=data_args.streaming,
        image_column=data_args.image_column, caption_column=data_args.caption_column, cache_dir=data_args.cache_dir,
        synthetic_image_size=image_size, seed=seed,
    )
    source["on_error"] = "skip" if data_args.skip_bad_examples else "raise"  # unreadable rows: named or counted
    synthetic = not (data_args.dataset_name or data_args.train_dir or data_args.webdataset)
    train = load_image_text_dataset(split=data_args.train_split, synthetic_num_examples=data_args.synthetic_num_examples,
                                    **source)
    if data_args.validation_dir is not None:  # a separate evaluation folder
        evaluation = load_image_text_dataset(**{**source, "dataset_name": None, "webdataset": None, "streaming": False,
                                                "train_dir": data_args.validation_dir})
    elif synthetic:  # an independent random stream: no scene is shared with the training split
        evaluation = load_image_text_dataset(split="validation", synthetic_num_examples=data_args.eval_size, **source)
    elif data_args.eval_split is not None:
        evaluation = load_image_text_dataset(split=data_args.eval_split, **source)
    else:
        held_out = train_eval_split(train, data_args.eval_size, seed=seed)
        train, evaluation = held_out["train"], held_out["validation"]
    splits = {"train": train, "validation": evaluation}
    for name, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples)):
        if limit is not None:
            ds = splits[name]
            splits[name] = ds.take(limit) if isinstance(ds, datasets.IterableDataset) else ds.select(range(min(limit, len(ds))))
    if data_args.train_fraction < 1:  # nested subsets: a prefix of one permutation drawn with the data seed
        fraction = data_args.train_fraction
        indices = nested_subset_indices(len(splits["train"]), [fraction], seed=seed)[fraction]
        logger.info("Pre-training on %d of %d training pairs (--train_fraction %g, data seed %d)",
                    len(indices), len(splits["train"]), fraction, seed)
        splits["train"] = splits["train"].select(indices)
    return splits


def training_captions(train, limit: int, on_error: str = "raise") -> list[str]:
    """Up to `limit` usable training captions (for the tokenizer), screened before the tokenizer sees any: a
    row the loader could not read or a bad caption (`caption_problem`: None, a number, blank, lone
    surrogates...) raises `MaskVLDataError` naming it (source line / shard key where known), or with
    `on_error="skip"` is left out (it is dropped and counted later, when the split is screened)."""
    columns = ["caption"] + [c for c in (SOURCE_COLUMN, READ_PROBLEM_COLUMN) if c in (train.column_names or [])]
    rows = train.select(range(min(limit, len(train)))) if isinstance(train, datasets.Dataset) else train.take(limit)
    captions = []
    for index, row in enumerate(rows.select_columns(columns)):
        problem = row.get(READ_PROBLEM_COLUMN) or caption_problem(row["caption"])
        if not problem:
            captions.append(row["caption"])
            continue
        if on_error == "raise":
            where = row.get(SOURCE_COLUMN) or f"training example {index}"
            raise MaskVLDataError(f"{where} (field 'caption'): {problem} (found before training the tokenizer; fix "
                                  "it or pass --skip_bad_examples)")
    return captions


def tag_batch(batch: dict, indices: list[int], tagger: CaptionTagger) -> dict:
    """Batched map function: word classes + word-pieces (`CaptionTagger`) and the example id."""
    try:
        out = tagger(batch, indices)
    except MaskVLDataError as error:  # name the source line / shard key, not the index in a shuffled split
        match = re.match(r"item (\d+) ", str(error))
        sources = batch.get(SOURCE_COLUMN)
        if match is None or not sources or int(match.group(1)) not in indices:
            raise
        raise MaskVLDataError(f"{sources[list(indices).index(int(match.group(1)))]}: {error}") from None
    out[ID_COLUMN] = list(indices)
    for column in (SOURCE_COLUMN, READ_PROBLEM_COLUMN):
        if column in batch:
            out[column] = batch[column]
    return out


def tagger_backend(tagger: str, columns) -> str:
    """The `--tagger` backend for data with these columns: `auto` is `dataset` when the data carry their own word
    classes (`words` / `word_classes`), else `pattern`."""
    if tagger != "auto":
        return tagger
    return "dataset" if {"words", "word_classes"} <= set(columns) else "pattern"


def tag_splits(splits: dict, tokenizer, data_args) -> tuple[dict, dict]:
    """Tag and tokenise every split with `datasets.map` (cached, `num_proc`); keep `image` + token features.
    Images stay undecoded (the collator opens them; a bad file raises an error naming it). With
    --skip_bad_examples every example is checked and bad ones are dropped: returns (splits, {split: report})."""
    tagged, skipped = {}, {}
    for name, ds in splits.items():
        ds = without_image_decoding(ds)
        columns = ds.column_names or list(next(iter(ds)).keys())
        backend = tagger_backend(data_args.tagger, columns)
        tagger = CaptionTagger(
            tokenizer, backend=backend, max_length=data_args.max_seq_length, spacy_model=data_args.spacy_model,
            on_error="skip" if data_args.skip_bad_examples else "raise", object_vocab=data_args.object_vocab,
            attribute_vocab=data_args.attribute_vocab, relation_vocab=data_args.relation_vocab,
        )
        map_kwargs = dict(batched=True, with_indices=True, fn_kwargs={"tagger": tagger},
                          remove_columns=[c for c in columns if c != "image"])  # source / problem: re-added
        if isinstance(ds, datasets.Dataset):
            map_kwargs.update(num_proc=data_args.preprocessing_num_workers,
                              load_from_cache_file=not data_args.overwrite_cache, desc=f"Tagging {name} captions")
        ds = ds.map(tag_batch, **map_kwargs)
        if data_args.skip_bad_examples:
            ds, skipped[name] = screen_examples(
                ds, split=name, special_token_ids=non_text_token_ids(tokenizer), id_column=ID_COLUMN,
                num_proc=map_kwargs.get("num_proc"), load_from_cache_file=map_kwargs.get("load_from_cache_file", True))
        tagged[name] = ds
    return tagged, skipped


# ---- evaluation pairs --------------------------------------------------------------------------------------
def load_eval_dataset(data_args: DataArguments, data_seed: int, image_size: int):
    """(dataset, description) of the evaluation pairs, held out from pre-training.

    Synthetic data: the `test` stream of `data_seed` (pre-training uses `train` / `validation`).
    Real data: `--validation_dir` or `--eval_split` if given (all of it, or the first `--max_eval_samples`),
    else the pre-training script's held-out part of the training split
    (`train_eval_split(train, eval_size, seed=data_seed)["validation"]`; same seed = same pairs; at most
    `--max_eval_samples`, default `--eval_size`, pairs).
    """
    source = dict(dataset_name=data_args.dataset_name, dataset_config_name=data_args.dataset_config_name,
                  train_dir=data_args.train_dir, webdataset=data_args.webdataset, image_column=data_args.image_column,
                  caption_column=data_args.caption_column, cache_dir=data_args.cache_dir,
                  synthetic_image_size=image_size, seed=data_seed,
                  on_error="skip" if data_args.skip_bad_examples else "raise")  # unreadable rows: named or counted
    limit = data_args.max_eval_samples or data_args.eval_size
    synthetic = not (data_args.dataset_name or data_args.train_dir or data_args.webdataset)
    if data_args.validation_dir is not None:
        split = f"validation_dir {os.path.basename(os.path.normpath(data_args.validation_dir))}"
        limit = data_args.max_eval_samples
        dataset = load_image_text_dataset(**{**source, "dataset_name": None, "webdataset": None,
                                             "train_dir": data_args.validation_dir})
    elif synthetic:
        split = data_args.eval_split or "test"
        dataset = load_image_text_dataset(split=split, synthetic_num_examples=limit, **source)
    elif data_args.eval_split is not None:  # an explicit split is evaluated whole unless --max_eval_samples
        split, limit = data_args.eval_split, data_args.max_eval_samples
        dataset = load_image_text_dataset(split=split, **source)
    else:
        split = f"{data_args.train_split} (held out: eval_size {data_args.eval_size}, seed {data_seed})"
        train = load_image_text_dataset(split=data_args.train_split, **source)
        dataset = train_eval_split(train, data_args.eval_size, seed=data_seed)["validation"]
    if limit is not None and limit < len(dataset):
        logger.info("evaluating the first %d of %d pairs of %s", limit, len(dataset), split)
        dataset = dataset.select(range(limit))
    # every image opened and caption checked up front: an error naming the bad pairs, or they are skipped
    dataset, skipped = screen_examples(dataset, split=split, caption_column="caption",
                                       on_error="skip" if data_args.skip_bad_examples else "raise")
    name = data_args.dataset_name or data_args.train_dir or data_args.webdataset or "maskvl-synthetic-scenes"
    eval_data = {"source": name, "split": split, "num_examples": len(dataset), "seed": data_seed}
    if data_args.skip_bad_examples:
        eval_data["skipped_examples"] = skipped.skipped
    return dataset, eval_data


def tag_dataset(dataset, tokenizer, data_args: DataArguments):
    """Word classes + word-pieces per caption (`CaptionTagger`, as in pre-training); keeps `image` and `objects`."""
    backend = tagger_backend(data_args.tagger, dataset.column_names)
    tagger = CaptionTagger(tokenizer, backend=backend, max_length=data_args.max_seq_length,
                           spacy_model=data_args.spacy_model, object_vocab=data_args.object_vocab,
                           attribute_vocab=data_args.attribute_vocab, relation_vocab=data_args.relation_vocab)
    keep = {"image", "objects"}
    return dataset.map(tagger, batched=True, with_indices=True, desc="tagging captions",
                       remove_columns=[c for c in dataset.column_names if c not in keep])


__all__ = [
    "ID_COLUMN",
    "ExampleChecker",
    "SkippedExamples",
    "load_eval_dataset",
    "load_raw_splits",
    "non_text_token_ids",
    "screen_examples",
    "tag_dataset",
    "tag_splits",
    "tagger_backend",
    "training_captions",
    "without_image_decoding",
]
