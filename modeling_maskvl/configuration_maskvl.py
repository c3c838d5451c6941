"""Configuration of the MaskVL model family.

One composite config, three towers:

* ``text_config``   -- any BERT-family encoder config (built with ``AutoModel.from_config``),
* ``vision_config`` -- a ViT-family config; ``patch_embedder`` ("linear" | "conv") selects ViT's
  linear patch projection or MLIM's shallow conv stack (kernel == stride),
* ``cross_modal_config`` -- :class:`MaskVLCrossModalConfig`, the cross-modal module we write ourselves
  (``fusion_type`` = "cross" (MaskVLM), "co_attention" (LXMERT) or "single_stream" (MLIM)).

Head switches and loss weights live at the top level. Masking settings do not: masking is the
data collator's job, the model only receives ``bool_masked_pos`` and ``labels``.

Named presets reproduce the three papers' set-ups (see ``PRESETS`` and ``MaskVLConfig.from_preset``).
"""

import copy

from transformers import AutoConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec

FUSION_TYPES = ("cross", "co_attention", "single_stream")
PATCH_EMBEDDERS = ("linear", "conv", "conv_stem")
CONV_STEM_NORMS = ("layer", "batch")
# MaskVL's own fields on the ViT vision config, and their defaults (set on every config, so they are saved)
VISION_EXTRA_DEFAULTS = {"patch_embedder": "linear", "conv_stem_channels": None, "conv_stem_norm": "layer"}


def conv_stem_stages(patch_size: int) -> int:
    """Stride-2 stages of the early-convolution stem for a power-of-two patch size (P = 2 ** stages)."""
    return max(1, patch_size.bit_length() - 1)


MIM_LOSSES = ("l1", "l2")
MASKED_MODELING_PASSES = ("separate", "joint")
ITC_FEATURE_NORMS = ("batch", "none")
ITC_POOLINGS = ("cls", "mean")
POOLINGS = ("pair", "text")
MIM_ENCODERS = ("mask_token", "visible")


class MaskVLCrossModalConfig(PretrainedConfig):
    r"""Cross-modal fusion module.

    Args:
        fusion_type (`str`): "cross" -- a text cross-modality encoder (text queries attend to image) and an
            image cross-modality encoder (image queries attend to text), as in MaskVLM / ALBEF;
            "co_attention" -- both streams updated together, each attending to the other's current layer,
            as in LXMERT; "single_stream" -- one transformer over [text tokens; image patches], as in MLIM.
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, hidden_act,
        hidden_dropout_prob, attention_probs_dropout_prob, layer_norm_eps, initializer_range:
            usual transformer sizes. ``num_hidden_layers`` counts the layers of *each* stream.
        num_decoder_layers (`int`): cross-attention blocks of the masked-image decoder (MaskVLM uses 3);
            0 means a linear pixel head on the fused image states (MLIM).
    """

    model_type = "maskvl_cross_modal"
    base_config_key = "cross_modal_config"

    fusion_type: str = "cross"
    hidden_size: int = 768
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    layer_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    num_decoder_layers: int = 3


