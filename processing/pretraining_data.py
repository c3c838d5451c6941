"""Image–text data for pre-training and evaluation: one loader for every source.

:func:`load_image_text_dataset` returns a ``datasets.Dataset`` (or
``IterableDataset`` when streaming) with two standard columns, ``image``
(``datasets.Image``) and ``caption`` (str); other columns are kept. Sources, one
at a time:

* nothing — the embedded synthetic scenes (:mod:`maskvl_processing.synthetic_scenes`);
* ``dataset_name`` — a Hub data set, ``load_dataset(name, config, split=..., streaming=...)``;
* ``train_dir`` — a local ``imagefolder``: images plus a ``metadata.jsonl`` whose
  lines hold ``file_name`` and the caption column;
* ``webdataset`` — tar shards (a glob, a brace pattern ``shard-{000..009}.tar``, a
  URL, or a list of those). Each sample is files sharing a key, e.g.
  ``000001.jpg`` + ``000001.txt`` or ``000001.json``. The image comes from the
  ``jpg``/``jpeg``/``png``/``webp`` file, the caption from field ``caption_column``
  of the ``.json`` file if it has one, else from the ``.txt`` file.

Example::

    ds = load_image_text_dataset()  # synthetic, offline
    ds = load_image_text_dataset(dataset_name="...", caption_column="text")
    ds = load_image_text_dataset(webdataset="data/cc3m-{00000..00331}.tar")
    splits = train_eval_split(ds, eval_size=500, seed=0)
"""
from __future__ import annotations

import glob
import os
from collections.abc import Sequence

import datasets

from .errors import MaskVLDataError
from .synthetic_scenes import make_synthetic_dataset, synthetic_split_seed

__all__ = ["IMAGE_EXTENSIONS", "load_image_text_dataset", "train_eval_split"]

IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp")
_GLOB_CHARS = ("*", "?", "[")


def load_image_text_dataset(
    *,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    split: str = "train",
    streaming: bool = False,
    train_dir: str | os.PathLike | None = None,
    webdataset: str | Sequence[str] | None = None,
    image_column: str = "image",
    caption_column: str = "caption",
    synthetic_num_examples: int = 2000,
    synthetic_image_size: int = 64,
    seed: int = 0,
    cache_dir: str | None = None,
) -> datasets.Dataset | datasets.IterableDataset:
    """Load an image–caption data set with standard ``image`` and ``caption`` columns.

    Args:
        dataset_name, dataset_config_name: Hub data set (or a local loading script/dir).
        split: split to load. For the synthetic set, ``train``/``validation``/``test``
            are independent random streams derived from ``seed``.
        streaming: return an ``IterableDataset``.
        train_dir: local ``imagefolder`` directory with ``metadata.jsonl``.
        webdataset: tar shard path(s), glob or brace pattern, or URL(s).
        image_column, caption_column: source column names, renamed to ``image`` and
            ``caption``. For web data sets ``image_column="image"`` also matches the
            ``jpg``/``jpeg``/``png``/``webp`` member, and ``caption_column`` names a
            field of the ``.json`` member (falling back to ``.txt``).
        synthetic_num_examples, synthetic_image_size, seed: the synthetic set, used
            when no source is given.
        cache_dir: passed to ``load_dataset``.

    Raises:
        ValueError: more than one source.
        MaskVLDataError (a ValueError): the image/caption column is missing (the
            message names it and lists the available columns).
        FileNotFoundError: ``train_dir`` or a shard does not exist.
    """
    sources = {"dataset_name": dataset_name, "train_dir": train_dir, "webdataset": webdataset}
    given = [name for name, value in sources.items() if value is not None]
    if len(given) > 1:
        raise ValueError(f"give at most one data source, got {given}")

    if not given:
        ds = make_synthetic_dataset(
            synthetic_num_examples, seed=synthetic_split_seed(seed, split), image_size=synthetic_image_size
        )
        return ds.to_iterable_dataset() if streaming else ds

    if dataset_name is not None:
        ds = datasets.load_dataset(
            dataset_name, dataset_config_name, split=split, streaming=streaming, cache_dir=cache_dir
        )
    elif train_dir is not None:
        if not os.path.isdir(train_dir):
            raise FileNotFoundError(f"train_dir {os.fspath(train_dir)!r} is not a directory")
        ds = datasets.load_dataset(
            "imagefolder", data_dir=os.fspath(train_dir), split=split, streaming=streaming, cache_dir=cache_dir
        )
    else:
        shards = resolve_shards(webdataset)
        ds = datasets.load_dataset(
            "webdataset", data_files={split: shards}, split=split, streaming=streaming, cache_dir=cache_dir
        )
        ds, image_column, caption_column = _standardise_webdataset(ds, image_column, caption_column)
    return _standardise_columns(ds, image_column, caption_column)


