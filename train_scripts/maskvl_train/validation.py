"""Checks of the training arguments that transformers does not make, run before any data is read.

`check_training_arguments(training_args)` refuses values that would train nothing or train wrong without an
error: a negative / NaN learning rate or weight decay, batch size or gradient accumulation 0, negative data-loader
workers, `--max_steps 0`, `--num_train_epochs 0` (transformers "succeeds" with 0 steps and a model card).
`check_config_overrides(overrides, preset)` refuses `--config_overrides` keys that `MaskVLConfig` does not have
(a typo such as `mim_weigth` would be stored silently), with a did-you-mean; with `--model_name_or_path` it accepts
only the objective's fields (`CHECKPOINT_OVERRIDES`: loss weights and the like, e.g. a second stage that switches ITC
and ITM on), since a field that shapes the weights cannot change once they are trained.
"""

import difflib
import json
import math

from modeling_maskvl import MaskVLConfig

SUB_CONFIGS = ("text_config", "vision_config", "cross_modal_config")
# MaskVLConfig fields that change the training objective but no weight: these may be changed on a saved checkpoint
CHECKPOINT_OVERRIDES = ("mlm_weight", "mim_weight", "itc_weight", "itm_weight", "mim_loss", "norm_pix_loss",
                        "patch_drop_ratio")


def _finite(value) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def check_training_arguments(args) -> None:
    """Raise `ValueError` naming every argument whose value cannot give a meaningful run."""
    problems = []

    def need(name: str, ok: bool, rule: str) -> None:
        if not ok:
            problems.append(f"--{name} {getattr(args, name)!r} {rule}")

    need("learning_rate", _finite(args.learning_rate) and args.learning_rate > 0, "must be a positive number")
    need("weight_decay", _finite(args.weight_decay) and args.weight_decay >= 0, "must be a number >= 0")
    for name in ("warmup_steps", "warmup_ratio", "max_grad_norm"):
        if getattr(args, name, None) is not None:
            value = getattr(args, name)
            need(name, _finite(value) and value >= 0, "must be a number >= 0")
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        need(name, getattr(args, name) >= 1, "must be >= 1")
    need("dataloader_num_workers", args.dataloader_num_workers >= 0, "must be >= 0")
    need("max_steps", args.max_steps != 0, "trains nothing (give a positive number, or -1 to train "
         "--num_train_epochs epochs)")
    if args.max_steps < 0:
        need("num_train_epochs", _finite(args.num_train_epochs) and args.num_train_epochs > 0,
             "must be positive when --max_steps is not set (0 epochs trains nothing)")
    if getattr(args, "logging_steps", None) is not None:
        need("logging_steps", _finite(args.logging_steps) and args.logging_steps > 0, "must be positive")
    if problems:
        raise ValueError("invalid training arguments:\n  " + "\n  ".join(problems))


def _unknown(keys, known, where: str) -> list[str]:
    messages = []
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            messages.append(f"unknown key {key!r} in {where}{hint}")
    return messages


def check_config_overrides(overrides: dict, preset: str) -> None:
    """Raise `ValueError` for `--config_overrides` keys the preset's `MaskVLConfig` (or its sub-configs)
    does not have."""
    config = MaskVLConfig.from_preset(preset)
    known = set(config.to_dict()) - {"transformers_version", "_name_or_path", "architectures", "auto_map"}
    problems = _unknown(overrides, known, "--config_overrides")
    for name in SUB_CONFIGS:
        if name in overrides:
            if not isinstance(overrides[name], dict):
                problems.append(f"--config_overrides {name} must be an object of fields, got {overrides[name]!r}")
                continue
            problems += _unknown(overrides[name], set(getattr(config, name).to_dict()), f"--config_overrides {name}")
    if problems:
        raise ValueError("; ".join(problems) + f" (fields of MaskVLConfig preset {preset!r})")


def check_checkpoint_overrides(overrides: dict, checkpoint: str) -> None:
    """Raise `ValueError` for `--config_overrides` keys that cannot change on a trained checkpoint."""
    refused = [key for key in overrides if key not in CHECKPOINT_OVERRIDES]
    if refused:
        raise ValueError(f"--config_overrides {', '.join(repr(k) for k in refused)}: with --model_name_or_path "
                         f"{checkpoint!r} only the objective's fields can change ({', '.join(CHECKPOINT_OVERRIDES)}); "
                         "the others shape the weights of the saved model: start from a --preset instead")


def check_arguments(model_args, training_args) -> None:
    """Every check above, for the pre-training script (before any data preparation)."""
    check_training_arguments(training_args)
    checkpoint = model_args.model_name_or_path
    if checkpoint is not None:
        sizes = [f"--{name}" for name in ("image_size", "patch_size", "hidden_size")
                 if getattr(model_args, name) is not None]
        if sizes:
            raise ValueError(f"{' / '.join(sizes)} cannot change the size of --model_name_or_path {checkpoint!r}'s "
                             "model (its config.json fixes it); leave them out, or start from a --preset")
        if model_args.config_overrides:
            check_checkpoint_overrides(json.loads(model_args.config_overrides), checkpoint)
    elif model_args.config_overrides:
        check_config_overrides(json.loads(model_args.config_overrides), model_args.preset)


__all__ = ["CHECKPOINT_OVERRIDES", "check_arguments", "check_checkpoint_overrides", "check_config_overrides",
           "check_training_arguments"]