class MaskVLConfig(PretrainedConfig):
    r"""Configuration of every MaskVL model.

    Args:
        text_config (`dict` or `PretrainedConfig`): BERT-family text tower (default: BERT-base).
        vision_config (`dict` or `PretrainedConfig`): ViT-family vision tower (default: ViT-B/16). An extra
            field ``patch_embedder`` picks the patch embedder: "linear" (ViT), "conv" (MLIM: convolutions whose
            kernel equals their stride) or "conv_stem" (early convolutions: overlapping 3x3 stride-2 convolutions,
            Xiao et al. 2021; lets small towers trained from scratch tell shapes apart), whose stage widths and
            normalisation come from ``conv_stem_channels`` (None = the default rule) and ``conv_stem_norm``
            ("layer" | "batch").
        cross_modal_config (`dict` or `MaskVLCrossModalConfig`): cross-modal module.
        use_mlm_head, use_mim_head, use_itc_head, use_itm_head (`bool`): which pre-training heads exist.
        mlm_weight, mim_weight, itc_weight, itm_weight (`float`): loss weights; the total loss is the
            weighted sum of the parts present in a batch.
        masked_modeling_passes (`str`): "separate" -- MLM sees the masked text with the *unmasked* image and
            MIM the masked image with the *unmasked* text (MaskVLM, faithful to the paper: up to two extra
            encoder passes per step); "joint" -- one pass over both masked inputs (MLIM, LXMERT).
        mim_loss (`str`): "l1" (MaskVLM) or "l2" (MLIM) pixel reconstruction loss.
        norm_pix_loss (`bool`): normalise each target patch by its own mean / std (MAE).
        projection_dim (`int`): ITC embedding size. logit_scale_init_value (`float`): initial log inverse
            temperature of ITC (log(1/0.07) as in CLIP).
        itc_feature_norm (`str`): "none" (default) -- the plain linear projection of ALBEF / MaskVLM, right for
            pretrained towers; "batch" -- batch-centre and scale the projected features before L2 normalisation
            (`BatchNorm1d` without affine, running statistics in eval mode, as in the BN projection heads of
            SimCLR / MoCo v3). Towers trained from scratch give nearly the same CLS state for every input
            (cosine 0.998-1.0 at init on the embedded data); with "none" ITC then collapses onto that shared
            state and stays at ln(batch), with "batch" it learns. Measured on the then-default pre-training run
            at 2,000 steps (docs/pretraining.md): retrieval R@10 0.11 vs 0.04 (chance 0.02), but held-out MLM
            accuracy 0.49 vs 0.67 -- the tiny towers trade MLM for ITC.
        itc_pooling (`str`): which unimodal states the ITC projections read. "cls" (default, ALBEF / MaskVLM /
            CLIP) -- the [CLS] state of each tower; "mean" -- the mean of the text tower's non-padding token states
            and of the vision tower's patch states (the average pooling of open_clip's and sentence-transformers'
            encoders). From scratch the tiny towers' [CLS] states of different captions and images are nearly equal,
            while the mean states carry the words' and patches' own features from the first step. The "-small"
            presets (the CPU default run's model) use "mean".
        pooling (`str`): the pooled pair representation that feeds ITM and VQA. "pair" (default) --
            [fused text CLS; fused image CLS], both cross-modality streams; "text" -- the fused text CLS alone
            (ALBEF: the text stream has cross-attended to the image). With "text" the separate-pass ITM skips
            the image cross-modality stream (about a third of a `maskvlm` step's FLOPs, see bench/README.md).
        mim_encoder (`str`): how the masked-image pass encodes the image. "mask_token" (default, MaskVLM / BEiT /
            SimMIM) -- the vision tower sees every patch, masked ones replaced by its mask token; "visible" (MAE /
            M3AE) -- the vision tower and the image cross-modality encoder see only the unmasked patches (with their
            position embeddings) and [CLS]; the pixel decoder gets a learned mask token, plus learned decoder
            position embeddings, at every masked patch. With MaskVLM's 60% masking this skips about 60% of that
            pass's encoder work. Needs ``masked_modeling_passes="separate"``, ``fusion_type="cross"`` and a pixel
            decoder with at least one block (``num_decoder_layers >= 1``).
        patch_drop_ratio (`float`): FLIP-style patch dropping in training: this share of the patches of the
            *unmasked* image is left out of the pass that serves ITC and ITM (the MLM pass still sees the whole
            image). The data collator gives the randomness (``MaskVLDataCollator(patch_drop_noise=True)`` ->
            ``patch_drop_noise``); evaluation and inference never drop (``model.eval()``). 0.0 (default) = off.
            Needs ``masked_modeling_passes="separate"``.
        preset (`str`, optional): name of the preset the config was built from (for the record).
    """

    model_type = "maskvl"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert"),
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="vit"),
        "cross_modal_config": SubConfigSpec(config_class=MaskVLCrossModalConfig),
    }

    text_config: dict | PretrainedConfig | None = None
    vision_config: dict | PretrainedConfig | None = None
    cross_modal_config: dict | PretrainedConfig | None = None
    use_mlm_head: bool = True
    use_mim_head: bool = True
    use_itc_head: bool = True
    use_itm_head: bool = True
    mlm_weight: float = 1.0
    mim_weight: float = 1.0
    itc_weight: float = 1.0
    itm_weight: float = 1.0
    masked_modeling_passes: str = "separate"
    mim_loss: str = "l1"
    norm_pix_loss: bool = False
    projection_dim: int = 256
    logit_scale_init_value: float = 2.6592
    itc_feature_norm: str = "none"
    itc_pooling: str = "cls"
    pooling: str = "pair"
    mim_encoder: str = "mask_token"
    patch_drop_ratio: float = 0.0
    initializer_range: float = 0.02
    preset: str | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        for name, default in VISION_EXTRA_DEFAULTS.items():
            if getattr(self.vision_config, name, None) is None:
                setattr(self.vision_config, name, default)
        self._validate()

    def _validate(self):
        def check_choice(name, value, choices):
            if value not in choices:
                raise ValueError(f"MaskVLConfig.{name}={value!r} is not one of {list(choices)}.")

        check_choice("cross_modal_config.fusion_type", self.cross_modal_config.fusion_type, FUSION_TYPES)
        check_choice("vision_config.patch_embedder", self.vision_config.patch_embedder, PATCH_EMBEDDERS)
        check_choice("vision_config.conv_stem_norm", self.vision_config.conv_stem_norm,
                     CONV_STEM_NORMS)
        check_choice("mim_loss", self.mim_loss, MIM_LOSSES)
        check_choice("masked_modeling_passes", self.masked_modeling_passes, MASKED_MODELING_PASSES)
        check_choice("itc_feature_norm", self.itc_feature_norm, ITC_FEATURE_NORMS)
        check_choice("itc_pooling", self.itc_pooling, ITC_POOLINGS)
        check_choice("pooling", self.pooling, POOLINGS)
        check_choice("mim_encoder", self.mim_encoder, MIM_ENCODERS)
        if self.mim_encoder == "visible":
            needs = {"masked_modeling_passes": (self.masked_modeling_passes, "separate"),
                     "cross_modal_config.fusion_type": (self.cross_modal_config.fusion_type, "cross")}
            for name, (value, wanted) in needs.items():
                if value != wanted:
                    raise ValueError(f"MaskVLConfig.mim_encoder='visible' needs {name}={wanted!r}; got {value!r}.")
            if self.cross_modal_config.num_decoder_layers < 1:
                raise ValueError("MaskVLConfig.mim_encoder='visible' needs a pixel decoder that attends across patches "
                                 "(cross_modal_config.num_decoder_layers >= 1); got 0.")
        if not isinstance(self.patch_drop_ratio, (int, float)) or not 0.0 <= self.patch_drop_ratio < 1.0:
            raise ValueError(f"MaskVLConfig.patch_drop_ratio must be in [0, 1); got {self.patch_drop_ratio!r}.")
        if self.patch_drop_ratio > 0 and self.masked_modeling_passes != "separate":
            raise ValueError("MaskVLConfig.patch_drop_ratio > 0 needs masked_modeling_passes='separate' (the ITC/ITM "
                             f"pass on the unmasked image); got {self.masked_modeling_passes!r}.")
        for name, sub in (("text_config", self.text_config), ("vision_config", self.vision_config),
                          ("cross_modal_config", self.cross_modal_config)):
            if sub.hidden_size % sub.num_attention_heads != 0:
                raise ValueError(
                    f"MaskVLConfig.{name}.hidden_size ({sub.hidden_size}) is not divisible by "
                    f"{name}.num_attention_heads ({sub.num_attention_heads})."
                )
        image_size, patch_size = self.vision_config.image_size, self.vision_config.patch_size
        if not isinstance(image_size, int) or not isinstance(patch_size, int):
            raise ValueError("MaskVLConfig.vision_config.image_size and .patch_size must be single integers "
                             f"(square images and patches); got {image_size!r} and {patch_size!r}.")
        if image_size % patch_size != 0:
            raise ValueError(
                f"MaskVLConfig.vision_config.image_size ({image_size}) is not divisible by "
                f"vision_config.patch_size ({patch_size})."
            )
        if self.vision_config.patch_embedder != "linear" and patch_size & (patch_size - 1):
            raise ValueError(f"MaskVLConfig.vision_config.patch_size ({patch_size}) must be a power of two with "
                             f"patch_embedder={self.vision_config.patch_embedder!r} (a stack of stride-2 "
                             "convolutions).")
        channels = self.vision_config.conv_stem_channels
        if channels is not None:
            stages = conv_stem_stages(self.vision_config.patch_size)
            if (not isinstance(channels, (list, tuple)) or len(channels) != stages
                    or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels)):
                raise ValueError(f"MaskVLConfig.vision_config.conv_stem_channels must be {stages} positive integers "
                                 f"(one per stride-2 stage of patch_size {self.vision_config.patch_size}); "
                                 f"got {channels!r}.")

    @property
    def num_patches(self) -> int:
        return (self.vision_config.image_size // self.vision_config.patch_size) ** 2

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "MaskVLConfig":
        """Build the config of a named preset (see ``PRESETS``).

        ``overrides`` replace top-level fields; ``text_config`` / ``vision_config`` / ``cross_modal_config``
        overrides may be dicts that update the preset's sub-config, e.g.
        ``MaskVLConfig.from_preset("maskvlm-tiny", vision_config={"image_size": 32})``.
        """
        if name not in PRESETS:
            raise ValueError(f"Unknown MaskVL preset {name!r}. Valid presets: {', '.join(sorted(PRESETS))}.")
        kwargs = copy.deepcopy(PRESETS[name])
        for key, value in overrides.items():
            if key in ("text_config", "vision_config", "cross_modal_config") and isinstance(value, dict):
                kwargs[key].update(value)
            else:
                kwargs[key] = value
        kwargs.setdefault("preset", name)
        return cls(**kwargs)


def _text(hidden, layers, heads, vocab_size=30522, max_positions=512):
    return {"model_type": "bert", "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "intermediate_size": 4 * hidden, "vocab_size": vocab_size,
            "max_position_embeddings": max_positions, "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1}


def _vision(hidden, layers, heads, image_size, patch_size, patch_embedder="linear"):
    return {"model_type": "vit", "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "intermediate_size": 4 * hidden, "image_size": image_size,
            "patch_size": patch_size, "patch_embedder": patch_embedder, "qkv_bias": True}


def _cross_modal(fusion_type, hidden, layers, heads, decoder_layers):
    return {"fusion_type": fusion_type, "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "intermediate_size": 4 * hidden, "num_decoder_layers": decoder_layers}


_MASKVLM_HEADS = dict(use_mlm_head=True, use_mim_head=True, use_itc_head=True, use_itm_head=True,
                      masked_modeling_passes="separate", mim_loss="l1")
_MLIM_HEADS = dict(use_mlm_head=True, use_mim_head=True, use_itc_head=False, use_itm_head=False,
                   masked_modeling_passes="joint", mim_loss="l2")
_LXMERT_HEADS = dict(use_mlm_head=True, use_mim_head=False, use_itc_head=False, use_itm_head=True,
                     masked_modeling_passes="joint")

# Named presets. Base sizes follow the papers; "-tiny" sizes are for tests and CPU runs.
#   maskvlm: ViT-B/16 (224 px) + 12-layer BERT-base text encoder; 6-layer text and image cross-modality
#            encoders (depth taken from ALBEF, which MaskVLM builds on); 3-block pixel decoder;
#            MLM + MIM (L1 on raw pixels) + ITC + ITM, separate passes.
#   mlim:    single stream of 12 layers (BERT-base width) over [text; conv patch embeddings] (224 px,
#            16 px patches from a 3-stage conv stack with kernel == stride); MLM + pixel MSE.
#   lxmert:  9 language layers, 5 vision layers (ViT patches replace LXMERT's detector regions),
#            5 co-attention cross-modality layers; MLM + ITM.
PRESETS = {
    "maskvlm": dict(text_config=_text(768, 12, 12), vision_config=_vision(768, 12, 12, 224, 16),
                    cross_modal_config=_cross_modal("cross", 768, 6, 12, 3), projection_dim=256, **_MASKVLM_HEADS),
    "mlim": dict(text_config=_text(768, 0, 12), vision_config=_vision(768, 0, 12, 224, 16, "conv"),
                 cross_modal_config=_cross_modal("single_stream", 768, 12, 12, 0), **_MLIM_HEADS),
    "lxmert": dict(text_config=_text(768, 9, 12), vision_config=_vision(768, 5, 12, 224, 16),
                   cross_modal_config=_cross_modal("co_attention", 768, 5, 12, 0), **_LXMERT_HEADS),
    "maskvlm-tiny": dict(text_config=_text(64, 2, 2, 1024, 64), vision_config=_vision(64, 2, 2, 64, 8),
                         cross_modal_config=_cross_modal("cross", 64, 2, 2, 1), projection_dim=32, **_MASKVLM_HEADS),
    "mlim-tiny": dict(text_config=_text(64, 0, 2, 1024, 64), vision_config=_vision(64, 0, 2, 64, 8, "conv"),
                      cross_modal_config=_cross_modal("single_stream", 64, 4, 2, 0), **_MLIM_HEADS),
    "lxmert-tiny": dict(text_config=_text(64, 2, 2, 1024, 64), vision_config=_vision(64, 2, 2, 64, 8),
                        cross_modal_config=_cross_modal("co_attention", 64, 2, 2, 0), **_LXMERT_HEADS),
}


def _small(preset: dict, text_layers: int, vision_layers: int, fusion_layers: int, decoder_layers: int,
           width: int = 64) -> dict:
    """A "-small" preset: the CPU default run's model. The tiny width (64, 2 heads), but 64-px images in 16-px
    patches from the early-convolution stem (stages of 32, 32, 64, 64 channels with BatchNorm, as in Xiao et al.),
    every weight initialised with std 1/sqrt(width) (0.125), and ITC on the mean of each tower's states
    (``itc_pooling="mean"``).

    Why that stem: trained alone with direct supervision (which of the 10 shapes a scene holds), the vision tower
    with the narrow LayerNorm stem (16, 16, 16, 32) gets no scene's shape set exactly right after 600 steps; this one
    gets 87% right after 2,000 steps, the same widths with LayerNorm 65% (`bench/diagnostics/shape_probe.py`,
    docs/pretraining.md).

    Why not BERT's 0.02: that std is tuned for width 768; at width 64 every linear layer then shrinks its input
    about 6x, the cross-attention path (value, output) about 40x, and the image tower's gradient is 100x smaller
    than the text tower's at initialisation (measured: 0.03 vs 3.9), so the model learns the text-only solution
    and ignores the image. 1/sqrt(width) (LeCun's fan-in scale) keeps the signal's size through a layer.
    Width 128 was measured too: per step it learned no faster and each step costs 2x (docs/pretraining.md).

    Why mean-pooled ITC: from scratch the tiny towers' [CLS] states of different inputs are nearly equal, and an ITC
    on [CLS] suppressed colour in every run measured (colour words at chance with the image); on the mean states the
    same runs read colour and, with enough images, shapes (docs/pretraining.md, items 8 to 12)."""
    std = width ** -0.5
    heads = max(2, width // 32)
    out = copy.deepcopy(preset)
    out["text_config"] = {**_text(width, text_layers, heads, 1024, 64), "initializer_range": std}
    out["vision_config"] = {**_vision(width, vision_layers, heads, 64, 16, "conv_stem"), "initializer_range": std,
                            "conv_stem_channels": [width // 2, width // 2, width, width], "conv_stem_norm": "batch"}
    fusion = out["cross_modal_config"]["fusion_type"]
    out["cross_modal_config"] = {**_cross_modal(fusion, width, fusion_layers, heads, decoder_layers),
                                 "initializer_range": std}
    out["initializer_range"] = std
    out["itc_pooling"] = "mean"
    return out


PRESETS.update({
    "maskvlm-small": _small(PRESETS["maskvlm-tiny"], 2, 2, 2, 1),
    "mlim-small": _small(PRESETS["mlim-tiny"], 0, 0, 4, 0),
    "lxmert-small": _small(PRESETS["lxmert-tiny"], 2, 2, 2, 0),
})
