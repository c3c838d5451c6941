"""Guards for long pre-training runs on messy data: bad examples, non-finite losses, crash-safe checkpoints.

* `screen_examples(dataset, ...)` — one `datasets.map` pass that opens every image (fully decoded, as the
  collator will) and checks every tagged caption; bad rows either raise one `MaskVLDataError` naming them
  (index, file, field) or, with `on_error="skip"`, are filtered out and counted in a `SkippedExamples` report.
* `GuardedTrainerMixin` — mixed into a `transformers.Trainer` subclass (`class T(GuardedTrainerMixin, Trainer)`):

  - **non-finite loss**: a forward hook checks the training loss of every micro-batch before its backward
    pass. `on_nonfinite_loss="stop"` (default) raises `NonFiniteLossError` naming the step, the loss parts
    (mlm / mim / itc / itm) and the batch rows whose `pixel_values` are not finite; `"skip"` replaces the
    batch's loss by a zero-gradient loss, counts it, and when a whole optimizer step was skipped drops its
    gradients so that AdamW changes nothing (no momentum, no weight decay). A non-finite gradient norm
    with a finite loss is handled the same way (except under fp16 loss scaling, which skips such steps).
  - **no NaN weights on disk**: `save_model` and checkpoints refuse to write weights that hold NaN / inf.
  - **atomic checkpoints**: transformers 5.23's `Trainer._save_checkpoint` writes straight into
    `checkpoint-N` (weights, then optimizer, scheduler, RNG states, `trainer_state.json`), so a crash midway
    leaves a folder that `get_last_checkpoint` picks and `Trainer.train` resumes from silently (it starts at
    step 0 without `trainer_state.json`, with a fresh optimizer without `optimizer.pt`). Here the checkpoint
    is written into `<output_dir>/.checkpoint-staging/checkpoint-N` and renamed to `checkpoint-N` only when
    every file is written (on every process); old checkpoints are rotated after the rename.
  - **resume check**: `train(resume_from_checkpoint=path)` refuses an incomplete checkpoint with an error
    listing what is missing and naming the latest complete one; `resume_from_checkpoint=True` picks the
    latest complete checkpoint.

`checkpoint_problems(path)` / `last_complete_checkpoint(folder)` are the checks, usable on their own.
`ShareablePickleMixin` keeps access tokens and local paths out of the pickled `training_args.bin`.
"""

import copy
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import zipfile
from collections import Counter
from dataclasses import dataclass, field

import datasets
import torch
from maskvl_processing import MaskVLDataError, load_image
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

logger = logging.getLogger(__name__)

NONFINITE_LOSS_MODES = ("stop", "skip")
STAGING_DIR = ".checkpoint-staging"
PROBLEM_COLUMN = "bad_example"
_CHECKPOINT_RE = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


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
        """"" or a message naming the example (index, file, field) and what is wrong."""
        name = f"example {index}"
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
            caption = example.get(self.caption_column)
            if not isinstance(caption, str) or not any(c.isprintable() and not c.isspace() for c in caption):
                return f"{name} (field {self.caption_column!r}): no visible text ({caption!r:.40})"
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
    checked = checked.remove_columns(PROBLEM_COLUMN)
    for name in decoded:
        checked = checked.cast_column(name, datasets.Image())
    return checked, report


# ---- checkpoints --------------------------------------------------------------------------------------
def _safetensors_problem(path: str) -> str | None:
    """None when `path` is a whole safetensors file (header parses, data reaches exactly the end)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            header_length = int.from_bytes(handle.read(8), "little")
            if size < 8 + header_length:
                return f"{os.path.basename(path)} is truncated (header)"
            header = json.loads(handle.read(header_length))
    except (OSError, ValueError) as error:
        return f"{os.path.basename(path)} is unreadable ({error})"
    end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    if size != 8 + header_length + end:
        return f"{os.path.basename(path)} is truncated ({size} bytes, the header describes {8 + header_length + end})"
    return None


def checkpoint_problems(path, require_optimizer: bool = True) -> list[str]:
    """What makes `path` an incomplete `checkpoint-N` folder ([] = complete).

    Checked: `trainer_state.json` parses and its `global_step` is N; the weights (`model.safetensors`, or
    every shard of `model.safetensors.index.json`) are whole; with `require_optimizer`, `optimizer.pt` and
    `scheduler.pt` exist and are whole zip archives. FSDP / DeepSpeed layouts are checked for the state only.
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
        for name in ("optimizer.pt", "scheduler.pt"):
            if name not in names:
                problems.append(f"{name} is missing")
                continue
            try:
                with zipfile.ZipFile(os.path.join(path, name)):
                    pass
            except (OSError, zipfile.BadZipFile) as error:
                problems.append(f"{name} is truncated or corrupt ({error})")
    return problems


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


