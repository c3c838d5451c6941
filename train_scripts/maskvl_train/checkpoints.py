"""Checkpoints of pre-training runs: completeness checks and the one resume resolver.

* `checkpoint_problems(path)` -- what makes a `checkpoint-N` folder incomplete ([] = complete): a crash while
  transformers' `Trainer` wrote it leaves missing or truncated files (see `trainer.GuardedTrainerMixin`, which
  writes checkpoints atomically and refuses to resume from an incomplete one).
* `list_checkpoints(folder)` / `last_complete_checkpoint(folder)` -- the `checkpoint-N` folders by step, and
  the latest one without problems (incomplete ones are logged and skipped).
* `read_safetensors_header(path)` -- the header of a safetensors file (the one reader: integrity checks here,
  parameter counts of the model card, the publish check).
* `resolve_checkpoint(value, output_dir)` -- what `--resume_from_checkpoint` means: start fresh, the latest
  *complete* checkpoint of `output_dir` ("auto"), or a given folder.
* `check_checkpoint_argument(path)` -- the `--checkpoint` of an evaluation or fine-tuning script: given, and a
  folder (a pre-training output).
"""

import json
import logging
import os
import re
import zipfile

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)

STAGING_DIR = ".checkpoint-staging"
_CHECKPOINT_RE = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


class IncompleteCheckpointError(RuntimeError):
    """A checkpoint to resume from is missing files or holds truncated ones."""


def read_safetensors_header(path) -> tuple[dict, int]:
    """(header, bytes before the tensor data) of a safetensors file, without reading any tensor.

    The file starts with the header's length (8 bytes, little-endian), then the header (JSON: per tensor its
    dtype, shape and `data_offsets` into the data that follows). Raises `ValueError` for a file too short for
    its header or a header that is not a JSON object, `OSError` when the file cannot be read."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        header_length = int.from_bytes(prefix, "little")
        if len(prefix) < 8 or size < 8 + header_length:
            raise ValueError("truncated (header)")
        header = json.loads(handle.read(header_length))
    if not isinstance(header, dict):
        raise ValueError(f"the header is a JSON {type(header).__name__}, not an object")
    return header, 8 + header_length


def _safetensors_problem(path: str) -> str | None:
    """None when `path` is a whole safetensors file (header parses, data reaches exactly the end)."""
    try:
        header, data_start = read_safetensors_header(path)
    except ValueError as error:
        if str(error) == "truncated (header)":
            return f"{os.path.basename(path)} is truncated (header)"
        return f"{os.path.basename(path)} is unreadable ({error})"
    except OSError as error:
        return f"{os.path.basename(path)} is unreadable ({error})"
    size = os.path.getsize(path)
    end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    if size != data_start + end:
        return f"{os.path.basename(path)} is truncated ({size} bytes, the header describes {data_start + end})"
    return None


def checkpoint_problems(path, require_optimizer: bool = True) -> list[str]:
    """What makes `path` an incomplete `checkpoint-N` folder ([] = complete).

    Checked: `trainer_state.json` parses and its `global_step` is N; the weights (`model.safetensors`, or
    every shard of `model.safetensors.index.json`) are whole; with `require_optimizer`, `optimizer.pt`,
    `scheduler.pt` and the RNG state (`rng_state.pth`, or `rng_state_<rank>.pth` per process) exist and are
    whole zip archives: without the RNG state a resume silently draws other data orders, dropout and masks
    (final weights 1e-3 off an uninterrupted run). FSDP / DeepSpeed layouts are checked for the state only.
    Which tensors the weights hold is checked against the model by `missing_tensors`.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        return [f"{path} is not a folder"]
    problems = []
    state_path = os.path.join(path, "trainer_state.json")
    try:
        with open(state_path, encoding="utf-8") as handle:
            step = json.load(handle).get("global_step")
        match = _CHECKPOINT_RE.match(os.path.basename(os.path.normpath(path)))
        if match and step != int(match.group(1)):
            problems.append(f"trainer_state.json says global_step {step}")
    except FileNotFoundError:
        problems.append("trainer_state.json is missing")
    except (OSError, ValueError) as error:
        problems.append(f"trainer_state.json is unreadable ({error})")
    names = set(os.listdir(path))
    sharded = any(name.startswith(("pytorch_model_fsdp", "global_step")) for name in names)
    if "model.safetensors.index.json" in names:
        try:
            with open(os.path.join(path, "model.safetensors.index.json"), encoding="utf-8") as handle:
                shards = sorted(set(json.load(handle)["weight_map"].values()))
        except (OSError, ValueError, KeyError) as error:
            problems.append(f"model.safetensors.index.json is unreadable ({error})")
            shards = []
        for shard in shards:
            problem = _safetensors_problem(os.path.join(path, shard)) if shard in names else f"{shard} is missing"
            problems += [problem] if problem else []
    elif "model.safetensors" in names:
        problem = _safetensors_problem(os.path.join(path, "model.safetensors"))
        problems += [problem] if problem else []
    elif not sharded:
        problems.append("no weights (model.safetensors)")
    if require_optimizer and not sharded:
        rng = sorted(name for name in names if re.fullmatch(r"rng_state(_\d+)?\.pth", name))
        if not rng:
            problems.append("rng_state.pth is missing (the resumed run would not continue the interrupted one "
                            "exactly: other data order, dropout and masks)")
        for name in ("optimizer.pt", "scheduler.pt", *rng):
            if name not in names:
                problems.append(f"{name} is missing")
                continue
            try:
                with zipfile.ZipFile(os.path.join(path, name)):
                    pass
            except (OSError, zipfile.BadZipFile) as error:
                problems.append(f"{name} is truncated or corrupt ({error})")
    return problems


