"""Shared set-up of the MaskVL benchmarks: matched-size models, their batches and one training step.

Every model of a comparison is built at the same width, depth, heads, image size, patch size, text
length, batch size and vocabulary (:class:`BenchSize`):

* ``maskvlm`` / ``mlim`` / ``lxmert`` -- ``MaskVLForPreTraining`` from ``MaskVLConfig.from_preset`` with the
  sizes overridden. Towers that a preset leaves empty stay empty (MLIM has no unimodal towers: its single
  stream of ``num_layers`` layers is the whole model, like ViLT); the MaskVLM pixel decoder keeps the
  preset's 3 blocks. ``maskvlm-1pass`` is the maskvlm preset with ``masked_modeling_passes="joint"``;
  ``maskvlm-textpool`` is the maskvlm preset with ``pooling="text"`` (ALBEF-style ITM from the text stream).
  Less work per step (issue 16): ``maskvlm-visible`` -- ``mim_encoder="visible"`` (MAE: the MIM pass encodes only
  the unmasked patches); ``maskvlm-drop50`` -- ``patch_drop_ratio=0.5`` (FLIP: half the patches of the ITC/ITM
  pass dropped); ``maskvlm-fast`` -- both; ``maskvlm-textpool-fast`` -- both with ``pooling="text"``;
  ``maskvlm-dyntext`` -- the preset with text padded to each batch's
  longest caption instead of ``text_length``. ``maskvlm-itcitm`` / ``maskvlm-drop50-itcitm`` -- the ITC/ITM pass
  alone (no MLM / MIM targets in the batch), without and with patch dropping.
* ``flava`` -- transformers' ``FlavaForPreTraining`` (text, image and multimodal encoders of ``num_layers``
  each; image vocabulary 8192 as in FLAVA). Its MIM targets are codebook tokens: we pass random token ids
  instead of running the DALL-E codebook, so FLAVA's step is timed *without* its codebook (in its favour).
* ``vilt`` -- transformers' ``ViltForMaskedLM`` (a single stream of ``num_layers`` layers, MLM only).

Batches come from the real data path: embedded synthetic scenes (``make_synthetic_dataset``) tagged by
``CaptionTagger`` and collated by ``MaskVLDataCollator`` with the masking that ``train_scripts/pretrain.py``
uses by default for the preset (``MaskingArguments().collator_kwargs(config)``). The baselines get the
masking of their papers from the same collator (ViLT: random 15% text; FLAVA: random 15% text, 40%
BEiT-style image blocks, half the pairs ITM negatives). Batches are made once, before timing.

Every step is ``loss.backward()`` + fused AdamW (the ``Trainer`` default on torch >= 2.8) + ``zero_grad``, in fp32
on the CPU (bf16 autocast on a GPU).
"""

from dataclasses import asdict, dataclass

import torch
from transformers import FlavaConfig, FlavaForPreTraining, ViltConfig, ViltForMaskedLM

from maskvl_processing import (
    CaptionTagger,
    MaskVLDataCollator,
    MaskVLImageProcessor,
    train_wordpiece_tokenizer,
)
from maskvl_processing.masking_primitives import IGNORE_INDEX
from maskvl_processing.synthetic_scenes import make_synthetic_dataset
from maskvl_train.arguments import MaskingArguments  # the pre-training script's masking defaults

from modeling_maskvl import MaskVLConfig, MaskVLForPreTraining

MASKVL_MODELS = ("maskvlm", "maskvlm-1pass", "maskvlm-textpool", "maskvlm-visible", "maskvlm-drop50", "maskvlm-fast",
                 "maskvlm-textpool-fast", "maskvlm-dyntext", "maskvlm-itcitm", "maskvlm-drop50-itcitm", "mlim",
                 "lxmert")
BASELINES = ("flava", "vilt")
ALL_MODELS = MASKVL_MODELS + BASELINES
# config overrides of the maskvlm variants (on top of the preset at the bench size)
MASKVLM_VARIANTS = {
    "maskvlm-1pass": {"masked_modeling_passes": "joint"},
    "maskvlm-textpool": {"pooling": "text"},
    "maskvlm-visible": {"mim_encoder": "visible"},
    "maskvlm-drop50": {"patch_drop_ratio": 0.5},
    "maskvlm-fast": {"mim_encoder": "visible", "patch_drop_ratio": 0.5},
    "maskvlm-textpool-fast": {"pooling": "text", "mim_encoder": "visible", "patch_drop_ratio": 0.5},
    "maskvlm-drop50-itcitm": {"patch_drop_ratio": 0.5},
}
ITC_ITM_ONLY = ("maskvlm-itcitm", "maskvlm-drop50-itcitm")  # batches without MLM / MIM targets
# what `bench/train_step.py` compares by default: the issue-11 set and the fast paths at their defaults
DEFAULT_MODELS = ("maskvlm", "maskvlm-1pass", "maskvlm-textpool", "maskvlm-visible", "maskvlm-drop50", "maskvlm-fast",
                  "maskvlm-textpool-fast", "mlim", "lxmert", "flava", "vilt")