# ---- shareable training arguments ------------------------------------------------------------------------
class ShareablePickleMixin:
    """`TrainingArguments` mixin: pickled without access tokens and machine-local paths.

    The Trainer pickles its arguments into `training_args.bin` of every checkpoint (and of the folder it
    pushes with `hub_strategy="checkpoint"`); without this, `--hub_token` and the absolute `--output_dir`
    end up there. Pickles get `*_token` fields set to None and absolute paths reduced to their last
    component; `copy.copy` / `copy.deepcopy` still copy everything.
    """

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for key, value in state.items():
            if key.endswith("_token") and value is not None:
                state[key] = None
            elif isinstance(value, str) and os.path.isabs(value):
                state[key] = os.path.basename(os.path.normpath(value))
        return state

    def __copy__(self):
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __deepcopy__(self, memo):
        new = object.__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new


# ---- the Trainer mixin -----------------------------------------------------------------------------------
class NonFiniteLossError(RuntimeError):
    """The training loss (or gradient norm) of a step is NaN or inf."""


class NonFiniteWeightsError(RuntimeError):
    """Weights about to be saved hold NaN or inf values."""


class IncompleteCheckpointError(RuntimeError):
    """A checkpoint to resume from is missing files or holds truncated ones."""


def describe_nonfinite(output, inputs: dict) -> str:
    """"non-finite part(s) itc: mlm=5.3, itc=inf (total inf); pixel_values not finite in batch rows [2]"."""
    parts = getattr(output, "loss_breakdown", None)
    values = {}
    if parts is not None:
        for name in ("mlm", "mim", "itc", "itm"):
            value = getattr(parts, name, None)
            if value is not None:
                values[name] = float(value.detach())
    total = float(output.loss.detach())
    text = ", ".join(f"{name}={value:.4g}" for name, value in values.items())
    text = f"{text} (total {total:.4g})" if text else f"total {total:.4g}"
    bad_parts = [name for name, value in values.items() if not math.isfinite(value)]
    if bad_parts:
        text = f"non-finite part(s) {', '.join(bad_parts)}: {text}"
    for key, value in inputs.items():
        if torch.is_tensor(value) and value.is_floating_point() and value.ndim > 0:
            bad = ~torch.isfinite(value.detach()).reshape(len(value), -1).all(dim=1)  # (B,)
            if bad.any():
                text += f"; {key} not finite in batch rows {bad.nonzero().flatten().tolist()}"
    return text


