"""`MaskVLPreTrainer`: transformers' `Trainer` for MaskVL pre-training, guarded for long runs on messy data.

`MaskVLPreTrainer`, on top of the standard `Trainer`,

* logs every loss part (`mlm_loss`, `mim_loss`, `itc_loss`, `itm_loss`) and the masked-token accuracy
  (`mlm_accuracy`, token-weighted) averaged over the logging window and over processes;
* evaluates on a held-out split with its own collator (fixed evaluation masks) and reports the loss
  parts, `mlm_accuracy`, `itm_accuracy` and `frequency_baseline_accuracy` (always predicting the most
  frequent masked token of the training set, on the same masks);
* leaves gradient-accumulation scaling to the Trainer: the model's loss is a weighted sum of
  per-objective means and takes no `num_items_in_batch`;
* **precise BatchNorm** (`precise_bn_pixels`): before every evaluation, checkpoint and save, the running statistics
  of every BatchNorm layer are re-estimated over a fixed set of training images with the current weights
  (`recompute_batch_norm_statistics`; Wu & Johnson 2021, detectron2's PreciseBN). The running averages lag the
  weights while the learning rate is high: measured on the default run's model at step 2,000 of 8,000, held-out
  ITC loss and the image-use check were far off with them (object-word Acc@1 with the image 0.112, 0.236 with
  re-estimated statistics). Training itself never reads these buffers;
* reloads checkpoint weights through `from_pretrained`: transformers 5.23's `Trainer._load_from_checkpoint`
  uses a plain `load_state_dict(strict=False)`, which misses the key renaming `save_pretrained` applies
  (ViT weights are saved under their legacy names), so a resumed run would silently keep a freshly
  initialised vision tower.

`GuardedTrainerMixin` (mixed into it; `class T(GuardedTrainerMixin, Trainer)` works for any Trainer):

* **non-finite loss**: a forward hook checks the training loss of every micro-batch before its backward
  pass. `on_nonfinite_loss="stop"` (default) raises `NonFiniteLossError` naming the step, the loss parts
  (mlm / mim / itc / itm) and the batch rows whose `pixel_values` are not finite; `"skip"` replaces the
  batch's loss by a zero-gradient loss, counts it, and when a whole optimizer step was skipped drops its
  gradients so that AdamW changes nothing (no momentum, no weight decay). A non-finite gradient norm
  with a finite loss is handled the same way (except under fp16 loss scaling, which skips such steps).
* **no NaN weights on disk**: `save_model` and checkpoints refuse to write weights that hold NaN / inf.
* **atomic checkpoints**: transformers 5.23's `Trainer._save_checkpoint` writes straight into
  `checkpoint-N` (weights, then optimizer, scheduler, RNG states, `trainer_state.json`), so a crash midway
  leaves a folder that `get_last_checkpoint` picks and `Trainer.train` resumes from silently (it starts at
  step 0 without `trainer_state.json`, with a fresh optimizer without `optimizer.pt`). Here the checkpoint
  is written into `<output_dir>/.checkpoint-staging/checkpoint-N` and renamed to `checkpoint-N` only when
  every file is written (on every process); old checkpoints are rotated after the rename.
* **resume check**: `train(resume_from_checkpoint=path)` refuses an incomplete checkpoint with an error
  listing what is missing and naming the latest complete one; `resume_from_checkpoint=True` picks the
  latest complete checkpoint (the checks are `checkpoints.checkpoint_problems` / `last_complete_checkpoint`).
"""

import dataclasses
import errno
import itertools
import logging
import math
import os
import shutil

import torch
from transformers import PreTrainedModel, Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from .checkpoints import (
    STAGING_DIR,
    IncompleteCheckpointError,
    checkpoint_problems,
    last_complete_checkpoint,
    missing_tensors,
)
from .seeded_masking import EpochCallback, ExampleSeededMasking

logger = logging.getLogger(__name__)

