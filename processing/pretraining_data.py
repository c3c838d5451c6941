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

Dirty data. An image folder with a ``metadata.jsonl`` and WebDataset shards are read by this module
(not by ``datasets``' builders, whose errors name neither file nor line), line by line and sample by sample:

* every row gets a column ``__source__`` naming where it came from — ``"<dir>/metadata.jsonl:11"`` or
  ``"<shard>.tar:000123"`` — so later errors (bad image, blank caption) can name the source rather than
  an index in a shuffled split;
* a row that cannot be read — a ``metadata.jsonl`` line that is not UTF-8 or not JSON, a caption that is not
  a string (a number, a list, null) or missing, a sample without an image member or a caption (no
  ``.json`` field, no ``.txt``), a ``.txt`` that is not UTF-8, a truncated shard — raises
  ``MaskVLDataError`` naming the file, line / key and field (``on_error="raise"``, the default), or with
  ``on_error="skip"`` is kept as a *problem row*: ``image`` and ``caption`` are None and column
  ``__problem__`` says what is wrong (it is ``""`` for good rows). Problem rows are what the data screening
  (``screen_examples``) drops and counts, so kept + skipped = rows even when the data set comes from cache;
  a truncated shard adds one problem row for its unreadable tail;
* image files named like split names (``train_0.png``, ``test_1.png``) make ``datasets``' imagefolder
  read the names as splits and ignore ``metadata.jsonl``; a root ``metadata.jsonl`` is read here, so
  that does not happen (a warning says so).

Other columns of ``metadata.jsonl`` are kept (e.g. gold ``objects`` / ``attributes`` word lists for
``CaptionTagger``); a column whose type changes between lines is refused naming the line.

Example::

    ds = load_image_text_dataset()  # synthetic, offline
    ds = load_image_text_dataset(dataset_name="...", caption_column="text")
    ds = load_image_text_dataset(webdataset="data/cc3m-{00000..00331}.tar")
    splits = train_eval_split(ds, eval_size=500, seed=0)
"""
from __future__ import annotations

import glob
import json
import logging
import os
import tarfile
from collections.abc import Sequence

import datasets

from .errors import MaskVLDataError
from .synthetic_scenes import make_synthetic_dataset, synthetic_split_seed

__all__ = ["IMAGE_EXTENSIONS", "PROBLEM_COLUMN", "SOURCE_COLUMN", "load_image_text_dataset", "read_metadata_jsonl",
           "train_eval_split"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp")
SOURCE_COLUMN = "__source__"  # "<file>:<line>" or "<shard>:<key>" of each row read by this module
PROBLEM_COLUMN = "__problem__"  # on_error="skip": why a row cannot be used ("" for a good row)
_GLOB_CHARS = ("*", "?", "[")
_PEEK_SAMPLES = 5  # samples of the first shard that decide the image / caption members (as datasets does)


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
    on_error: str = "raise",
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
        on_error: ``"raise"`` (default) or ``"skip"``: what a row that cannot be read does (module doc).

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
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")

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
        metadata = _imagefolder_metadata(os.fspath(train_dir), split)
        if metadata is None:  # no metadata.jsonl (e.g. metadata.csv): datasets' imagefolder
            ds = datasets.load_dataset(
                "imagefolder", data_dir=os.fspath(train_dir), split=split, streaming=streaming, cache_dir=cache_dir
            )
        else:
            ds = _imagefolder_from_metadata(metadata, image_column, caption_column, on_error, streaming)
            image_column = "image" if image_column == "file_name" else image_column
    else:
        shards = resolve_shards(webdataset)
        ds = _webdataset(shards, image_column, caption_column, on_error, streaming, cache_dir)
        image_column, caption_column = "image", "caption"
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


# ---- image folders with a metadata.jsonl --------------------------------------------------------------------
def _imagefolder_metadata(train_dir: str, split: str) -> list[str] | None:
    """The ``metadata.jsonl`` files ``datasets`` would use for `split` of `train_dir`, or the root one when
    image names like ``train_0.png`` make ``datasets`` read them as split names (it would then ignore the
    metadata); None when there is no ``metadata.jsonl``."""
    from datasets.data_files import DataFilesDict, get_data_patterns

    try:
        patterns = get_data_patterns(train_dir)
        files = DataFilesDict.from_patterns(patterns, base_path=train_dir)
    except Exception:  # noqa: BLE001 - an empty folder or no pattern: datasets' own error comes later
        patterns, files = {}, {}
    metadata = {name: sorted(f for f in paths if os.path.basename(f) == "metadata.jsonl")
                for name, paths in files.items()}
    if metadata.get(split):
        return metadata[split]
    root = os.path.join(train_dir, "metadata.jsonl")
    if split != "train" or not os.path.isfile(root):
        return None
    if any(os.path.samefile(root, f) for paths in metadata.values() for f in paths):
        return None
    logger.warning(
        "%s: datasets would read the image file names as split names (%s match its split patterns) and then "
        "ignore metadata.jsonl; reading metadata.jsonl directly instead (rename the files, e.g. img_0.png, to "
        "silence this)", train_dir, ", ".join(sorted(str(name) for name in patterns)))
    return [root]


def read_metadata_jsonl(path: str):
    """Yield ``(line number, row dict or None, problem)`` for the non-blank lines of a ``metadata.jsonl``:
    a line that is not UTF-8, not JSON or not a JSON object has no row and says why."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                yield number, None, (f"not UTF-8 text (byte 0x{raw[error.start]:02x} at column {error.start + 1}; "
                                     "latin-1? re-save the file as UTF-8)")
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as error:
                yield number, None, f"not valid JSON ({error.msg} at column {error.colno})"
                continue
            if not isinstance(row, dict):
                yield number, None, f"not a JSON object but a {type(row).__name__}"
                continue
            yield number, row, ""


def _json_kind(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _read_error(message: str) -> MaskVLDataError:
    return MaskVLDataError(f"{message}. Fix it, or skip such rows (on_error='skip', --skip_bad_examples).")


def _imagefolder_from_metadata(metadata: list[str], image_column: str, caption_column: str, on_error: str,
                               streaming: bool):
    """An image-caption data set from ``metadata.jsonl`` files, every line checked (module doc)."""
    lines = []  # (where, directory, row or None, problem)
    for path in metadata:
        for number, row, problem in read_metadata_jsonl(path):
            lines.append((f"{path} line {number}", os.path.dirname(path), row, problem))
    has_caption = any(row is not None and caption_column in row for _, _, row, _ in lines)
    columns: dict[str, tuple[str, str]] = {}  # column -> (kind, where first seen)
    records = []
    for where, directory, row, problem in lines:
        if not problem:
            problem = _metadata_row_problem(row, where, caption_column, has_caption, columns)
        elif not problem.startswith(where):
            problem = f"{where}: {problem}"
        if problem and on_error == "raise":
            raise _read_error(problem)
        records.append((where, directory, None if problem else row, problem))
    names = ["image"] + [name for name in columns if name != "image"]
    data = {name: [] for name in names}
    data[SOURCE_COLUMN] = []
    if on_error == "skip":
        data[PROBLEM_COLUMN] = []
    for where, directory, row, problem in records:
        data["image"].append(None if row is None else os.path.join(directory, row["file_name"]))
        for name in names[1:]:
            data[name].append(None if row is None else row.get(name))
        data[SOURCE_COLUMN].append(where)
        if on_error == "skip":
            data[PROBLEM_COLUMN].append(problem)
    try:
        ds = datasets.Dataset.from_dict(data)
    except Exception as error:  # noqa: BLE001 - pyarrow type errors that the line checks did not foresee
        raise MaskVLDataError(f"cannot build a table from {metadata}: {str(error)[:300]}") from None
    ds = ds.cast_column("image", datasets.Image())
    return ds.to_iterable_dataset() if streaming else ds


def _metadata_row_problem(row: dict, where: str, caption_column: str, has_caption: bool, columns: dict) -> str:
    """"" or why a parsed ``metadata.jsonl`` row cannot be used; records the JSON kind of each column."""
    name = row.get("file_name")
    if not isinstance(name, str) or not name:
        return f"{where} (field 'file_name'): {'missing' if name is None else f'{name!r:.40} is not a file name'}"
    if has_caption:
        if caption_column not in row:
            return f"{where} (field {caption_column!r}): missing"
        caption = row[caption_column]
        if not isinstance(caption, str):
            return f"{where} (field {caption_column!r}): caption is {_json_kind(caption) or 'null'}, not a string " \
                   f"({caption!r:.40})"
    for column, value in row.items():
        if column == "file_name":
            continue
        kind = _json_kind(value)
        if kind is None:
            columns.setdefault(column, (None, where))
            continue
        first, seen = columns.get(column, (None, where))
        if first is None:
            columns[column] = (kind, where)
        elif first != kind:
            return f"{where} (field {column!r}): is {kind} here but {first} in {seen}"
    return ""


# ---- WebDataset shards -------------------------------------------------------------------------------------
def _open_shard(shard: str):
    if "://" in shard:
        import fsspec  # installed with datasets

        return fsspec.open(shard, "rb").open()
    return open(shard, "rb")


def _split_member(name: str) -> tuple[str | None, str | None]:
    """WebDataset's grouping: ``dir/000123.seg.png`` -> (``dir/000123``, ``seg.png``)."""
    directory, _, base = name.rpartition("/")
    if "." not in base:
        return None, None
    stem, ext = base.split(".", 1)
    return (f"{directory}/{stem}" if directory else stem), ext


def _shard_samples(shard: str):
    """Yield ``(key, {extension: bytes})`` per sample of a tar shard, then ``(key, problem)`` if the shard is
    truncated or corrupt (a ``str`` in place of the members)."""
    with _open_shard(shard) as handle:
        try:
            tar = tarfile.open(fileobj=handle, mode="r|*")
        except (tarfile.TarError, EOFError, OSError) as error:
            yield None, f"not a readable tar archive ({error})"
            return
        key, members, last = None, {}, None
        try:
            for info in tar:
                if not info.isfile():
                    continue
                member_key, ext = _split_member(info.name)
                if member_key is None:
                    continue
                if member_key != key and members:
                    yield key, members
                    last, members = key, {}
                key = member_key
                if ext in members:
                    yield key, f"duplicate member {info.name!r}"
                    continue
                members[ext] = tar.extractfile(info).read()
        except (tarfile.TarError, EOFError, OSError) as error:
            yield key or last, f"truncated or corrupt shard: reading stopped in sample {key or last!r} ({error})"
            return
        if members:
            yield key, members
        if "://" not in shard and shard.endswith(".tar") and os.path.getsize(shard) < tar.offset + 512:
            yield key, (f"truncated shard: it ends after sample {key!r} at byte {os.path.getsize(shard)} without "
                        "the end-of-archive marker (an interrupted copy? the rest of the shard is lost)")


def _member_text(members: dict, ext: str) -> str:
    try:
        return members[ext].decode("utf-8")
    except UnicodeDecodeError as error:
        raise MaskVLDataError(f"member .{ext} is not UTF-8 text (byte 0x{members[ext][error.start]:02x} at "
                              f"position {error.start})") from None


def _image_member(members: dict, image_column: str) -> str | None:
    lower = {ext.lower(): ext for ext in members}
    if image_column == "image":
        return next((lower[ext] for ext in IMAGE_EXTENSIONS if ext in lower), None)
    return lower.get(image_column.lower())


def _sample_caption(members: dict, caption_column: str):
    """(caption or None, the member it came from); raises MaskVLDataError for an unreadable member."""
    lower = {ext.lower(): ext for ext in members}
    if caption_column.lower() in lower:
        ext = lower[caption_column.lower()]
        return _member_text(members, ext), ext
    if "json" in lower:
        try:
            record = json.loads(_member_text(members, lower["json"]))
        except json.JSONDecodeError as error:
            raise MaskVLDataError(f"member .json is not valid JSON ({error.msg})") from None
        if isinstance(record, dict) and caption_column in record:
            value = record[caption_column]
            if not isinstance(value, str):
                raise MaskVLDataError(f"field {caption_column!r} of the .json member is "
                                      f"{_json_kind(value) or 'null'}, not a string ({value!r:.40})")
            return value, "json"
    if "txt" in lower:
        return _member_text(members, lower["txt"]), "txt"
    return None, None


def _peek_columns(shards: list[str], image_column: str, caption_column: str) -> None:
    """Column-level check on the first samples of the first shard: no sample with the image member or with a
    caption at all is a wrong column name, reported as such."""
    seen, json_fields, image_found, caption_found = set(), set(), False, False
    for number, (_, members) in enumerate(_shard_samples(shards[0])):
        if number >= _PEEK_SAMPLES or isinstance(members, str):
            break
        seen.update(ext.lower() for ext in members)
        image_found |= _image_member(members, image_column) is not None
        try:
            if "json" in members:
                record = json.loads(members["json"])
                json_fields.update(record if isinstance(record, dict) else ())
            caption_found |= _sample_caption(members, caption_column)[1] is not None
        except (MaskVLDataError, ValueError):
            caption_found = True  # a caption member that is unreadable: a row problem, not a column problem
    if not seen:
        return
    if not image_found:
        raise _missing_column("image", image_column, sorted(seen), f" (image members: {list(IMAGE_EXTENSIONS)})")
    if not caption_found:
        raise _missing_column("caption", caption_column, sorted(seen),
                              f"; fields of the json member: {sorted(json_fields)}")


def _webdataset_rows(shards, image_column: str, caption_column: str, on_error: str):
    """Rows of the web data set (module doc); shards are ``(path, size, mtime)`` (the size and time are there
    so that a changed shard changes the cache fingerprint)."""
    for shard, _, _ in shards:
        for key, members in _shard_samples(shard):
            where = f"{shard} sample {key!r}" if key is not None else shard
            problem, image, caption = "", None, None
            if isinstance(members, str):
                problem = f"{where}: {members}"
            else:
                image_ext = _image_member(members, image_column)
                try:
                    caption, source = _sample_caption(members, caption_column)
                except MaskVLDataError as error:
                    problem = f"{where} (field {caption_column!r}): {error}"
                else:
                    if image_ext is None:
                        problem = (f"{where} (field {image_column!r}): no image member ({list(IMAGE_EXTENSIONS)}); "
                                   f"members: {sorted(members)}")
                    elif source is None:
                        problem = (f"{where} (field {caption_column!r}): no caption (no .json with field "
                                   f"{caption_column!r}, no .txt member); members: {sorted(members)}")
                    else:
                        image = {"bytes": members[image_ext], "path": f"{key}.{image_ext}"}
                        caption = caption.strip()  # .txt members usually end with a newline
            if problem and on_error == "raise":
                raise _read_error(problem)
            row = {"image": None if problem else image, "caption": None if problem else caption,
                   "__key__": key, "__url__": shard, SOURCE_COLUMN: where}
            if on_error == "skip":
                row[PROBLEM_COLUMN] = problem
            yield row


def _webdataset(shards: list[str], image_column: str, caption_column: str, on_error: str, streaming: bool,
                cache_dir: str | None):
    """Read tar shards sample by sample (module doc)."""
    _peek_columns(shards, image_column, caption_column)
    features = {"image": datasets.Image(), "caption": datasets.Value("string"), "__key__": datasets.Value("string"),
                "__url__": datasets.Value("string"), SOURCE_COLUMN: datasets.Value("string")}
    if on_error == "skip":
        features[PROBLEM_COLUMN] = datasets.Value("string")
    stamped = [(shard, *_stamp(shard)) for shard in shards]
    kwargs = {"shards": stamped, "image_column": image_column, "caption_column": caption_column, "on_error": on_error}
    if streaming:
        return datasets.IterableDataset.from_generator(_webdataset_rows, features=datasets.Features(features),
                                                       gen_kwargs=kwargs)
    try:
        return datasets.Dataset.from_generator(_webdataset_rows, features=datasets.Features(features),
                                               gen_kwargs=kwargs, cache_dir=cache_dir)
    except datasets.exceptions.DatasetGenerationError as error:
        cause = error.__cause__ or error.__context__
        if isinstance(cause, MaskVLDataError):
            raise cause from None
        raise


def _stamp(shard: str) -> tuple[int, int]:
    if "://" in shard:
        return 0, 0
    info = os.stat(shard)
    return info.st_size, info.st_mtime_ns

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