class GuardedTrainerMixin:
    """Non-finite loss guard, finite-weights check before saving, atomic checkpoints (see the module doc).

    Put it before `Trainer` in the bases. The mode comes from `on_nonfinite_loss=` or the training
    arguments' `on_nonfinite_loss` field ("stop" when neither is given). After `train()`, the skipped
    micro-batches are listed in `nonfinite_batches` ([(step, description)]) and counted in the returned
    metrics (`nonfinite_skipped_batches`, skip mode only).
    """

    def __init__(self, *args, on_nonfinite_loss: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        mode = on_nonfinite_loss or getattr(self.args, "on_nonfinite_loss", None) or "stop"
        if mode not in NONFINITE_LOSS_MODES:
            raise ValueError(f"on_nonfinite_loss must be one of {NONFINITE_LOSS_MODES}, got {mode!r}")
        self.on_nonfinite_loss = mode
        self.nonfinite_batches: list[tuple[int, str]] = []
        self._skipped_in_step = False
        self._loss_hook = None
        self._stats_hook = None
        self._running_stats: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._staging_run_dir = None
        self._pending_push = False

    # ---- non-finite losses and gradients ----------------------------------------------------------------
    def _snapshot_running_stats(self, module, args, kwargs):
        """Forward pre-hook (skip mode, training): copy the batch-norm running statistics (e.g. the ITC feature
        norm), so that a skipped batch leaves no trace in them either."""
        self._running_stats = []
        if module.training and torch.is_grad_enabled():
            for norm in module.modules():
                if isinstance(norm, torch.nn.modules.batchnorm._NormBase) and norm.track_running_stats:
                    self._running_stats += [(b, b.detach().clone()) for b in norm.buffers() if b is not None]
        return None

    def _check_training_loss(self, module, args, kwargs, output):
        """Forward hook: stop on (or neutralise) a non-finite training loss before its backward pass."""
        loss = getattr(output, "loss", None)
        if not module.training or not torch.is_grad_enabled() or loss is None or bool(torch.isfinite(loss).all()):
            return None
        step = self.state.global_step + 1
        description = describe_nonfinite(output, kwargs)
        if self.on_nonfinite_loss == "stop":
            last = last_complete_checkpoint(self.args.output_dir, require_optimizer=not self.args.save_only_model)
            raise NonFiniteLossError(
                f"non-finite training loss at step {step}: {description}. Stopped before the backward pass: no "
                f"weight was updated with it and nothing was saved (last checkpoint: {last or 'none'}). Pass "
                "--on_nonfinite_loss skip to skip such batches instead."
            )
        self.nonfinite_batches.append((step, description))
        self._skipped_in_step = True
        with torch.no_grad():
            for buffer, saved in self._running_stats:  # undo this batch's running-statistics update
                buffer.copy_(saved)
        logger.warning("step %d: skipping a batch with a non-finite loss: %s", step, description)
        trainable = [p for p in module.parameters() if p.requires_grad]
        # Zero gradient for every parameter (DDP expects one for each) and the NaN value kept for the logs
        # (the Trainer's logging_nan_inf_filter replaces it by the running mean).
        zero = torch.stack([p.reshape(-1)[0].float() for p in trainable]).sum() * 0.0
        changes = {"loss": zero + loss.detach().float()}
        names = {f.name for f in dataclasses.fields(output)} if dataclasses.is_dataclass(output) else set()
        if "loss_breakdown" in names and output.loss_breakdown is not None:
            changes["loss_breakdown"] = type(output.loss_breakdown)()  # the batch is left out of the metrics
        for name in ("mlm_labels", "itm_logits", "mim_labels"):
            if name in names:
                changes[name] = None
        if names:
            return dataclasses.replace(output, **changes)
        output.loss = changes["loss"]
        return output

    def _drop_gradients(self, model) -> None:
        for parameter in model.parameters():
            parameter.grad = None  # AdamW skips parameters without a gradient: no update, no decay, no momentum

    def _get_grad_norm(self, model, grad_norm=None):
        """The Trainer's gradient norm, checked: a non-finite norm stops (or skips) the step; a step whose
        micro-batches were all skipped has its (zero) gradients dropped so that the optimizer is a no-op."""
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        skipped, self._skipped_in_step = self._skipped_in_step, False
        if grad_norm is None or self.accelerator.scaler is not None:  # fp16 loss scaling skips inf steps itself
            return grad_norm
        value = float(grad_norm)
        step = self.state.global_step + 1
        if not math.isfinite(value):
            if self.on_nonfinite_loss == "stop":
                raise NonFiniteLossError(
                    f"non-finite gradient norm ({value}) at step {step} although the loss was finite. Stopped before "
                    "the optimizer step: no weight was updated with it and nothing was saved. Lower the learning "
                    "rate, or pass --on_nonfinite_loss skip to skip such steps."
                )
            self.nonfinite_batches.append((step, f"gradient norm {value}"))
            logger.warning("step %d: skipping the optimizer step: the gradient norm is %s", step, value)
            self._drop_gradients(model)
        elif skipped and value == 0.0:
            self._drop_gradients(model)
        return grad_norm

    # ---- saving ------------------------------------------------------------------------------------------
    def _check_finite_weights(self, where: str) -> None:
        bad = [name for name, p in self.model.named_parameters() if p.numel() and not bool(torch.isfinite(p).all())]
        if bad:
            raise NonFiniteWeightsError(
                f"refusing to save {where} at step {self.state.global_step}: {len(bad)} parameter(s) hold NaN/inf "
                f"values ({', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}). Nothing was written."
            )

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        if not _internal_call:  # checkpoints are checked once, in _save_checkpoint
            self._check_finite_weights(output_dir or self.args.output_dir)
        return super().save_model(output_dir, _internal_call=_internal_call)

    def _get_output_dir(self, trial):
        if self._staging_run_dir is not None:
            return self._staging_run_dir
        return super()._get_output_dir(trial=trial)

    def _push_from_checkpoint(self, checkpoint_folder):
        if self._staging_run_dir is not None:  # pushed after the rename, from the final folder
            self._pending_push = True
            return None
        return super()._push_from_checkpoint(checkpoint_folder)

    def _save_checkpoint(self, model, trial):
        """Write the checkpoint into a staging folder, then rename it to `checkpoint-N` (see the module doc)."""
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        self._check_finite_weights(name)
        run_dir = self._get_output_dir(trial=trial)
        staging_root = os.path.join(run_dir, STAGING_DIR)
        staged, final = os.path.join(staging_root, name), os.path.join(run_dir, name)
        if self.args.should_save:
            shutil.rmtree(staged, ignore_errors=True)  # left by a crash
        self.accelerator.wait_for_everyone()
        self._staging_run_dir = staging_root
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_run_dir = None
        self.accelerator.wait_for_everyone()  # every process has written its files (RNG states)
        if self.args.should_save:
            best = self.state.best_model_checkpoint
            if best is not None and os.path.normpath(best).startswith(os.path.normpath(staging_root) + os.sep):
                self.state.best_model_checkpoint = os.path.join(run_dir, os.path.basename(best))
                self.state.save_to_json(os.path.join(staged, "trainer_state.json"))
            if os.path.exists(final):  # the same step saved again (e.g. after a resume): replace it
                replaced = os.path.join(staging_root, name + ".replaced")
                shutil.rmtree(replaced, ignore_errors=True)
                os.rename(final, replaced)
                os.rename(staged, final)
                shutil.rmtree(replaced, ignore_errors=True)
            else:
                os.rename(staged, final)
            _fsync_dir(run_dir)
            rotate_checkpoints(run_dir, self.args.save_total_limit, self.state.best_model_checkpoint, use_mtime=True)
            if not os.listdir(staging_root):
                os.rmdir(staging_root)
        self.accelerator.wait_for_everyone()
        if self._pending_push:
            self._pending_push = False
            super()._push_from_checkpoint(final)

    # ---- training ----------------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint=None, trial=None, **kwargs):
        """`Trainer.train` with a checked checkpoint to resume from and the loss guard installed."""
        require_optimizer = not self.args.save_only_model
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir, require_optimizer)
            if resume_from_checkpoint is None:
                raise ValueError(f"no complete checkpoint in output_dir {self.args.output_dir!r} to resume from")
        if isinstance(resume_from_checkpoint, (str, os.PathLike)):
            problems = checkpoint_problems(resume_from_checkpoint, require_optimizer)
            if problems:
                parent = os.path.dirname(os.path.normpath(os.fspath(resume_from_checkpoint)))
                usable = last_complete_checkpoint(parent, require_optimizer)
                raise IncompleteCheckpointError(
                    f"cannot resume from {os.fspath(resume_from_checkpoint)}: it is incomplete ({'; '.join(problems)}); "
                    f"a crash while it was written? The latest complete checkpoint is {usable or 'none'}."
                )
        if self._loss_hook is not None:
            self._loss_hook.remove()
        self._loss_hook = self.model.register_forward_hook(self._check_training_loss, with_kwargs=True)
        if self._stats_hook is not None:
            self._stats_hook.remove()
            self._stats_hook = None
        if self.on_nonfinite_loss == "skip":
            self._stats_hook = self.model.register_forward_pre_hook(self._snapshot_running_stats, with_kwargs=True)
        self.nonfinite_batches = []
        try:
            output = super().train(resume_from_checkpoint=resume_from_checkpoint, trial=trial, **kwargs)
        finally:
            self._loss_hook.remove()
            self._loss_hook = None
            if self._stats_hook is not None:
                self._stats_hook.remove()
                self._stats_hook = None
        if self.on_nonfinite_loss == "skip":
            output.metrics["nonfinite_skipped_batches"] = len(self.nonfinite_batches)
            if self.nonfinite_batches:
                logger.warning("skipped %d batch(es) with a non-finite loss or gradient, at steps %s",
                               len(self.nonfinite_batches), sorted({step for step, _ in self.nonfinite_batches}))
        return output


def _fsync_dir(path: str) -> None:
    """Make a rename in `path` durable (no-op where directories cannot be opened)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


__all__ = [
    "NONFINITE_LOSS_MODES",
    "ExampleChecker",
    "GuardedTrainerMixin",
    "IncompleteCheckpointError",
    "NonFiniteLossError",
    "NonFiniteWeightsError",
    "ShareablePickleMixin",
    "SkippedExamples",
    "checkpoint_problems",
    "describe_nonfinite",
    "last_complete_checkpoint",
    "list_checkpoints",
    "non_text_token_ids",
    "screen_examples",
    "without_image_decoding",
]