FLAVA_IMAGE_VOCAB = 8192  # DALL-E codebook size used by FLAVA's masked-image targets


def check_models(models: list[str], *more: list[str]) -> None:
    """ValueError for an empty ``models`` list or a name (there or in ``more``) that is not in ``ALL_MODELS``."""
    unknown = [m for m in [*models, *(m for names in more for m in names)] if m not in ALL_MODELS]
    if unknown:
        raise ValueError(f"unknown models {unknown}; choose from {list(ALL_MODELS)}")
    if not models:
        raise ValueError("--models is empty")


@dataclass
class BenchSize:
    """The shared size of every model in a comparison (defaults: the issue's reference point)."""

    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    image_size: int = 64
    patch_size: int = 8
    text_length: int = 24
    batch_size: int = 32
    vocab_size: int = 1000

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"BenchSize.{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"BenchSize.hidden_size ({self.hidden_size}) is not divisible by num_heads "
                             f"({self.num_heads})")
        if self.image_size % self.patch_size:
            raise ValueError(f"BenchSize.image_size ({self.image_size}) is not divisible by patch_size "
                             f"({self.patch_size})")
        if self.text_length < 3:
            raise ValueError(f"BenchSize.text_length must be at least 3 ([CLS] word [SEP]), got {self.text_length}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def describe(self) -> str:
        return (f"width {self.hidden_size}, {self.num_layers} layers, {self.num_heads} heads, "
                f"{self.image_size}x{self.image_size} images with {self.patch_size}x{self.patch_size} patches "
                f"({self.num_patches} patches), {self.text_length} text tokens, batch {self.batch_size}, "
                f"vocab {self.vocab_size}")


# ------------------------------------------------------------------------------------------------- models
def _encoder(size: BenchSize, layers: int) -> dict:
    return {"hidden_size": size.hidden_size, "num_hidden_layers": layers, "num_attention_heads": size.num_heads,
            "intermediate_size": 4 * size.hidden_size}


def maskvl_config(name: str, size: BenchSize) -> MaskVLConfig:
    """``MaskVLConfig.from_preset`` at the bench size (``name`` in :data:`MASKVL_MODELS`)."""
    if name not in MASKVL_MODELS:
        raise ValueError(f"unknown MaskVL bench model {name!r}; choose from {list(MASKVL_MODELS)}")
    preset = "maskvlm" if name.startswith("maskvlm") else name
    base = MaskVLConfig.from_preset(preset)
    text_layers = size.num_layers if base.text_config.num_hidden_layers else 0
    vision_layers = size.num_layers if base.vision_config.num_hidden_layers else 0
    overrides = MASKVLM_VARIANTS.get(name, {})
    return MaskVLConfig.from_preset(
        preset,
        text_config={**_encoder(size, text_layers), "vocab_size": size.vocab_size,
                     "max_position_embeddings": max(64, size.text_length)},
        vision_config={**_encoder(size, vision_layers), "image_size": size.image_size, "patch_size": size.patch_size},
        cross_modal_config=_encoder(size, size.num_layers),
        **overrides,
    )


def flava_config(size: BenchSize) -> FlavaConfig:
    encoder = _encoder(size, size.num_layers)
    return FlavaConfig(
        text_config={**encoder, "vocab_size": size.vocab_size, "max_position_embeddings": max(64, size.text_length)},
        image_config={**encoder, "image_size": size.image_size, "patch_size": size.patch_size,
                      "vocab_size": FLAVA_IMAGE_VOCAB},
        multimodal_config=encoder,
        hidden_size=size.hidden_size,
        projection_dim=size.hidden_size,
        init_codebook=False,  # MIM targets are passed in (see the module docstring)
    )


def vilt_config(size: BenchSize) -> ViltConfig:
    return ViltConfig(**_encoder(size, size.num_layers), vocab_size=size.vocab_size,
                      max_position_embeddings=size.text_length, image_size=size.image_size,
                      patch_size=size.patch_size)


def build_model(name: str, size: BenchSize, seed: int = 0) -> torch.nn.Module:
    """A freshly initialised model of the comparison, in training mode."""
    torch.manual_seed(seed)
    if name in MASKVL_MODELS:
        model = MaskVLForPreTraining(maskvl_config(name, size))
    elif name == "flava":
        model = FlavaForPreTraining(flava_config(size))
    elif name == "vilt":
        model = ViltForMaskedLM(vilt_config(size))
    else:
        raise ValueError(f"unknown bench model {name!r}; choose from {list(ALL_MODELS)}")
    return model.train()


def num_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------------ batches
@dataclass
class BenchData:
    """Tokenizer, image processor and tagged features shared by every model of a comparison."""

    tokenizer: object
    image_processor: MaskVLImageProcessor
    features: list


def caption_data(size: BenchSize, num_examples: int, seed: int = 0) -> BenchData:
    """Synthetic scenes at the bench image size, tagged to at most ``text_length`` tokens."""
    dataset = make_synthetic_dataset(num_examples, seed=seed, image_size=size.image_size)
    tokenizer = train_wordpiece_tokenizer(dataset["caption"], vocab_size=size.vocab_size)
    if len(tokenizer) > size.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens, more than BenchSize.vocab_size={size.vocab_size}")
    tagger = CaptionTagger(tokenizer, max_length=size.text_length)
    tagged = dataset.map(tagger, batched=True, with_indices=True, desc="tagging captions")
    keep = ("image", "input_ids", "word_ids", "token_word_class", "token_concreteness")
    features = [{key: row[key] for key in keep} for row in tagged]
    processor = MaskVLImageProcessor(size={"height": size.image_size, "width": size.image_size},
                                     patch_size=size.patch_size)
    return BenchData(tokenizer, processor, features)


def random_token_data(size: BenchSize, num_examples: int, seed: int = 0, base: BenchData | None = None) -> BenchData:
    """Full-length texts of ``text_length`` random tokens and random pixels (for the scaling curves, where
    the text must really be ``text_length`` tokens long). Reuses ``base``'s tokenizer when given."""
    generator = torch.Generator().manual_seed(seed)
    tokenizer = base.tokenizer if base is not None else caption_data(BenchSize(), 64, seed).tokenizer
    first = len(tokenizer.all_special_ids)  # special tokens come first in a trained WordPiece vocabulary
    body = torch.randint(first, len(tokenizer), (num_examples, size.text_length - 2), generator=generator)
    features = []
    for row in body:
        ids = [tokenizer.cls_token_id, *row.tolist(), tokenizer.sep_token_id]
        pixels = torch.randn(3, size.image_size, size.image_size, generator=generator)
        features.append({"input_ids": ids, "pixel_values": pixels.numpy()})
    processor = MaskVLImageProcessor(size={"height": size.image_size, "width": size.image_size},
                                     patch_size=size.patch_size)
    return BenchData(tokenizer, processor, features)


def collator_kwargs(name: str, config=None) -> dict:
    """Masking of each bench model: the pre-training script's defaults for MaskVL presets, the papers' for
    the baselines."""
    if name == "maskvlm-1pass":  # one modality per pair, so the joint pass sees exactly MaskVLM's inputs
        return MaskingArguments(joint_masking="maskvlm").collator_kwargs(config)
    if name in MASKVL_MODELS:
        return MaskingArguments().collator_kwargs(config)
    if name == "flava":
        return {"text_policy": "random", "image_policy": "block",
                "image_policy_kwargs": {"ratio": 0.4, "block_pixels": None}, "joint_policy": "independent",
                "itm_negatives": 0.5, "mlm_on_negatives": True}
    if name == "vilt":
        return {"text_policy": "random", "image_policy": "none", "joint_policy": "independent"}
    raise ValueError(f"unknown bench model {name!r}; choose from {list(ALL_MODELS)}")


def to_model_inputs(name: str, batch: dict, size: BenchSize, generator: torch.Generator) -> dict:
    """Collator output -> the forward arguments of bench model ``name``."""
    if name in ITC_ITM_ONLY:  # the unmasked pair only: ITC + ITM (no masked text, no masked patches)
        batch = dict(batch, labels=torch.full_like(batch["labels"], -100),
                     bool_masked_pos=torch.zeros_like(batch["bool_masked_pos"]),
                     input_ids=torch.where(batch["labels"] != -100, batch["labels"], batch["input_ids"]))
    if name in MASKVL_MODELS:
        return batch
    if name == "vilt":
        pixel_mask = torch.ones(batch["pixel_values"].shape[0], size.image_size, size.image_size, dtype=torch.long)
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                "pixel_values": batch["pixel_values"], "pixel_mask": pixel_mask, "labels": batch["labels"]}
    if name == "flava":
        labels = batch["labels"]
        clean_ids = torch.where(labels != IGNORE_INDEX, labels, batch["input_ids"])
        mim_labels = torch.randint(FLAVA_IMAGE_VOCAB, batch["bool_masked_pos"].shape, generator=generator)
        return {"input_ids": clean_ids, "input_ids_masked": batch["input_ids"],
                "attention_mask": batch["attention_mask"], "pixel_values": batch["pixel_values"],
                "bool_masked_pos": batch["bool_masked_pos"], "mlm_labels": labels, "mim_labels": mim_labels,
                "itm_labels": batch["itm_labels"], "return_loss": True}
    raise ValueError(f"unknown bench model {name!r}; choose from {list(ALL_MODELS)}")


