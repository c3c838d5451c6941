"""Argument dataclasses of the MaskVL training scripts, read by `HfArgumentParser`, and how they are parsed.

* `ModelArguments`     -- preset, sizes, tokenizer, pretrained towers.
* `DataArguments`      -- where the image-caption pairs come from and how they are tagged
  (reused by the evaluation scripts).
* `MaskingArguments`   -- every masking option of `MaskVLDataCollator` (reused by the evaluation
  scripts); `collator_kwargs(config)` turns them into the collator's constructor arguments.
* `PretrainingArguments` -- transformers' `TrainingArguments` with defaults for the tiny CPU run, pickled
  without tokens and local paths (`ShareablePickleMixin`).

`parse_args(dataclass_types, argv)` reads them from the command line, from a YAML / JSON file, or
from a file followed by command-line overrides (`pretrain.py run.yaml --max_steps 10`);
`merge_repeated_flag` lets a list flag be given several times (`--checkpoint A --checkpoint B`).
"""

import copy
import json
import os
import sys
from dataclasses import dataclass, field, fields

import torch
import yaml
from maskvl_processing import IMAGE_MASKING_POLICIES, JOINT_MASKING_POLICIES, TEXT_MASKING_POLICIES
from transformers import HfArgumentParser, TrainingArguments

from .scrub import scrub

TAGGER_BACKENDS = ("auto", "dataset", "pattern", "spacy")
WORD_CLASS_POLICIES = ("stop_words", "content_words", "objects", "attributes", "relationships", "top_concrete")


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"--{name} {value!r} is not one of {sorted(choices)}")


@dataclass
class ModelArguments:
    """Which model to train and how to build it."""

    preset: str = field(
        default="maskvlm-small",
        metadata={"help": "MaskVLConfig preset: maskvlm, mlim, lxmert, or their -small (the CPU default run) or -tiny (tests) versions."},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Continue pre-training a saved MaskVL checkpoint (folder or Hub id) instead of a preset."},
    )
    image_size: int | None = field(
        default=0, metadata={"help": "Image side in pixels (default 0 = the preset's own: 64 for -small / -tiny, 224 for base)."})
    patch_size: int | None = field(default=None, metadata={"help": "ViT patch side in pixels (None = the preset's)."})
    hidden_size: int | None = field(
        default=None,
        metadata={"help": "Width of every tower and of the fusion module (intermediate = 4x); None = the preset's."},
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "JSON object of further MaskVLConfig overrides, sub-configs as objects, e.g. "
            '\'{"mim_weight": 0.5, "text_config": {"num_hidden_layers": 4}}\'.'
        },
    )
    tokenizer: str | None = field(
        default=None,
        metadata={
            "help": "Tokenizer folder or Hub id. Default: the tokenizer of --init_text_from / --model_name_or_path, "
            "else a WordPiece tokenizer trained on the training captions."
        },
    )
    tokenizer_vocab_size: int = field(
        default=1000, metadata={"help": "Vocabulary size when a tokenizer is trained on the captions."}
    )
    tokenizer_training_examples: int = field(
        default=100_000, metadata={"help": "At most this many captions train the tokenizer."}
    )
    init_text_from: str | None = field(
        default=None,
        metadata={"help": "Start the text tower from this BERT-family encoder (folder or Hub id); its tokenizer is used."},
    )
    init_vision_from: str | None = field(
        default=None, metadata={"help": "Start the vision tower from this ViT-family encoder (folder or Hub id)."}
    )

    def __post_init__(self):
        if self.image_size == 0:  # the preset's own image size
            self.image_size = None
        for name in ("image_size", "patch_size", "hidden_size", "tokenizer_vocab_size", "tokenizer_training_examples"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"--{name} must be positive, got {value}")
        if self.config_overrides is not None:
            overrides = json.loads(self.config_overrides) if isinstance(self.config_overrides, str) else None
            if not isinstance(overrides, dict):
                raise ValueError(f"--config_overrides must be a JSON object, got {self.config_overrides!r}")
        if self.model_name_or_path is not None and (self.init_text_from or self.init_vision_from):
            raise ValueError("--model_name_or_path cannot be combined with --init_text_from / --init_vision_from")

    def config_overrides_dict(self) -> dict:
        """`MaskVLConfig.from_preset` overrides from --image_size, --patch_size, --hidden_size, --config_overrides."""
        overrides: dict = {"text_config": {}, "vision_config": {}, "cross_modal_config": {}}
        if self.image_size is not None:
            overrides["vision_config"]["image_size"] = self.image_size
        if self.patch_size is not None:
            overrides["vision_config"]["patch_size"] = self.patch_size
        if self.hidden_size is not None:
            for sub in ("text_config", "vision_config", "cross_modal_config"):
                overrides[sub].update(hidden_size=self.hidden_size, intermediate_size=4 * self.hidden_size)
        for key, value in json.loads(self.config_overrides or "{}").items():
            if key in overrides and isinstance(value, dict):
                overrides[key].update(value)
            else:
                overrides[key] = value
        return {key: value for key, value in overrides.items() if value != {}}