def missing_tensors(path, model) -> list[str]:
    """Names of `model`'s tensors that the checkpoint's weights do not provide, as transformers' own loading
    reports them (`from_pretrained(..., output_loading_info=True)`: the same key renaming and tied-weight rules
    as a real load). A checkpoint written for another architecture or a weights file cut down by hand would
    otherwise be resumed with those tensors silently left as initialised. [] for sharded (FSDP / DeepSpeed)
    layouts, which accelerate loads and checks itself."""
    path = os.fspath(path)
    names = set(os.listdir(path))
    if "model.safetensors" not in names and "model.safetensors.index.json" not in names:
        return []
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # the missing keys are reported by the caller
    try:
        _, info = type(model).from_pretrained(path, output_loading_info=True)
    finally:
        transformers_logging.set_verbosity(verbosity)
    return sorted(info.get("missing_keys", []))


def list_checkpoints(folder) -> list[str]:
    """The `checkpoint-N` folders of `folder`, by step (oldest first)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), name) for name in os.listdir(folder) if (m := _CHECKPOINT_RE.match(name))]
    return [os.path.join(folder, name) for _, name in sorted(found) if os.path.isdir(os.path.join(folder, name))]


def last_complete_checkpoint(folder, require_optimizer: bool = True) -> str | None:
    """The latest `checkpoint-N` of `folder` without `checkpoint_problems` (incomplete ones are logged)."""
    for path in reversed(list_checkpoints(folder)):
        problems = checkpoint_problems(path, require_optimizer)
        if not problems:
            return path
        logger.warning("ignoring incomplete checkpoint %s: %s", path, "; ".join(problems))
    return None


def resolve_checkpoint(value: str | None, output_dir: str, require_optimizer: bool = True) -> str | None:
    """--resume_from_checkpoint: None / "false" -> start fresh; "auto" / "latest" / "true" -> the latest complete
    checkpoint of `output_dir` (None when there is none); otherwise a checkpoint folder that must exist (its
    completeness is checked when training starts, `GuardedTrainerMixin.train`)."""
    if value is None or str(value).lower() in ("", "false", "no", "none"):
        last = list_checkpoints(output_dir)
        if last:
            logger.warning("%s holds %s; starting from scratch. Pass --resume_from_checkpoint auto to continue it.",
                           output_dir, os.path.basename(last[-1]))
        return None
    if str(value).lower() in ("auto", "latest", "true", "yes"):
        last = last_complete_checkpoint(output_dir, require_optimizer)
        logger.info("Resuming from %s", last if last else f"scratch (no complete checkpoint in {output_dir})")
        return last
    if not os.path.isdir(value):
        raise FileNotFoundError(f"--resume_from_checkpoint {value!r} is not a checkpoint folder")
    return value


def check_checkpoint_argument(path: str | None) -> None:
    """Raise unless `--checkpoint` names a folder (a pre-training output: model + processor)."""
    if path is None:
        raise ValueError("--checkpoint is required (a pre-training output folder)")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"checkpoint {path!r} is not a directory")


__all__ = [
    "STAGING_DIR",
    "IncompleteCheckpointError",
    "check_checkpoint_argument",
    "checkpoint_problems",
    "last_complete_checkpoint",
    "list_checkpoints",
    "missing_tensors",
    "read_safetensors_header",
    "resolve_checkpoint",
]