NONFINITE_LOSS_MODES = ("stop", "skip")
LOSS_PARTS = ("mlm", "mim", "itc", "itm")
# Sums kept per logging / evaluation window: (value sum, count) for each loss part, then counters.
_WINDOW_KEYS = tuple(f"{part}_loss" for part in LOSS_PARTS) + ("mlm_correct", "itm_correct", "baseline_correct")
_SLOT = {key: index for index, key in enumerate(_WINDOW_KEYS)}


# ---- precise BatchNorm -----------------------------------------------------------------------------------
def batch_norm_layers(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The BatchNorm layers of `module` that keep running statistics."""
    return [m for m in module.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_batch_norm_statistics(vision_tower: torch.nn.Module, pixel_values: torch.Tensor,
                                    batch_size: int = 64) -> int:
    """Replace the running mean / variance of every BatchNorm layer of `vision_tower` by their plain average over
    `pixel_values` (N, C, H, W), computed with the current weights (`torch.optim.swa_utils.update_bn`). The tower's
    train / eval mode is restored. Returns the number of layers updated (0: nothing to do)."""
    if not batch_norm_layers(vision_tower) or not len(pixel_values):
        return 0
    parameter = next(vision_tower.parameters())
    loader = [pixel_values[i:i + batch_size].to(device=parameter.device, dtype=parameter.dtype)
              for i in range(0, len(pixel_values), batch_size)]
    torch.optim.swa_utils.update_bn(loader, vision_tower)
    return len(batch_norm_layers(vision_tower))


def precise_bn_images(dataset, collator, num_examples: int, batch_size: int = 64) -> torch.Tensor | None:
    """`pixel_values` of the first `num_examples` training examples, as `collator` (an `ExampleSeededMasking`,
    so no global random state is drawn) prepares them; None when `num_examples` is 0 or no row was usable."""
    if num_examples <= 0:
        return None
    rows, chunks = itertools.islice(iter(dataset), num_examples), []
    while chunk := list(itertools.islice(rows, batch_size)):
        batch = collator(chunk)
        if "pixel_values" in batch and len(batch["pixel_values"]):
            chunks.append(batch["pixel_values"])
    return torch.cat(chunks) if chunks else None


# ---- the Trainer mixin -----------------------------------------------------------------------------------
class NonFiniteLossError(RuntimeError):
    """The training loss (or gradient norm) of a step is NaN or inf."""


class NonFiniteWeightsError(RuntimeError):
    """Weights about to be saved hold NaN or inf values."""


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
        try:
            return super().save_model(output_dir, _internal_call=_internal_call)
        except (OSError, RuntimeError) as error:
            if _internal_call:
                raise
            raise _save_error(error, "the model", output_dir or self.args.output_dir) from error

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
        except (OSError, RuntimeError) as error:
            if self.args.should_save:
                shutil.rmtree(staged, ignore_errors=True)  # a half-written checkpoint is never renamed into place
            raise _save_error(error, name, run_dir) from error
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
            missing = missing_tensors(resume_from_checkpoint, self.model)
            if missing:
                raise IncompleteCheckpointError(
                    f"cannot resume from {os.fspath(resume_from_checkpoint)}: its weights lack {len(missing)} tensor(s) "
                    f"of this model ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); they would be "
                    "left as initialised. Another architecture or preset than the one that wrote it?"
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


_DISK_FULL_SIGNS = ("unexpected pos", "file write failed", "No space left")


def _save_error(error: Exception, what: str, folder: str) -> Exception:
    """A clear error for a save that ran out of disk space (torch reports it as a bare "unexpected pos"
    RuntimeError, safetensors / json as OSError ENOSPC); other errors are returned unchanged."""
    full = (isinstance(error, OSError) and error.errno == errno.ENOSPC) or any(
        sign in str(error) for sign in _DISK_FULL_SIGNS)
    if not full:
        return error
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB free"
    except OSError:
        free = "free space unknown"
    return OSError(errno.ENOSPC, f"disk full while saving {what} to {folder} ({free}): nothing half-written was "
                                 f"kept; free space, lower --save_total_limit or save elsewhere, then resume from the "
                                 f"latest complete checkpoint ({type(error).__name__}: {str(error)[:200]})")


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


class MaskVLPreTrainer(GuardedTrainerMixin, Trainer):
    """`Trainer` that logs the loss parts and evaluates held-out masked-token accuracy.

    Args (besides `Trainer`'s):
        eval_data_collator: collator of the evaluation set (e.g. an `ExampleSeededMasking` with a fixed
            seed, so every evaluation scores the same masks); default: the training collator.
        baseline_token_id: the most frequent masked token of the training set; evaluation then reports
            `frequency_baseline_accuracy`.
        precise_bn_pixels: (N, C, H, W) training images over which the vision tower's BatchNorm statistics are
            re-estimated before every evaluation, checkpoint and save; None keeps the running averages.
    """

    def __init__(self, *args, eval_data_collator=None, baseline_token_id: int | None = None,
                 precise_bn_pixels: torch.Tensor | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_data_collator = eval_data_collator
        self.baseline_token_id = baseline_token_id
        self.precise_bn_pixels = precise_bn_pixels
        self._precise_bn_step = None  # the step whose weights the BatchNorm statistics were last estimated with
        # The loss is a weighted sum of per-objective means (the model takes no `num_items_in_batch`):
        # the Trainer must divide it by the number of accumulation steps itself.
        self.model_accepts_loss_kwargs = False
        self._train_window = self._new_window()
        self._eval_window = None
        if isinstance(self.data_collator, ExampleSeededMasking):
            self.add_callback(EpochCallback(self.data_collator))

    # ---- windows of summed metrics -----------------------------------------------------------------
    def _new_window(self) -> torch.Tensor:
        return torch.zeros(len(_WINDOW_KEYS), 2, dtype=torch.float64, device=self.args.device)  # (K, [sum, count])

    def _accumulate(self, window: torch.Tensor, outputs, inputs) -> None:
        parts = outputs.loss_breakdown
        for part in LOSS_PARTS:
            value = getattr(parts, part, None)
            if value is not None:
                window[_SLOT[f"{part}_loss"]] += torch.stack([value.detach().double(), value.new_ones((), dtype=torch.float64)])
        labels = outputs.mlm_labels
        if labels is not None and labels.numel():
            predictions = outputs.mlm_logits.detach().argmax(dim=-1)  # (M,)
            window[_SLOT["mlm_correct"]] += torch.stack([(predictions == labels).sum().double(), labels.new_tensor(labels.numel(), dtype=torch.float64)])
            if self.baseline_token_id is not None:
                hits = (labels == self.baseline_token_id).sum().double()
                window[_SLOT["baseline_correct"]] += torch.stack([hits, labels.new_tensor(labels.numel(), dtype=torch.float64)])
        itm_labels = getattr(outputs, "itm_labels", None)  # with in-batch negatives the model builds them
        if itm_labels is None:
            itm_labels = inputs.get("itm_labels")
        if outputs.itm_logits is not None and itm_labels is not None:
            correct = (outputs.itm_logits.detach().argmax(dim=-1) == itm_labels).sum().double()
            window[_SLOT["itm_correct"]] += torch.stack([correct, itm_labels.new_tensor(itm_labels.numel(), dtype=torch.float64)])

    def _window_metrics(self, window: torch.Tensor, prefix: str = "") -> dict[str, float]:
        """Averages of a window summed over processes; parts absent from every batch are left out."""
        window = self.accelerator.reduce(window, reduction="sum") if self.accelerator.num_processes > 1 else window
        names = {"mlm_correct": "mlm_accuracy", "itm_correct": "itm_accuracy", "baseline_correct": "frequency_baseline_accuracy"}
        metrics = {}
        for key, (total, count) in zip(_WINDOW_KEYS, window.tolist()):
            if count > 0:
                metrics[prefix + names.get(key, key)] = total / count
        return metrics

    # ---- training ----------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The model's weighted total loss; stashes the loss parts of training batches for `log`."""
        outputs = model(**inputs)
        if model.training:
            self._accumulate(self._train_window, outputs, inputs)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the window averages of the loss parts and masked-token accuracy to training logs."""
        if "loss" in logs:  # a training log (evaluation logs carry eval_loss)
            logs.update(self._window_metrics(self._train_window))
            self._train_window.zero_()
        super().log(logs, start_time)

    # ---- checkpoints --------------------------------------------------------------------------------
    def _plain_model(self, model=None) -> PreTrainedModel | None:
        """The unwrapped `PreTrainedModel` when weights are loaded by the Trainer itself (not FSDP / DeepSpeed)."""
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            return None
        unwrapped = self.accelerator.unwrap_model(model if model is not None else self.model)
        return unwrapped if isinstance(unwrapped, PreTrainedModel) else None

    def _load_weights(self, model: PreTrainedModel, checkpoint: str) -> None:
        """Load `checkpoint`'s weights into `model` with the key conversions of `from_pretrained` (strict)."""
        loaded = type(model).from_pretrained(checkpoint, dtype=model.dtype)
        model.load_state_dict(loaded.state_dict(), strict=True)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        plain = self._plain_model(model)
        if plain is None:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._load_weights(plain, resume_from_checkpoint)

    def _load_best_model(self):
        plain = self._plain_model()
        if plain is None:
            return super()._load_best_model()
        self._load_weights(plain, self.state.best_model_checkpoint)

    # ---- precise BatchNorm ---------------------------------------------------------------------------
    def refresh_batch_norm_statistics(self) -> int:
        """Re-estimate the vision tower's BatchNorm statistics over `precise_bn_pixels` (see the module doc)."""
        if self.precise_bn_pixels is None:
            return 0
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:  # sharded weights: no forward outside the wrapper
            if not getattr(self, "_precise_bn_warned", False):
                logger.warning("precise BatchNorm is skipped under FSDP / DeepSpeed: running averages are kept")
                self._precise_bn_warned = True
            return 0
        if self._precise_bn_step == self.state.global_step:  # evaluation and checkpoint of one step: done once
            return 0
        self._precise_bn_step = self.state.global_step
        model = self.accelerator.unwrap_model(self.model)
        tower = getattr(getattr(model, "maskvl", model), "vision_model", None)
        return 0 if tower is None else recompute_batch_norm_statistics(tower, self.precise_bn_pixels)

    def evaluate(self, *args, **kwargs):
        self.refresh_batch_norm_statistics()
        return super().evaluate(*args, **kwargs)

    def _save_checkpoint(self, model, trial):
        self.refresh_batch_norm_statistics()
        return super()._save_checkpoint(model, trial)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        if not _internal_call:  # checkpoints were refreshed in _save_checkpoint
            self.refresh_batch_norm_statistics()
        return super().save_model(output_dir, _internal_call=_internal_call)

    # ---- evaluation --------------------------------------------------------------------------------
    def get_eval_dataloader(self, eval_dataset=None):
        """The evaluation loader, collated by `eval_data_collator` when one is given."""
        if self.eval_data_collator is None:
            return super().get_eval_dataloader(eval_dataset)
        train_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        """Trainer's loop (eval loss), plus the loss parts, accuracies and the frequency baseline."""
        self._eval_window = self._new_window()
        try:
            output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys,
                                             metric_key_prefix)
            output.metrics.update(self._window_metrics(self._eval_window, prefix=f"{metric_key_prefix}_"))
        finally:
            self._eval_window = None
        return output

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Loss only (no logits are gathered); the parts and accuracies go to the evaluation window."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            outputs = model(**inputs)
        if self._eval_window is not None:
            self._accumulate(self._eval_window, outputs, inputs)
        loss = None if outputs.loss is None else outputs.loss.detach()
        return loss, None, None


__all__ = [
    "NONFINITE_LOSS_MODES",
    "GuardedTrainerMixin",
    "MaskVLPreTrainer",
    "NonFiniteLossError",
    "NonFiniteWeightsError",
    "batch_norm_layers",
    "describe_nonfinite",
    "precise_bn_images",
    "recompute_batch_norm_statistics",
]