@dataclass
class DataArguments:
    """Image-caption data: the embedded synthetic scenes by default, or a Hub data set, an `imagefolder`
    or webdataset shards (see `maskvl_processing.pretraining_data.load_image_text_dataset`)."""

    dataset_name: str | None = field(default=None, metadata={"help": "Hub data set (or local loading script)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Config of --dataset_name."})
    train_split: str = field(default="train", metadata={"help": "Split used for training."})
    eval_split: str | None = field(
        default=None,
        metadata={"help": "Split used for evaluation; None = hold out --eval_size training examples "
                  "(the synthetic set draws an independent 'validation' stream instead)."},
    )
    streaming: bool = field(default=False, metadata={"help": "Stream --dataset_name / --webdataset (needs --max_steps)."})
    train_dir: str | None = field(default=None, metadata={"help": "Local imagefolder with metadata.jsonl."})
    validation_dir: str | None = field(default=None, metadata={
        "help": "Local imagefolder with metadata.jsonl evaluated on (instead of holding out --eval_size training "
                "examples or reading --eval_split)."})
    webdataset: str | None = field(
        default=None, metadata={"help": "Webdataset tar shards: a path, glob or brace pattern (shard-{000..009}.tar)."}
    )
    image_column: str = field(default="image", metadata={"help": "Image column of the source."})
    caption_column: str = field(default="caption", metadata={"help": "Caption column of the source."})
    eval_size: int = field(default=500, metadata={"help": "Number of held-out evaluation examples."})
    synthetic_num_examples: int = field(
        default=12000, metadata={"help": "Training examples generated when no data source is given (12,000: with "
                                         "4,000 seen 48 times each, held-out ITC overfits; docs/pretraining.md)."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set."})
    train_fraction: float = field(
        default=1.0,
        metadata={"help": "Pre-train on this fraction of the training pairs, in (0, 1]: a prefix of one permutation "
                  "drawn with --data_seed (default --seed), so smaller fractions are nested inside larger ones."},
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate the evaluation set."})
    max_seq_length: int = field(default=40, metadata={"help": "Captions are truncated to this many word-pieces."})
    tagger: str = field(
        default="auto",
        metadata={"help": "Word-class tagger backend: dataset (columns words/word_classes), pattern (textblob, "
                  "offline), spacy; auto = dataset when those columns exist, else pattern."},
    )
    spacy_model: str = field(default="en_core_web_sm", metadata={"help": "spaCy pipeline for --tagger spacy."})
    object_vocab: str | None = field(default=None, metadata={"help": "Object vocabulary file, one word a line."})
    attribute_vocab: str | None = field(default=None, metadata={"help": "Attribute vocabulary file."})
    relation_vocab: str | None = field(default=None, metadata={"help": "Relation vocabulary file."})
    skip_bad_examples: bool = field(
        default=False, metadata={"help": "Drop empty captions and unreadable images (logged) instead of raising."}
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "num_proc of datasets.map."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Recompute cached datasets.map results."})
    cache_dir: str | None = field(default=None, metadata={"help": "datasets cache folder."})
    image_use_check: bool = field(
        default=True,
        metadata={"help": "After training, score masked attribute / object words of the held-out pairs with the "
                  "image and with a blank image, and print both (the model's use of the image)."},
    )
    baseline_examples: int = field(
        default=2000,
        metadata={"help": "Training examples whose masks define the most frequent masked token (frequency baseline)."},
    )

    def __post_init__(self):
        sources = [name for name in ("dataset_name", "train_dir", "webdataset") if getattr(self, name)]
        if len(sources) > 1:
            raise ValueError(f"give at most one data source, got {sources}")
        _check_choice("tagger", self.tagger, TAGGER_BACKENDS)
        for name in ("eval_size", "synthetic_num_examples", "max_seq_length", "baseline_examples"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.max_seq_length < 3:
            raise ValueError(f"--max_seq_length must leave room for [CLS] word [SEP], got {self.max_seq_length}")
        if self.validation_dir is not None and self.eval_split is not None:
            raise ValueError("give --validation_dir or --eval_split, not both")
        if self.validation_dir is not None and not os.path.isdir(self.validation_dir):
            raise ValueError(f"--validation_dir {self.validation_dir!r} is not a folder")
        if self.streaming and self.train_dir:
            raise ValueError("--streaming is supported for --dataset_name and --webdataset, not --train_dir")
        if not (0 < self.train_fraction <= 1):  # also refuses NaN
            raise ValueError(f"--train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.train_fraction < 1 and self.streaming:
            raise ValueError("--train_fraction needs a map-style data set (not --streaming); use --max_train_samples")

    @property
    def source_description(self) -> str:
        """One line naming the data source (for logs and the model card)."""
        if self.dataset_name:
            return self.dataset_name + (f" ({self.dataset_config_name})" if self.dataset_config_name else "")
        if self.train_dir:
            return f"imagefolder {os.path.basename(os.path.normpath(self.train_dir))}"
        if self.webdataset:
            return f"webdataset {os.path.basename(self.webdataset)}"
        return "maskvl synthetic scenes (embedded)"


@dataclass
class MaskingArguments:
    """Every masking option of `MaskVLDataCollator`. Unset (None) options follow the model config:
    MaskVLM presets mask text OR image per pair (joint `maskvlm`, 32-px-style blocks), MLIM presets use
    modality-aware masking with random patches, models without a pixel head mask text only."""

    text_masking: str = field(
        default="random", metadata={"help": f"Text policy: {', '.join(TEXT_MASKING_POLICIES)}."}
    )
    text_mask_rate: float | None = field(
        default=None,
        metadata={"help": "Text masking rate, set on the joint policy (None = 0.15, or 0.3 under joint maskvlm; "
                  "joint mlim's modes set their own). Word-class policies in mode 'one' mask one word per caption "
                  "whatever the rate."},
    )
    text_mask_mode: str = field(
        default="one", metadata={"help": "Word-class policies: 'one' target word per caption, or 'rate'."}
    )
    mask_replace_prob: float = field(default=0.8, metadata={"help": "Masked tokens replaced by [MASK] (BERT 80%%)."})
    random_replace_prob: float = field(default=0.1, metadata={"help": "Masked tokens replaced by a random token (10%%)."})
    image_masking: str | None = field(
        default=None, metadata={"help": f"Image policy: {', '.join(IMAGE_MASKING_POLICIES)} (None = by model)."}
    )
    image_mask_ratio: float | None = field(
        default=None, metadata={"help": "Fraction of patches masked, set on the joint policy (None = 0.6, MaskVLM; "
                                "joint mlim's modes set their own)."}
    )
    mask_block_pixels: int | None = field(
        default=None,
        metadata={"help": "Block policy: side of the aligned square blocks in pixels, a multiple of the patch size "
                  "(None = MaskVLM's 32/224 of the image side, rounded to patches; 0 = BEiT-style random blocks)."},
    )
    joint_masking: str | None = field(
        default=None, metadata={"help": f"Joint policy: {', '.join(JOINT_MASKING_POLICIES)} (None = by model)."}
    )
    joint_text_prob: float = field(
        default=0.5, metadata={"help": "Joint maskvlm: probability that a pair has its text (not image) masked."}
    )
    joint_both_prob: float = field(
        default=0.0, metadata={"help": "Joint maskvlm: probability that a pair has both modalities masked."}
    )
    itm_negative_prob: float | None = field(
        default=None,
        metadata={"help": "--itm_negatives swap: probability that a pair gets a swapped image; None = 0.5."},
    )
    itm_negatives: str = field(
        default="auto",
        metadata={"help": "ITM negatives: in_batch (ALBEF / MaskVLM: every pair stays a true pair for MLM, MIM and "
                  "ITC, and each text is also matched against another row's image), swap (a share "
                  "--itm_negative_prob of the pairs gets another row's image and leaves MLM / MIM / ITC), none; "
                  "auto = in_batch for a model with an ITM head and separate passes, swap for a joint-pass model "
                  "(LXMERT), none without an ITM head."},
    )
    eval_mask_seed: int = field(
        default=1234, metadata={"help": "Seed of the evaluation masks (the same masks at every evaluation)."}
    )

    def __post_init__(self):
        _check_choice("text_masking", self.text_masking, TEXT_MASKING_POLICIES)
        _check_choice("text_mask_mode", self.text_mask_mode, ("one", "rate"))
        _check_choice("itm_negatives", self.itm_negatives, ("auto", "in_batch", "swap", "none"))
        if self.image_masking is not None:
            _check_choice("image_masking", self.image_masking, IMAGE_MASKING_POLICIES)
        if self.joint_masking is not None:
            _check_choice("joint_masking", self.joint_masking, JOINT_MASKING_POLICIES)
        for name in ("text_mask_rate", "image_mask_ratio", "itm_negative_prob", "joint_text_prob", "joint_both_prob",
                     "mask_replace_prob", "random_replace_prob"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"--{name} must be in [0, 1], got {value}")
        if self.mask_replace_prob + self.random_replace_prob > 1.0:
            raise ValueError("--mask_replace_prob + --random_replace_prob must be at most 1")
        if self.mask_block_pixels is not None and self.mask_block_pixels < 0:
            raise ValueError(f"--mask_block_pixels must be >= 0, got {self.mask_block_pixels}")

    def resolved(self, config) -> dict:
        """The image / joint policy and ITM probability for a `MaskVLConfig` (None options filled in)."""
        single_stream = config.cross_modal_config.fusion_type == "single_stream"
        image = self.image_masking
        if image is None:
            image = ("random" if single_stream else "block") if config.use_mim_head else "none"
        joint = self.joint_masking
        if joint is None:
            if single_stream and config.use_mim_head:
                joint = "mlim"
            elif config.use_mim_head and config.masked_modeling_passes == "separate":
                joint = "maskvlm"
            else:
                joint = "independent"
        if (self.itm_negative_prob or 0) > 0 and not config.use_itm_head:
            raise ValueError(f"--itm_negative_prob {self.itm_negative_prob} needs a model with an ITM head (preset "
                             f"{config.preset!r} has none)")
        mode = self.itm_negatives
        if mode == "auto":
            mode = ("in_batch" if config.masked_modeling_passes == "separate" else "swap") if config.use_itm_head \
                else "none"
        if mode != "none" and not config.use_itm_head:
            raise ValueError(f"--itm_negatives {mode} needs a model with an ITM head (preset {config.preset!r} has none)")
        if mode == "in_batch" and config.masked_modeling_passes != "separate":
            raise ValueError("--itm_negatives in_batch needs masked_modeling_passes='separate'; use swap")
        itm = self.itm_negative_prob
        if itm is None:
            itm = 0.5 if mode == "swap" else 0.0
        if itm > 0 and mode != "swap":
            raise ValueError(f"--itm_negative_prob {itm} only applies to --itm_negatives swap (got {mode})")
        if image != "none" and not config.use_mim_head:
            raise ValueError(f"--image_masking {image!r} needs a model with a pixel head (preset {config.preset!r} has none)")
        return {"image_masking": image, "joint_masking": joint, "itm_negative_prob": itm, "itm_negatives": mode}

    def block_pixels(self, config) -> int | None:
        """Aligned block side in pixels for the block policy (None = BEiT-style blocks)."""
        patch, size = config.vision_config.patch_size, config.vision_config.image_size
        if self.mask_block_pixels == 0:
            return None
        if self.mask_block_pixels is None:  # MaskVLM: 32-px blocks in 224-px images
            return max(patch, round(size * 32 / 224 / patch) * patch)
        if self.mask_block_pixels % patch:
            raise ValueError(f"--mask_block_pixels {self.mask_block_pixels} is not a multiple of the patch size {patch}")
        return self.mask_block_pixels

    def collator_kwargs(self, config) -> dict:
        """Keyword arguments of `MaskVLDataCollator` (without tokenizer, image processor and seed)."""
        resolved = self.resolved(config)
        text_kwargs = {"mask_replace_prob": self.mask_replace_prob, "random_replace_prob": self.random_replace_prob}
        if self.text_masking in WORD_CLASS_POLICIES:
            text_kwargs["mode"] = self.text_mask_mode
        image_kwargs = {}
        if resolved["image_masking"] == "block":
            image_kwargs["block_pixels"] = self.block_pixels(config)
        joint_kwargs = {}
        if resolved["joint_masking"] == "maskvlm":
            joint_kwargs = {"text_prob": self.joint_text_prob, "both_prob": self.joint_both_prob}
        if resolved["joint_masking"] != "mlim":  # the joint policy decides every row's rates (mlim: its modes')
            if self.text_mask_rate is not None:
                joint_kwargs["text_rate"] = self.text_mask_rate
            if resolved["image_masking"] != "none" and self.image_mask_ratio is not None:
                joint_kwargs["image_ratio"] = self.image_mask_ratio
        return {
            "text_policy": self.text_masking,
            "text_policy_kwargs": text_kwargs,
            "image_policy": resolved["image_masking"],
            "image_policy_kwargs": image_kwargs,
            "joint_policy": resolved["joint_masking"],
            "joint_policy_kwargs": joint_kwargs,
            "itm_negatives": ("in_batch" if resolved["itm_negatives"] == "in_batch" else
                              float(resolved["itm_negative_prob"]) if resolved["itm_negative_prob"] > 0 else False),
            # FLIP-style patch dropping (config.patch_drop_ratio) takes its randomness from the collator
            "patch_drop_noise": getattr(config, "patch_drop_ratio", 0.0) > 0,
        }


# ---- shareable training arguments ------------------------------------------------------------------------
class ShareablePickleMixin:
    """`TrainingArguments` mixin: pickled without access tokens and machine-local paths.

    The Trainer pickles its arguments into `training_args.bin` of every checkpoint (and of the folder it
    pushes with `hub_strategy="checkpoint"`); without this, `--hub_token` and the absolute `--output_dir`
    end up there. Pickles get `*_token` fields set to None and absolute paths reduced to their last
    component; `copy.copy` / `copy.deepcopy` still copy everything.
    """

    def __getstate__(self) -> dict:
        return {key: scrub(value, key) for key, value in self.__dict__.items()}

    def __copy__(self):
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __deepcopy__(self, memo):
        new = object.__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new


@dataclass
class PretrainingArguments(ShareablePickleMixin, TrainingArguments):
    """transformers' `TrainingArguments`, with defaults for the tiny default run on a 2-core CPU.

    Several processes (torchrun, `accelerate launch --multi_gpu`) on a machine without an accelerator set
    `use_cpu`, so they form one gloo DDP group instead of training alone each.
    `--resume_from_checkpoint auto` resumes from the latest `checkpoint-*` in `--output_dir` (or starts
    fresh when there is none); a path resumes from that checkpoint.
    """

    output_dir: str | None = field(default="outputs/pretrain", metadata={"help": "Where checkpoints and the model go."})
    max_steps: int = field(default=6000, metadata={
        "help": "Optimizer steps (overrides --num_train_epochs when > 0). 6,000 of batch 32: the embedded run reads "
                "shapes and colours after 128,000 to 192,000 images (docs/pretraining.md)."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Batch size per device for training."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Batch size per device for evaluation."})
    learning_rate: float = field(default=2e-3, metadata={"help": "Peak AdamW learning rate."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    warmup_steps: float = field(default=0.05, metadata={"help": "Warm-up steps (or fraction of steps when < 1)."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule."})
    logging_steps: float = field(default=25, metadata={"help": "Log the loss parts every this many steps."})
    eval_strategy: str = field(default="steps", metadata={"help": "When to evaluate: no, steps, epoch."})
    eval_steps: float | None = field(default=1000, metadata={"help": "Evaluate every this many steps."})
    save_steps: float = field(default=1000, metadata={"help": "Save a checkpoint every this many steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep at most this many checkpoints."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep the image / word-class columns: the collator needs them."}
    )
    dataloader_num_workers: int = field(default=0, metadata={"help": "Data-loader worker processes."})
    on_nonfinite_loss: str = field(
        default="stop",
        metadata={"help": "A NaN/inf training loss or gradient norm: 'stop' (error naming the step and the loss "
                  "part; nothing is saved) or 'skip' the batch (counted in the train metrics)."},
    )
    precise_bn_examples: int = field(
        default=512,
        metadata={"help": "Precise BatchNorm: before every evaluation and save, re-estimate the running statistics "
                  "of the model's BatchNorm layers (the -small presets' stem) over this many training images with "
                  "the current weights (0 = keep the running averages; models without BatchNorm: no effect)."},
    )

    def __post_init__(self):
        _check_choice("on_nonfinite_loss", self.on_nonfinite_loss, ("stop", "skip"))
        if self.precise_bn_examples < 0:
            raise ValueError(f"--precise_bn_examples must be >= 0, got {self.precise_bn_examples}")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available():
            # Launched as several processes (torchrun / accelerate --multi_gpu) on a machine without an
            # accelerator: without use_cpu every process would silently train alone (world size 1).
            self.use_cpu = True
        super().__post_init__()


def _file_arguments(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) if path.endswith((".yaml", ".yml")) else json.load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"argument file {path!r} must hold a mapping of argument names to values")
    return data


def parse_args(dataclass_types=(ModelArguments, DataArguments, MaskingArguments, PretrainingArguments), argv=None):
    """Parse the dataclasses from `argv` (default `sys.argv[1:]`).

    A first argument ending in .yaml / .yml / .json is an argument file; later command-line
    arguments override its values. Unknown keys in the file raise an error naming them.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(dataclass_types)
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        values = _file_arguments(argv.pop(0))
        known = {f.name for dtype in dataclass_types for f in fields(dtype) if f.init}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown argument(s) in the argument file: {unknown}")
        parser.set_defaults(**values)
    return parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)


def merge_repeated_flag(argv: list[str], flag: str = "--checkpoint") -> list[str]:
    """`--checkpoint A --checkpoint B C` -> `--checkpoint A B C` (argparse would keep only the last)."""
    values, rest, index = [], [], 0
    while index < len(argv):
        if argv[index] == flag:
            index += 1
            while index < len(argv) and not argv[index].startswith("--"):
                values.append(argv[index])
                index += 1
        else:
            rest.append(argv[index])
            index += 1
    return rest + [flag, *values] if values else rest