def resolve_shards(webdataset: str | Sequence[str]) -> list[str]:
    """Expand brace patterns and local globs; check that local shards exist."""
    from braceexpand import braceexpand  # installed with webdataset

    patterns = [webdataset] if isinstance(webdataset, (str, os.PathLike)) else list(webdataset)
    if not patterns:
        raise ValueError("webdataset: empty list of shards")
    shards: list[str] = []
    for pattern in patterns:
        for path in braceexpand(os.fspath(pattern)):
            if "://" in path:  # remote: hf://, https://, s3:// ... (checked by datasets)
                shards.append(path)
            elif any(c in path for c in _GLOB_CHARS):
                matches = sorted(glob.glob(path))
                if not matches:
                    raise FileNotFoundError(f"webdataset pattern {path!r} matches no file")
                shards.extend(matches)
            elif not os.path.isfile(path):
                raise FileNotFoundError(f"webdataset shard {path!r} does not exist")
            else:
                shards.append(path)
    return shards


def _column_names(ds) -> list[str]:
    names = ds.column_names
    if names is None:  # streaming data set with unknown features: peek at one example
        names = list(next(iter(ds)).keys())
    return list(names)


def _missing_column(kind: str, column: str, available: list[str], extra: str = "") -> MaskVLDataError:
    return MaskVLDataError(
        f"{kind} column {column!r} not found; available columns: {available}{extra}. "
        f"Pass {kind}_column=<name> to choose another."
    )


def _standardise_webdataset(ds, image_column: str, caption_column: str):
    """Resolve web-data-set members (``jpg``, ``txt``, ``json`` ...) to the image and
    caption columns. Returns ``(ds, image_column, caption_column)``."""
    names = _column_names(ds)
    if image_column not in names and image_column == "image":
        image_column = next((ext for ext in IMAGE_EXTENSIONS if ext in names), image_column)
    if image_column not in names:
        raise _missing_column("image", image_column, names, f" (image members: {list(IMAGE_EXTENSIONS)})")
    if caption_column in names:
        return ds, image_column, caption_column

    json_feature = (ds.features or {}).get("json")
    json_fields = list(json_feature) if isinstance(json_feature, dict) else []
    if caption_column in json_fields:
        source = "json"
    elif "txt" in names:
        source = "txt"
    else:
        raise _missing_column("caption", caption_column, names, f"; fields of the json member: {json_fields}")

    def caption_from_member(example):
        text = example["json"][caption_column] if source == "json" else example["txt"]
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return {"caption": text.strip()}  # .txt members usually end with a newline

    return ds.map(caption_from_member), image_column, "caption"


def _standardise_columns(ds, image_column: str, caption_column: str):
    names = _column_names(ds)
    for kind, column in (("image", image_column), ("caption", caption_column)):
        if column not in names:
            raise _missing_column(kind, column, names)
    for column, target in ((image_column, "image"), (caption_column, "caption")):
        if column != target:
            if target in names:
                raise MaskVLDataError(
                    f"cannot rename {column!r} to {target!r}: the data set already has a {target!r} column; "
                    f"remove it first or pass {target}_column={target!r}"
                )
            ds = ds.rename_column(column, target)
    features = ds.features
    if features is not None and not isinstance(features["image"], datasets.Image):
        ds = ds.cast_column("image", datasets.Image())  # file paths or encoded bytes
    return ds


def train_eval_split(
    dataset: datasets.Dataset | datasets.IterableDataset, eval_size: int | float, seed: int = 0
) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    """Shuffle with ``seed`` and hold out ``eval_size`` examples (an int, or a fraction
    in (0, 1) for map-style data sets) as ``validation``; the rest is ``train``.

    A streaming data set is shuffled in a buffer and split with ``take``/``skip``,
    so ``eval_size`` must be an int there.
    """
    if isinstance(dataset, datasets.IterableDataset):
        if not isinstance(eval_size, int) or eval_size <= 0:
            raise ValueError(f"eval_size must be a positive int for a streaming data set, got {eval_size!r}")
        shuffled = dataset.shuffle(seed=seed, buffer_size=max(1000, 10 * eval_size))
        return datasets.IterableDatasetDict(train=shuffled.skip(eval_size), validation=shuffled.take(eval_size))
    n = len(dataset)
    if isinstance(eval_size, float):
        if not 0.0 < eval_size < 1.0:
            raise ValueError(f"a fractional eval_size must be in (0, 1), got {eval_size}")
    elif not 0 < eval_size < n:
        raise ValueError(f"eval_size must be in [1, {n - 1}] for a data set of {n} examples, got {eval_size}")
    parts = dataset.train_test_split(test_size=eval_size, seed=seed, shuffle=True)
    return datasets.DatasetDict(train=parts["train"], validation=parts["test"])