def make_batches(name: str, model: torch.nn.Module, data: BenchData, size: BenchSize, num_batches: int,
                 seed: int = 0) -> list[dict]:
    """``num_batches`` distinct batches of forward arguments for ``name`` (fresh masks in each)."""
    if len(data.features) < size.batch_size:
        raise ValueError(f"{len(data.features)} examples are fewer than one batch of {size.batch_size}")
    config = model.config if name in MASKVL_MODELS else None
    pad = None if name == "maskvlm-dyntext" else size.text_length  # dyntext: each batch's longest caption
    collator = MaskVLDataCollator(data.tokenizer, data.image_processor, seed=seed, max_length=size.text_length,
                                  pad_to_multiple_of=pad, **collator_kwargs(name, config))
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for index in range(num_batches):
        start = (index * size.batch_size) % (len(data.features) - size.batch_size + 1)
        batch = collator(data.features[start:start + size.batch_size])
        batches.append(to_model_inputs(name, batch, size, generator))
    return batches


# ------------------------------------------------------------------------------------------ training step
def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """Fused AdamW (the Trainer's default optimizer on torch >= 2.8)."""
    return torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=True)


class TrainStep:
    """One model with its optimizer and batches; calling it runs one forward + backward + optimizer step
    on the next batch (cycling)."""

    def __init__(self, name: str, model: torch.nn.Module, batches: list[dict], device: str = "cpu"):
        if not batches:
            raise ValueError(f"{name}: no batches to train on")
        self.name = name
        self.device = device
        self.model = model.to(device)
        self.batches = [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()} for b in batches]
        self.optimizer = make_optimizer(self.model)
        # bf16 autocast on a GPU (its tensor cores), plain fp32 on the CPU
        self.autocast_dtype = torch.bfloat16 if device == "cuda" else None
        self._next = 0

    @property
    def batch_size(self) -> int:
        return int(self.batches[0]["input_ids"].shape[0])

    def next_batch(self) -> dict:
        batch = self.batches[self._next % len(self.batches)]
        self._next += 1
        return batch

    def forward_backward(self, batch: dict) -> torch.Tensor:
        with torch.autocast(self.device, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            loss = self.model(**batch).loss
        if loss is None or not torch.isfinite(loss):
            raise RuntimeError(f"{self.name}: the training step produced loss {loss}")
        loss.backward()
        return loss

    def __call__(self) -> None:
        self.forward_backward(self.next_batch())
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def build_step(name: str, size: BenchSize, data: BenchData, num_batches: int = 4, seed: int = 0,
               device: str = "cpu") -> TrainStep:
    model = build_model(name, size, seed)
    return TrainStep(name, model, make_batches(name, model, data, size, num_batches, seed), device)


def preset_step(preset: str, data: BenchData, batch_size: int, image_size: int, num_batches: int = 4,
                seed: int = 0, device: str = "cpu") -> TrainStep:
    """A training step of a named preset (e.g. "maskvlm-tiny") at ``image_size``, with the pre-training
    script's default masking for it: the "tiny training step" of the collator benchmark."""
    torch.manual_seed(seed)
    model = MaskVLForPreTraining(MaskVLConfig.from_preset(preset, vision_config={"image_size": image_size})).train()
    collator = MaskVLDataCollator(data.tokenizer, data.image_processor, seed=seed,
                                  **MaskingArguments().collator_kwargs(model.config))
    batches = [collator(data.features[i * batch_size:(i + 1) * batch_size]) for i in range(num_batches)]
    return TrainStep(preset, model, batches, device)
