"""MaskVL models: masked vision-and-language pre-training in one configurable family.

Three tiers, as in transformers:

* :class:`MaskVLPreTrainedModel` -- metadata, weight init, saving with a complete ``auto_map``.
* :class:`MaskVLModel` -- text tower (BERT family), vision tower (ViT family), fusion; no loss.
* ``MaskVLFor<Task>`` -- one head each: :class:`MaskVLForPreTraining` (MLM + MIM + ITC + ITM),
  :class:`MaskVLForMaskedLM`, :class:`MaskVLForQuestionAnswering`, :class:`MaskVLForImageTextRetrieval`.

Conventions: ``bool_masked_pos`` (B, N) is True for a masked patch (N = number of patches, row-major);
``labels`` are MLM labels with -100 for unscored tokens; ``itm_labels`` is 1 for a true pair and 0 for a
pair whose image was swapped. No randomness is drawn inside ``forward``: masks arrive as tensors.
"""

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPooling
from transformers.utils import ModelOutput, can_return_tuple

from .configuration_maskvl import MaskVLConfig
from .fusion import MaskVLFusion, MaskVLFusionOutput, additive_key_mask
from .heads import (MaskVLAnswerHead, MaskVLFeatureNorm, MaskVLITMHead, MaskVLMLMHead, MaskVLPixelDecoder,
                    MaskVLPooler)
from .losses import (IGNORE_INDEX, contrastive_loss, itm_loss, masked_image_loss, masked_lm_loss, mlm_accuracy,
                     vqa_loss, weighted_total)
from .patch_embedding import ConvPatchEmbeddings, ConvStemPatchEmbeddings
from .visible_patches import MaskTokenScatter, num_kept_patches, patch_keep_indices, visible_indices, vit_encode_subset

# Every auto class a saved MaskVL folder answers to (written into config.json's auto_map on save).
AUTO_MAP = {
    "AutoConfig": "configuration_maskvl.MaskVLConfig",
    "AutoModel": "modeling_maskvl.MaskVLModel",
    "AutoModelForPreTraining": "modeling_maskvl.MaskVLForPreTraining",
    "AutoModelForMaskedLM": "modeling_maskvl.MaskVLForMaskedLM",
    "AutoModelForVisualQuestionAnswering": "modeling_maskvl.MaskVLForQuestionAnswering",
}


# ----------------------------------------------------------------------------------------------- outputs
# Per-layer fields shared by every output (None unless `output_hidden_states` / `output_attentions`, or the
# config defaults of those names, ask for them). Each tuple holds, per layer, one tensor:
#   text_hidden_states (B, T, D_text) and vision_hidden_states (B, 1 + N, D_vision): the unimodal towers,
#       embeddings first (L + 1 entries);
#   fused_text_hidden_states (B, T, D) and fused_image_hidden_states (B, 1 + N, D): each fusion stream, its
#       input first, the last entry after the final norm (L + 1 entries; single-stream fusion: the text and
#       image rows of the one stream);
#   text_attentions (B, H, T, T), vision_attentions (B, H, 1 + N, 1 + N): the towers' self-attention weights;
#   fused_text_attentions (B, H, T, S), fused_image_attentions (B, H, 1 + N, S): fusion self-attention weights
#       (S = the stream's own length, or T + 1 + N for single-stream fusion, split by query rows);
#   fused_text_cross_attentions (B, H, T, 1 + N), fused_image_cross_attentions (B, H, 1 + N, T): fusion
#       cross-attention weights ("cross" / "co_attention" fusion).
# Attention weights exist only with an attention implementation that materialises them (eager).
LAYER_FIELDS = (
    "text_hidden_states", "vision_hidden_states", "fused_text_hidden_states", "fused_image_hidden_states",
    "text_attentions", "vision_attentions", "fused_text_attentions", "fused_image_attentions",
    "fused_text_cross_attentions", "fused_image_cross_attentions",
)
Layers = tuple[torch.FloatTensor, ...] | None


def with_layer_fields(cls):
    """``@dataclass`` for an output class: its own fields, then every ``LAYER_FIELDS`` name (``Layers = None``).

    The per-layer fields come last, so that ``output[0]`` / ``to_tuple()`` keep the ``ModelOutput`` order
    (loss or main tensor first), which a dataclass base class would not (its fields would come first).
    """
    cls.__annotations__ = {**cls.__dict__.get("__annotations__", {}), **dict.fromkeys(LAYER_FIELDS, Layers)}
    for name in LAYER_FIELDS:
        setattr(cls, name, None)
    return dataclass(cls)


@with_layer_fields
class MaskVLModelOutput(ModelOutput):
    """Output of :class:`MaskVLModel` (one pass over the given, possibly masked, inputs).

    Args:
        text_last_hidden_state (B, T, D_text): unimodal text tower output.
        image_last_hidden_state (B, 1 + N, D_vision): unimodal vision tower output (CLS first).
        fused_text_hidden_state (B, T, D): text states after fusion.
        fused_image_hidden_state (B, 1 + N, D): image states after fusion (None for a model built for fused
            text only).
        pooler_output (B, D): pooled pair representation (config.pooling: [fused text CLS; fused image CLS] or
            the fused text CLS alone -> dense -> tanh); None without a pooler.
        text_embeds, image_embeds (B, projection_dim): L2-normalised ITC embeddings of the unimodal CLS
            states; None when the model has no ITC projections.
        text_hidden_states ... fused_image_cross_attentions: per-layer tuples, see ``LAYER_FIELDS``.
    """

    text_last_hidden_state: torch.FloatTensor | None = None
    image_last_hidden_state: torch.FloatTensor | None = None
    fused_text_hidden_state: torch.FloatTensor | None = None
    fused_image_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None


@dataclass
class MaskVLLosses(ModelOutput):
    """Unweighted loss of each pre-training objective; None when the objective was not computed."""

    mlm: torch.FloatTensor | None = None
    mim: torch.FloatTensor | None = None
    itc: torch.FloatTensor | None = None
    itm: torch.FloatTensor | None = None


@with_layer_fields
class MaskVLForPreTrainingOutput(ModelOutput):
    """Output of :class:`MaskVLForPreTraining`.

    Args:
        loss (scalar): weighted sum of the objectives present (weights from the config); None when none was
            computed.
        loss_breakdown (:class:`MaskVLLosses`): each objective's unweighted loss; None when no loss was computed.
        mlm_logits: with ``labels``, (M, V) logits at the M masked text positions of true pairs; without
            ``labels``, (B, T, V) logits at every text position (as ``BertForPreTraining``).
        mlm_labels (M,): the targets of those M positions; mlm_accuracy (scalar): their top-1 accuracy (NaN
            when none).
        mim_logits: with ``bool_masked_pos``, (K, P * P * C) predicted pixels of the K masked patches of true
            pairs; without it, (B, N, P * P * C) for every patch. mim_labels (K, P * P * C): the targets (the
            input ``pixel_values`` patches, per-patch normalised when ``norm_pix_loss``).
        itm_logits (B, 2) and itm_labels (B,): image-text matching (index 1 = matched).
        logits_per_text (M, K), logits_per_image (M, K), itc_labels (M,): ITC over the true pairs, against
            the true pairs of all processes when distributed.
        text_embeds, image_embeds (B, projection_dim): normalised ITC embeddings of the unmasked inputs.
        text_hidden_states ... fused_image_cross_attentions: per-layer tuples (see ``LAYER_FIELDS``) of the pass
            over the inputs as given ("joint" passes) or of the unmasked pair ("separate" passes).
    """

    loss: torch.FloatTensor | None = None
    loss_breakdown: MaskVLLosses | None = None
    mlm_logits: torch.FloatTensor | None = None
    mlm_labels: torch.LongTensor | None = None
    mlm_accuracy: torch.FloatTensor | None = None
    mim_logits: torch.FloatTensor | None = None
    mim_labels: torch.FloatTensor | None = None
    itm_logits: torch.FloatTensor | None = None
    itm_labels: torch.LongTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    itc_labels: torch.LongTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None


@with_layer_fields
class MaskVLMaskedLMOutput(ModelOutput):
    """Output of :class:`MaskVLForMaskedLM`.

    Args:
        loss (scalar): MLM cross-entropy, only with ``labels``.
        logits (B, T, V): vocabulary logits at every text position.
        text_hidden_states ... fused_image_cross_attentions: per-layer tuples, see ``LAYER_FIELDS``.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None


@with_layer_fields
class MaskVLQuestionAnsweringOutput(ModelOutput):
    """Output of :class:`MaskVLForQuestionAnswering`.

    Args:
        loss (scalar): answer loss, only with ``labels``.
        logits (B, num_labels): answer logits.
        text_hidden_states ... fused_image_cross_attentions: per-layer tuples, see ``LAYER_FIELDS``.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None


@with_layer_fields
class MaskVLRetrievalOutput(ModelOutput):
    """Output of :class:`MaskVLForImageTextRetrieval`.

    Args:
        loss (scalar): ITC (+ ITM when ``itm_labels`` are given), only when ``return_loss``.
        logits_per_text (B, B): scaled cosine similarity of every text with every image in the batch.
        logits_per_image (B, B): its transpose.
        itm_logits (B, 2): matching logits of the aligned pairs (text i, image i); None without an ITM head.
        itm_scores (B,): probability that each aligned pair matches.
        text_embeds, image_embeds (B, projection_dim): normalised ITC embeddings.
        text_hidden_states ... fused_image_cross_attentions: per-layer tuples, see ``LAYER_FIELDS``.
    """

    loss: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    itm_logits: torch.FloatTensor | None = None
    itm_scores: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None


def layer_fields(text_out=None, image_out=None, fusion=None) -> dict:
    """The ``LAYER_FIELDS`` of one pass: tower outputs (``BaseModelOutput``) and a ``MaskVLFusionOutput``."""
    fields = dict.fromkeys(LAYER_FIELDS)
    if text_out is not None:
        fields.update(text_hidden_states=text_out.hidden_states, text_attentions=text_out.attentions)
    if image_out is not None:
        fields.update(vision_hidden_states=image_out.hidden_states, vision_attentions=image_out.attentions)
    if fusion is not None:
        fields.update(fused_text_hidden_states=fusion.text_hidden_states,
                      fused_image_hidden_states=fusion.image_hidden_states,
                      fused_text_attentions=fusion.text_attentions, fused_image_attentions=fusion.image_attentions,
                      fused_text_cross_attentions=fusion.text_cross_attentions,
                      fused_image_cross_attentions=fusion.image_cross_attentions)
    return fields


# ------------------------------------------------------------------------------------------------ helpers
def patchify(pixel_values: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, P * P * C), row-major patches, pixels in (p_h, p_w, c) order (MAE convention)."""
    batch, channels, height, width = pixel_values.shape
    grid_h, grid_w = height // patch_size, width // patch_size
    x = pixel_values.reshape(batch, channels, grid_h, patch_size, grid_w, patch_size)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, gh, gw, P, P, C)
    return x.reshape(batch, grid_h * grid_w, patch_size * patch_size * channels)


def unpatchify(patches: torch.Tensor, patch_size: int, channels: int = 3) -> torch.Tensor:
    """(B, N, P * P * C) -> (B, C, H, W), inverse of :func:`patchify` for square images."""
    batch, num_patches, _ = patches.shape
    grid = int(num_patches**0.5)
    x = patches.reshape(batch, grid, grid, patch_size, patch_size, channels)
    x = x.permute(0, 5, 1, 3, 2, 4)  # (B, C, gh, P, gw, P)
    return x.reshape(batch, channels, grid * patch_size, grid * patch_size)


def gather_across_processes(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All-gather (with gradients) along dim 0; returns (gathered, offset of this process's rows)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor, 0
    import torch.distributed.nn.functional as dist_nn

    gathered = torch.cat(dist_nn.all_gather(tensor), dim=0)
    return gathered, dist.get_rank() * tensor.shape[0]


def _check_inputs(input_ids, pixel_values, bool_masked_pos, config: MaskVLConfig, inputs_embeds=None):
    """Clear errors for the mistakes that would otherwise surface deep inside torch."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("MaskVL models need exactly one of `input_ids` and `inputs_embeds` (got "
                         f"{'both' if input_ids is not None else 'neither'}).")
    if pixel_values is None:
        raise ValueError("MaskVL models need both text (`input_ids` or `inputs_embeds`) and `pixel_values`.")
    text = input_ids if input_ids is not None else inputs_embeds
    if input_ids is not None and input_ids.dim() != 2:
        raise ValueError(f"`input_ids` must be (batch, seq_len); got shape {tuple(input_ids.shape)}.")
    if inputs_embeds is not None and (inputs_embeds.dim() != 3
                                      or inputs_embeds.shape[-1] != config.text_config.hidden_size):
        raise ValueError(f"`inputs_embeds` must be (batch, seq_len, {config.text_config.hidden_size}); got shape "
                         f"{tuple(inputs_embeds.shape)}.")
    if pixel_values.dim() != 4:
        raise ValueError(f"`pixel_values` must be (batch, channels, height, width); got {tuple(pixel_values.shape)}.")
    if text.shape[0] != pixel_values.shape[0]:
        raise ValueError(f"Batch sizes differ: the text has {text.shape[0]} rows, pixel_values "
                         f"{pixel_values.shape[0]}.")
    size = config.vision_config.image_size
    if tuple(pixel_values.shape[-2:]) != (size, size):
        raise ValueError(f"`pixel_values` are {tuple(pixel_values.shape[-2:])} pixels; this model expects "
                         f"{size}x{size} (use the checkpoint's image processor).")
    if bool_masked_pos is not None and tuple(bool_masked_pos.shape) != (text.shape[0], config.num_patches):
        raise ValueError(f"`bool_masked_pos` must be (batch, num_patches) = ({text.shape[0]}, "
                         f"{config.num_patches}); got {tuple(bool_masked_pos.shape)}.")
    max_len = config.text_config.max_position_embeddings
    if text.shape[1] > max_len:
        raise ValueError(f"The text has {text.shape[1]} tokens; the text tower takes at most {max_len}.")
    vocab = config.text_config.vocab_size
    if input_ids is not None and input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= vocab):
        raise ValueError(f"`input_ids` contains ids outside the vocabulary [0, {vocab}) "
                         f"(min {int(input_ids.min())}, max {int(input_ids.max())}); tokenizer and model disagree.")


# ------------------------------------------------------------------------------------------- base classes
class MaskVLPreTrainedModel(PreTrainedModel):
    """Metadata and weight initialisation shared by every MaskVL model."""

    config: MaskVLConfig
    config_class = MaskVLConfig
    base_model_prefix = "maskvl"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_attention_backend = True
    _no_split_modules = ["MaskVLFusionLayer", "BertLayer", "ViTLayer"]
    # a task model loaded from a checkpoint of another task silently drops what it does not build: the other
    # tasks' heads, and the base-model parts its own head never reads (see MaskVLModel's arguments)
    _keys_to_ignore_on_load_unexpected = [
        r"^(mlm_head|mim_head|mim_mask_tokens|itm_head|classifier)\.",
        r"^(maskvl\.)?(pooler|text_projection|visual_projection|text_projection_norm|visual_projection_norm)\.",
        r"^(maskvl\.)?logit_scale$",
        r"^(maskvl\.)?vision_model\.embeddings\.mask_token$",
        r"^(maskvl\.)?fusion\.(image_encoder|image_norm|image_layers\.\d+)\.",
    ]

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, MaskVLModel) and module.logit_scale is not None:
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)
        if isinstance(module, MaskTokenScatter):
            init.normal_(module.mask_token, std=module.initializer_range)
            init.trunc_normal_(module.position_embeddings, std=module.initializer_range)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """``PreTrainedModel.from_pretrained`` that only ever reads safetensors weights (never unpickles)."""
        if kwargs.get("use_safetensors") is False:
            raise ValueError("MaskVL models load safetensors weights only; use_safetensors=False is refused.")
        kwargs["use_safetensors"] = True
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save weights (safetensors), config with a complete ``auto_map`` and the code files."""
        self.config.auto_map = dict(AUTO_MAP)
        for cls in (type(self), type(self.config)):
            if getattr(cls, "_auto_class", None) is None:
                cls._auto_class = "AutoConfig" if cls is type(self.config) else _auto_class_of(cls)
        kwargs.setdefault("safe_serialization", True)
        return super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_text_vision_pretrained(cls, text_model_name_or_path: str | None = None,
                                    vision_model_name_or_path: str | None = None,
                                    config: MaskVLConfig | None = None, preset: str = "maskvlm", **kwargs):
        """Build a model whose text and / or vision tower start from pretrained unimodal weights.

        ``text_model_name_or_path``: a local folder or Hub id of a BERT-family encoder (e.g. MiniLM, BERT);
        ``vision_model_name_or_path``: a ViT-family encoder. The towers' configs replace the preset's; the
        fusion module and heads are initialised from scratch (as in ALBEF / MaskVLM / ViLT). ``kwargs`` go to
        ``MaskVLConfig.from_preset`` when no ``config`` is given.
        """
        config = copy_config(config) if config is not None else MaskVLConfig.from_preset(preset, **kwargs)
        towers = {}
        if text_model_name_or_path is not None:
            config.text_config = AutoConfig.from_pretrained(text_model_name_or_path)
            towers["text"] = AutoModel.from_pretrained(text_model_name_or_path, add_pooling_layer=False)
        if vision_model_name_or_path is not None:
            vision_config = AutoConfig.from_pretrained(vision_model_name_or_path)
            vision_config.patch_embedder = getattr(config.vision_config, "patch_embedder", "linear")
            config.vision_config = vision_config
            towers["vision"] = AutoModel.from_pretrained(vision_model_name_or_path, add_pooling_layer=False,
                                                         use_mask_token=True)
        config = MaskVLConfig(**config.to_dict())  # re-validate with the new towers
        model = cls(config)
        base = getattr(model, cls.base_model_prefix, model)
        if "text" in towers:
            base.text_model.load_state_dict(towers["text"].state_dict())
        if "vision" in towers:
            state = towers["vision"].state_dict()
            if config.vision_config.patch_embedder != "linear":  # a conv embedder replaces ViT's linear patches
                state = {k: v for k, v in state.items() if not k.startswith("embeddings.patch_embeddings.")}
            if base.vision_model.embeddings.mask_token is None:  # a task model that never masks patches
                state.pop("embeddings.mask_token", None)
            missing, unexpected = base.vision_model.load_state_dict(state, strict=False)
            if unexpected or [k for k in missing if not k.startswith("embeddings.")]:
                raise ValueError(f"Vision weights do not fit the vision tower: missing {missing}, "
                                 f"unexpected {unexpected}.")
        return model


def copy_config(config: MaskVLConfig) -> MaskVLConfig:
    return MaskVLConfig(**config.to_dict())


def _auto_class_of(cls) -> str:
    for auto_name, target in AUTO_MAP.items():
        if target.endswith("." + cls.__name__):
            return auto_name
    return "AutoModel"


class MaskVLModel(MaskVLPreTrainedModel):
    """Text tower + vision tower + cross-modal fusion. Returns hidden states; computes no loss.

    The task models build only what their head reads (as ``BertForMaskedLM`` builds ``BertModel`` without
    its pooler), so distributed training with ``find_unused_parameters=False`` works for every class:

    Args:
        config (:class:`MaskVLConfig`): the model configuration.
        add_pooling_layer (`bool`): build the pooler (``pooler_output``); ITM and VQA read it.
        add_projections (`bool`): build the ITC projections and ``logit_scale`` (when ``config.use_itc_head``).
        use_mask_token (`bool`): build the vision tower's mask token (``bool_masked_pos`` replaces patches).
        fuse_image (`bool`): build the fusion parts that only the fused *image* states need.
    """

    def __init__(self, config: MaskVLConfig, add_pooling_layer: bool = True, add_projections: bool = True,
                 use_mask_token: bool = True, fuse_image: bool = True):
        super().__init__(config)
        self.text_model = AutoModel.from_config(config.text_config, add_pooling_layer=False)
        self.vision_model = AutoModel.from_config(config.vision_config, add_pooling_layer=False,
                                                  use_mask_token=use_mask_token)
        if config.vision_config.patch_embedder != "linear":  # MLIM's conv stack or the early-convolution stem
            embedder = ConvPatchEmbeddings if config.vision_config.patch_embedder == "conv" else ConvStemPatchEmbeddings
            self.vision_model.embeddings.patch_embeddings = embedder(config.vision_config)
        # the towers keep pointing at the composite config's sub-configs (attention implementation switches)
        self.text_model.config = config.text_config
        self.vision_model.config = config.vision_config

        if config.cross_modal_config._attn_implementation is None:  # our layers follow the top-level choice
            config.cross_modal_config._attn_implementation_internal = config._attn_implementation
        width = config.cross_modal_config.hidden_size
        self.text_to_fusion = self._bridge(config.text_config.hidden_size, width)
        self.image_to_fusion = self._bridge(config.vision_config.hidden_size, width)
        self.fusion = MaskVLFusion(config.cross_modal_config, text_only=not fuse_image)
        self.pooler = MaskVLPooler(width, config.pooling) if add_pooling_layer else None
        if self.pooler is not None and self.pooler.needs_image_stream and not fuse_image:
            raise ValueError("pooling='pair' reads the fused image stream: build MaskVLModel with fuse_image=True.")
        self.text_projection = self.visual_projection = self.logit_scale = None
        self.text_projection_norm = self.visual_projection_norm = None
        if config.use_itc_head and add_projections:
            self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=False)
            self.visual_projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim, bias=False)
            # a 1-element tensor, not a 0-d one: FSDP2's fully_shard refuses scalar parameters
            self.logit_scale = nn.Parameter(torch.tensor([config.logit_scale_init_value]))
            batch_norm = config.itc_feature_norm == "batch"
            self.text_projection_norm = MaskVLFeatureNorm(config.projection_dim) if batch_norm else nn.Identity()
            self.visual_projection_norm = MaskVLFeatureNorm(config.projection_dim) if batch_norm else nn.Identity()
        self.post_init()

    @staticmethod
    def _bridge(in_size: int, out_size: int) -> nn.Module:
        return nn.Identity() if in_size == out_size else nn.Linear(in_size, out_size)

    def get_input_embeddings(self):
        return self.text_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.text_model.set_input_embeddings(value)

    def _flags(self, output_attentions, output_hidden_states) -> dict:
        """Explicit arguments win over the config defaults of the same names."""
        return {"output_attentions": self.config.output_attentions if output_attentions is None else output_attentions,
                "output_hidden_states": (self.config.output_hidden_states if output_hidden_states is None
                                         else output_hidden_states)}

    # -- unimodal towers ---------------------------------------------------------------------------------
    # (named run_*: `vision_tower` / `language_model` are the attribute names transformers gives tower modules)
    def run_text_tower(self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None,
                   output_attentions=False, output_hidden_states=False) -> BaseModelOutput:
        """(B, T) ids or (B, T, D_text) embeddings -> the text tower's ``BaseModelOutput``."""
        out = self.text_model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                              inputs_embeds=inputs_embeds, output_attentions=output_attentions,
                              output_hidden_states=output_hidden_states)
        return _with_embeddings_state(out, output_hidden_states)

    def run_vision_tower(self, pixel_values, bool_masked_pos=None, output_attentions=False,
                     output_hidden_states=False) -> BaseModelOutput:
        """(B, C, H, W) pixels -> the vision tower's ``BaseModelOutput`` (masked patches -> mask token)."""
        if bool_masked_pos is not None and self.vision_model.embeddings.mask_token is None:
            raise ValueError(f"{type(self).__name__} was built without a mask token: this model does not take "
                             "`bool_masked_pos`.")
        out = self.vision_model(pixel_values=pixel_values, bool_masked_pos=bool_masked_pos,
                                output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        return _with_embeddings_state(out, output_hidden_states)

    def encode_text(self, input_ids, attention_mask=None, token_type_ids=None, inputs_embeds=None) -> torch.Tensor:
        """(B, T) ids -> (B, T, D_text) unimodal text states."""
        return self.run_text_tower(input_ids, attention_mask, token_type_ids, inputs_embeds).last_hidden_state

    def encode_image(self, pixel_values, bool_masked_pos=None) -> torch.Tensor:
        """(B, C, H, W) pixels -> (B, 1 + N, D_vision) unimodal image states (masked patches -> mask token)."""
        return self.run_vision_tower(pixel_values, bool_masked_pos).last_hidden_state

    def fuse(self, text_states, attention_mask, image_states, return_text=True, return_image=True,
             output_attentions=False, output_hidden_states=False, image_mask=None) -> MaskVLFusionOutput:
        """Unimodal states -> fused text (B, T, D) and fused image (B, 1 + N, D) states (a ``MaskVLFusionOutput``)."""
        if attention_mask is None:
            attention_mask = text_states.new_ones(text_states.shape[:2], dtype=torch.long)
        return self.fusion(self.text_to_fusion(text_states), attention_mask, self.image_to_fusion(image_states),
                           return_text=return_text, return_image=return_image and not self.fusion.text_only,
                           output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                           image_mask=image_mask)

    # -- contrastive embeddings --------------------------------------------------------------------------
    def _require_itc(self):
        if self.text_projection is None:
            raise ValueError("This MaskVL model has no ITC projections (config.use_itc_head=False).")

    def _text_embeds(self, text_states, attention_mask=None):
        """Unimodal text states (B, T, Dt) -> L2-normalised ITC embeddings (B, projection_dim) of the CLS token, or
        of the mean over the non-padding tokens (``config.itc_pooling="mean"``; attention_mask (B, T), None = all)."""
        if self.config.itc_pooling == "mean":
            weights = (torch.ones(text_states.shape[:2], dtype=text_states.dtype, device=text_states.device)
                       if attention_mask is None else attention_mask.to(text_states.dtype))  # (B, T)
            pooled = (text_states * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1.0)
        else:
            pooled = text_states[:, 0]
        return nn.functional.normalize(self.text_projection_norm(self.text_projection(pooled)), dim=-1)

    def _image_embeds(self, image_states):
        """Unimodal image states (B, 1 + N, Dv) -> L2-normalised ITC embeddings of the CLS token, or of the mean
        of the patch states (``config.itc_pooling="mean"``)."""
        pooled = image_states[:, 1:].mean(1) if self.config.itc_pooling == "mean" else image_states[:, 0]
        return nn.functional.normalize(self.visual_projection_norm(self.visual_projection(pooled)), dim=-1)

    def contrastive_embeddings(self, text_states, image_states, attention_mask=None):
        """Unimodal states -> L2-normalised ITC embeddings (B, projection_dim) each (``config.itc_pooling``)."""
        self._require_itc()
        return self._text_embeds(text_states, attention_mask), self._image_embeds(image_states)

    @can_return_tuple
    def get_text_features(self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None,
                          output_attentions=None, output_hidden_states=None) -> BaseModelOutputWithPooling:
        """The text tower alone: ``last_hidden_state`` (B, T, D_text), per-layer ``hidden_states`` /
        ``attentions`` when asked for, and ``pooler_output`` = the normalised ITC text embedding
        (B, projection_dim), None for a model without ITC projections."""
        out = self.run_text_tower(input_ids, attention_mask, token_type_ids, inputs_embeds,
                              **self._flags(output_attentions, output_hidden_states))
        pooled = (self._text_embeds(out.last_hidden_state, attention_mask) if self.text_projection is not None
                  else None)
        return BaseModelOutputWithPooling(last_hidden_state=out.last_hidden_state, pooler_output=pooled,
                                          hidden_states=out.hidden_states, attentions=out.attentions)

    @can_return_tuple
    def get_image_features(self, pixel_values=None, output_attentions=None,
                           output_hidden_states=None) -> BaseModelOutputWithPooling:
        """The vision tower alone: ``last_hidden_state`` (B, 1 + N, D_vision), per-layer ``hidden_states`` /
        ``attentions`` when asked for, and ``pooler_output`` = the normalised ITC image embedding
        (B, projection_dim), None for a model without ITC projections."""
        if pixel_values is None:
            raise ValueError("get_image_features needs `pixel_values`.")
        out = self.run_vision_tower(pixel_values, **self._flags(output_attentions, output_hidden_states))
        pooled = self._image_embeds(out.last_hidden_state) if self.visual_projection is not None else None
        return BaseModelOutputWithPooling(last_hidden_state=out.last_hidden_state, pooler_output=pooled,
                                          hidden_states=out.hidden_states, attentions=out.attentions)

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, pixel_values=None, bool_masked_pos=None,
                token_type_ids=None, inputs_embeds=None, output_attentions=None,
                output_hidden_states=None) -> MaskVLModelOutput:
        """Shapes: input_ids / attention_mask / token_type_ids (B, T) or inputs_embeds (B, T, D_text);
        pixel_values (B, C, H, W); bool_masked_pos (B, N), True = masked patch. ``return_dict=False`` gives
        the tuple of the non-None fields."""
        _check_inputs(input_ids, pixel_values, bool_masked_pos, self.config, inputs_embeds)
        flags = self._flags(output_attentions, output_hidden_states)
        text_out = self.run_text_tower(input_ids, attention_mask, token_type_ids, inputs_embeds, **flags)
        image_out = self.run_vision_tower(pixel_values, bool_masked_pos, **flags)
        text_states, image_states = text_out.last_hidden_state, image_out.last_hidden_state  # (B, T, Dt), (B, 1+N, Dv)
        fusion = self.fuse(text_states, attention_mask, image_states, **flags)
        text_embeds = image_embeds = None
        if self.text_projection is not None:
            text_embeds, image_embeds = self.contrastive_embeddings(text_states, image_states, attention_mask)
        pooled = (self.pooler(fusion.text_last_hidden_state, fusion.image_last_hidden_state)
                  if self.pooler is not None else None)
        return MaskVLModelOutput(
            text_last_hidden_state=text_states, image_last_hidden_state=image_states,
            fused_text_hidden_state=fusion.text_last_hidden_state,
            fused_image_hidden_state=fusion.image_last_hidden_state,
            pooler_output=pooled, text_embeds=text_embeds, image_embeds=image_embeds,
            **layer_fields(text_out, image_out, fusion),
        )


def _with_embeddings_state(out, output_hidden_states):
    """A tower without layers records no hidden state; by convention hidden_states[0] is the embedding output."""
    if output_hidden_states and not out.hidden_states:
        out.hidden_states = (out.last_hidden_state,)
    return out


# ------------------------------------------------------------------------------------------ task models
class MaskVLForPreTraining(MaskVLPreTrainedModel):
    """MLM + MIM + ITC + ITM pre-training (the heads that the config switches on).

    With ``masked_modeling_passes="separate"`` (MaskVLM) the model runs, per step: the text tower on the
    unmasked text and (for rows with masked tokens) on the masked text; the vision tower on the unmasked
    image and (for rows with masked patches) on the masked image; the text fusion on (masked text, unmasked
    image) for MLM; the image fusion + pixel decoder on (masked image, unmasked text) for MIM; and the fusion
    on the unmasked pair for ITM. Cost: about 1.5-2x the encoder FLOPs of a single pass when the collator
    masks one modality per pair (each masked pass covers only the rows that have that modality masked).
    With ``"joint"`` (MLIM, LXMERT) one pass over the masked inputs serves every head.

    Less work per step (separate passes only): ``config.mim_encoder="visible"`` runs the masked-image pass on the
    unmasked patches alone (MAE / M3AE; the pixel decoder gets ``mim_mask_tokens`` at the masked ones);
    ``config.patch_drop_ratio > 0`` drops that share of the unmasked image's patches from the ITC / ITM pass in
    training (FLIP), chosen by ``patch_drop_noise`` (B, N) from the collator; the MLM pass keeps the whole image.

    Rows with ``itm_labels == 0`` (swapped images) only contribute to ITM. Without ``labels`` the MLM head
    scores every text position, without ``bool_masked_pos`` the pixel decoder every patch (prediction
    logits, no loss), as ``BertForPreTraining`` does.
    """

    def __init__(self, config: MaskVLConfig):
        super().__init__(config)
        visible = config.mim_encoder == "visible"  # the vision tower never sees a mask token then
        self.maskvl = MaskVLModel(config, add_pooling_layer=config.use_itm_head, use_mask_token=not visible)
        width = config.cross_modal_config.hidden_size
        vision = config.vision_config
        self.mlm_head = MaskVLMLMHead(width, config.text_config.vocab_size) if config.use_mlm_head else None
        self.mim_head = (MaskVLPixelDecoder(config.cross_modal_config, vision.patch_size, vision.num_channels)
                         if config.use_mim_head else None)
        self.mim_mask_tokens = (MaskTokenScatter(width, config.num_patches, config.initializer_range)
                                if visible and config.use_mim_head else None)
        self.itm_head = MaskVLITMHead(width) if config.use_itm_head else None
        self.post_init()

    def get_output_embeddings(self):
        return self.mlm_head.decoder if self.mlm_head is not None else None

    def set_output_embeddings(self, new_embeddings):
        self.mlm_head.decoder = new_embeddings

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, pixel_values=None, bool_masked_pos=None, labels=None,
                itm_labels=None, token_type_ids=None, inputs_embeds=None, output_attentions=None,
                output_hidden_states=None, patch_drop_noise=None,
                itm_negative_index=None) -> MaskVLForPreTrainingOutput:
        """See the class docstring. Shapes: input_ids / attention_mask / labels (B, T); pixel_values
        (B, C, H, W); bool_masked_pos (B, N); itm_labels (B,) (1 = true pair, 0 = swapped image) or
        itm_negative_index (B,) (ALBEF-style extra negatives: row b's text with row ``itm_negative_index[b]``'s
        image, -1 = none; every row stays a true pair and ``itm_logits`` has B + K rows, true pairs first);
        patch_drop_noise (B, N) float (read only in training with ``config.patch_drop_ratio > 0``: the patches
        of smallest noise are kept; calls without ``bool_masked_pos`` or that record hidden states / attentions
        see every patch)."""
        cfg, base = self.config, self.maskvl
        _check_inputs(input_ids, pixel_values, bool_masked_pos, cfg, inputs_embeds)
        flags = base._flags(output_attentions, output_hidden_states)
        text = input_ids if input_ids is not None else inputs_embeds
        batch = text.shape[0]
        if attention_mask is None:
            attention_mask = torch.ones(text.shape[:2], dtype=torch.long, device=text.device)
        if itm_negative_index is not None:
            if itm_labels is not None:
                raise ValueError("give `itm_labels` (swapped pairs) or `itm_negative_index` (extra in-batch "
                                 "negatives), not both")
            if self.itm_head is None or cfg.masked_modeling_passes != "separate":
                raise ValueError("`itm_negative_index` needs an ITM head and masked_modeling_passes='separate' (the "
                                 "negatives are fused from the unmasked pair's tower outputs)")
            if tuple(itm_negative_index.shape) != (batch,):
                raise ValueError(f"itm_negative_index must have shape ({batch},), got {tuple(itm_negative_index.shape)}")
        positive = (itm_labels == 1) if itm_labels is not None else torch.ones(batch, dtype=torch.bool,
                                                                                  device=text.device)
        text_rows = positive & (labels != IGNORE_INDEX).any(dim=1) if labels is not None else positive & False
        image_rows = (positive & bool_masked_pos.any(dim=1)) if bool_masked_pos is not None else positive & False
        out = {}

        if cfg.masked_modeling_passes == "joint":
            text_out = base.run_text_tower(input_ids, attention_mask, token_type_ids, inputs_embeds, **flags)
            image_out = base.run_vision_tower(pixel_values, bool_masked_pos, **flags)
            pair_text, pair_image = text_out.last_hidden_state, image_out.last_hidden_state
            fusion = base.fuse(pair_text, attention_mask, pair_image, **flags)
            if self.mlm_head is not None:
                self._mlm(out, fusion.text_last_hidden_state, labels, text_rows)
            if self.mim_head is not None:
                self._mim(out, fusion.image_last_hidden_state, pair_text, attention_mask, pixel_values,
                          bool_masked_pos, image_rows)
        else:
            if labels is not None and inputs_embeds is not None:
                raise ValueError("Separate masked-modeling passes rebuild the unmasked text from `input_ids` and "
                                 "`labels`: pass `input_ids`, not `inputs_embeds`, with `labels`.")
            clean_ids = input_ids if labels is None else torch.where(labels != IGNORE_INDEX, labels, input_ids)
            text_out = base.run_text_tower(clean_ids, attention_mask, token_type_ids, inputs_embeds, **flags)
            recording = flags["output_attentions"] or flags["output_hidden_states"]
            text_logits = self.mlm_head is not None and labels is None
            pixel_logits = self.mim_head is not None and bool_masked_pos is None
            # FLIP: the ITC / ITM pass sees a random subset of the patches (training, pre-training batches only)
            keep_ids = None if pixel_logits or recording else self._patch_keep_ids(patch_drop_noise, batch)
            if keep_ids is None:
                image_out = base.run_vision_tower(pixel_values, **flags)
                pair_image = image_out.last_hidden_state  # (B, 1 + N, Dv)
            else:
                image_out = BaseModelOutput(last_hidden_state=vit_encode_subset(base.vision_model, pixel_values,
                                                                                keep_ids)[0])  # (B, 1 + K, Dv)
                pair_image = image_out.last_hidden_state
            pair_text = text_out.last_hidden_state  # (B, T, Dt)
            if self.mlm_head is not None and labels is not None and text_rows.any():
                rows = text_rows.nonzero().squeeze(1)
                masked_text = base.encode_text(input_ids[rows], attention_mask[rows],
                                               None if token_type_ids is None else token_type_ids[rows])
                context = pair_image[rows] if keep_ids is None else base.encode_image(pixel_values[rows])
                fused = base.fuse(masked_text, attention_mask[rows], context, return_image=False)
                self._mlm(out, fused.text_last_hidden_state, labels[rows], None)
            if self.mim_head is not None and bool_masked_pos is not None and image_rows.any():
                rows = image_rows.nonzero().squeeze(1)
                fused_image = self._masked_image_pass(pair_text[rows], attention_mask[rows], pixel_values[rows],
                                                      bool_masked_pos[rows])
                self._mim(out, fused_image, pair_text[rows], attention_mask[rows], pixel_values[rows],
                          bool_masked_pos[rows], None)
            # the unmasked pair: ITM, prediction logits without labels / masks, and the requested layer outputs
            fusion = None
            if self.itm_head is not None or text_logits or pixel_logits or recording:
                needs_image = (pixel_logits or recording
                               or (self.itm_head is not None and base.pooler.needs_image_stream))
                fusion = base.fuse(pair_text, attention_mask, pair_image, return_image=needs_image, **flags)
                if text_logits:
                    self._mlm(out, fusion.text_last_hidden_state, None, None)
                if pixel_logits:
                    self._mim(out, fusion.image_last_hidden_state, pair_text, attention_mask, pixel_values, None,
                              None)

        if self.itm_head is not None:
            pooled = base.pooler(fusion.text_last_hidden_state, fusion.image_last_hidden_state)  # (B, D)
            if itm_negative_index is not None:  # ALBEF: the B true pairs, then texts with another row's image
                rows = (itm_negative_index >= 0).nonzero().squeeze(1)  # (K,)
                negative = base.fuse(pair_text[rows], attention_mask[rows], pair_image[itm_negative_index[rows]],
                                     return_image=base.pooler.needs_image_stream)
                pooled = torch.cat([pooled, base.pooler(negative.text_last_hidden_state,
                                                        negative.image_last_hidden_state)])  # (B + K, D)
                itm_labels = torch.cat([torch.ones(batch, dtype=torch.long, device=pooled.device),
                                        torch.zeros(len(rows), dtype=torch.long, device=pooled.device)])
            out["itm_logits"] = self.itm_head(pooled)  # (B, 2), or (B + K, 2) with in-batch negatives
            if itm_labels is not None:
                out["itm_labels"] = itm_labels
        if base.text_projection is not None:
            self._itc(out, pair_text, pair_image, positive, attention_mask)

        losses = MaskVLLosses(
            mlm=masked_lm_loss(out["mlm_logits"], out["mlm_labels"]) if "mlm_labels" in out else None,
            mim=masked_image_loss(out["mim_logits"], out["mim_labels"], cfg.mim_loss) if "mim_labels" in out else None,
            itc=(contrastive_loss(out["logits_per_text"], out["logits_per_image"], out["itc_labels"])
                 if "itc_labels" in out else None),
            itm=itm_loss(out["itm_logits"], itm_labels) if "itm_labels" in out else None,
        )
        weights = {"mlm": cfg.mlm_weight, "mim": cfg.mim_weight, "itc": cfg.itc_weight, "itm": cfg.itm_weight}
        total = weighted_total(dict(losses.items()), weights)
        return MaskVLForPreTrainingOutput(loss=total, loss_breakdown=losses if total is not None else None, **out,
                                          **layer_fields(text_out, image_out, fusion))

    # -- the fast paths (issue 16) ------------------------------------------------------------------------
    def _patch_keep_ids(self, patch_drop_noise, batch: int) -> torch.Tensor | None:
        """Patches kept by FLIP-style dropping (B, K), or None when nothing is dropped (eval, ratio 0)."""
        ratio = self.config.patch_drop_ratio
        if not (self.training and ratio > 0):
            return None
        num_patches = self.config.num_patches
        if patch_drop_noise is None:
            raise ValueError(f"config.patch_drop_ratio={ratio} drops patches in training and needs `patch_drop_noise` "
                             f"(batch, num_patches) = ({batch}, {num_patches}): use "
                             "MaskVLDataCollator(patch_drop_noise=True), or set patch_drop_ratio=0.")
        if tuple(patch_drop_noise.shape) != (batch, num_patches):
            raise ValueError(f"`patch_drop_noise` must be (batch, num_patches) = ({batch}, {num_patches}); got "
                             f"{tuple(patch_drop_noise.shape)}.")
        return patch_keep_indices(patch_drop_noise, num_kept_patches(num_patches, ratio))

    def _masked_image_pass(self, text_states, attention_mask, pixel_values, bool_masked_pos) -> torch.Tensor:
        """Masked image + unmasked text -> fused image states (R, 1 + N, D) for the pixel decoder.

        "mask_token": the vision tower and the image cross-encoder see every patch (masked -> mask token).
        "visible": they see [CLS] + the unmasked patches only (rows padded to the widest row, padding masked out
        of attention); ``mim_mask_tokens`` then puts a mask token at every masked patch, with decoder positions.
        """
        base = self.maskvl
        if self.mim_mask_tokens is None:
            masked_image = base.encode_image(pixel_values, bool_masked_pos)  # (R, 1 + N, Dv)
            return base.fuse(text_states, attention_mask, masked_image, return_text=False).image_last_hidden_state
        ids, valid = visible_indices(bool_masked_pos)  # (R, V)
        visible_image, image_mask = vit_encode_subset(base.vision_model, pixel_values, ids, valid)  # (R, 1 + V, Dv)
        fused = base.fuse(text_states, attention_mask, visible_image, return_text=False, image_mask=image_mask)
        return self.mim_mask_tokens(fused.image_last_hidden_state, ids, valid)  # (R, 1 + N, D)

    # -- one small step per objective ---------------------------------------------------------------------
    def _mlm(self, out, fused_text, labels, rows):
        """Score the masked positions, (B, T, D) -> (M, V); without labels every position, -> (B, T, V)."""
        if labels is None:
            out["mlm_logits"] = self.mlm_head(fused_text)  # (B, T, V)
            return
        if rows is not None:
            labels = labels.masked_fill(~rows[:, None], IGNORE_INDEX)
        scored = labels != IGNORE_INDEX  # (B, T)
        out["mlm_logits"] = self.mlm_head(fused_text[scored])  # (M, V)
        out["mlm_labels"] = labels[scored]  # (M,)
        out["mlm_accuracy"] = mlm_accuracy(out["mlm_logits"].detach(), out["mlm_labels"])

    def _mim(self, out, fused_image, text_states, attention_mask, pixel_values, bool_masked_pos, rows):
        """Decode every patch, score only the masked ones: (B, 1 + N, D) -> (K, P * P * C); without
        ``bool_masked_pos`` return every patch's prediction, (B, N, P * P * C)."""
        text_context = self.maskvl.text_to_fusion(text_states)
        text_keys = additive_key_mask(attention_mask, text_context.dtype)
        pixels = self.mim_head(fused_image, text_context, text_keys)[:, 1:]  # (B, N, P * P * C), drop CLS
        if bool_masked_pos is None:
            out["mim_logits"] = pixels
            return
        if rows is not None:
            bool_masked_pos = bool_masked_pos & rows[:, None]
        target = patchify(pixel_values, self.config.vision_config.patch_size)  # (B, N, P * P * C)
        if self.config.norm_pix_loss:
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        out["mim_logits"] = pixels[bool_masked_pos]  # (K, P * P * C)
        out["mim_labels"] = target[bool_masked_pos]

    def _itc(self, out, text_states, image_states, positive, attention_mask=None):
        """Contrastive logits over the true pairs of every process."""
        text_embeds, image_embeds = self.maskvl.contrastive_embeddings(text_states, image_states, attention_mask)
        out["text_embeds"], out["image_embeds"] = text_embeds, image_embeds
        all_text, offset = gather_across_processes(text_embeds)
        all_image, _ = gather_across_processes(image_embeds)
        all_positive, _ = gather_across_processes(positive.to(torch.uint8))
        all_positive = all_positive.bool()
        scale = self.maskvl.logit_scale.clamp(max=4.6052).exp()  # temperature >= 0.01, as in CLIP
        local_rows = positive.nonzero().squeeze(1)
        columns = all_positive.nonzero().squeeze(1)
        out["logits_per_text"] = scale * text_embeds[local_rows] @ all_image[columns].t()  # (M, K)
        out["logits_per_image"] = scale * image_embeds[local_rows] @ all_text[columns].t()  # (M, K)
        # column of each local true pair among the gathered true pairs
        out["itc_labels"] = torch.searchsorted(columns, local_rows + offset)


class MaskVLForMaskedLM(MaskVLPreTrainedModel):
    """Fill-mask conditioned on an image: masked text + image -> vocabulary logits for every text position.

    Builds only what the fused text states need: no pooler, no ITC projections, no patch mask token, and no
    image-only fusion parts (the image cross-encoder, or LXMERT's last image layer).
    """

    def __init__(self, config: MaskVLConfig):
        super().__init__(config)
        self.maskvl = MaskVLModel(config, add_pooling_layer=False, add_projections=False, use_mask_token=False,
                                  fuse_image=False)
        self.mlm_head = MaskVLMLMHead(config.cross_modal_config.hidden_size, config.text_config.vocab_size)
        self.post_init()

    def get_output_embeddings(self):
        return self.mlm_head.decoder

    def set_output_embeddings(self, new_embeddings):
        self.mlm_head.decoder = new_embeddings

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, pixel_values=None, labels=None, token_type_ids=None,
                inputs_embeds=None, output_attentions=None, output_hidden_states=None) -> MaskVLMaskedLMOutput:
        """Returns ``logits`` (B, T, V) and, with ``labels`` (B, T; -100 ignored), the MLM ``loss``."""
        outputs = self.maskvl(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                              token_type_ids=token_type_ids, inputs_embeds=inputs_embeds,
                              output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        logits = self.mlm_head(outputs.fused_text_hidden_state)  # (B, T, V)
        loss = masked_lm_loss(logits, labels) if labels is not None else None
        return MaskVLMaskedLMOutput(loss=loss, logits=logits, **{k: outputs[k] for k in LAYER_FIELDS if k in outputs})


class MaskVLForQuestionAnswering(MaskVLPreTrainedModel):
    """Visual question answering as classification over ``config.num_labels`` answers (``id2label``).

    ``labels``: (B,) answer indices -> cross-entropy; or (B, num_labels) soft scores (VQAv2) -> BCE.
    Builds no ITC projections and no patch mask token (the classifier never reads them).
    """

    def __init__(self, config: MaskVLConfig):
        super().__init__(config)
        self.maskvl = MaskVLModel(config, add_projections=False, use_mask_token=False,
                                  fuse_image=config.pooling == "pair")
        self.classifier = MaskVLAnswerHead(config.cross_modal_config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, pixel_values=None, labels=None, token_type_ids=None,
                inputs_embeds=None, output_attentions=None,
                output_hidden_states=None) -> MaskVLQuestionAnsweringOutput:
        outputs = self.maskvl(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                              token_type_ids=token_type_ids, inputs_embeds=inputs_embeds,
                              output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        logits = self.classifier(outputs.pooler_output)  # (B, num_labels)
        loss = vqa_loss(logits, labels) if labels is not None else None
        return MaskVLQuestionAnsweringOutput(loss=loss, logits=logits,
                                             **{k: outputs[k] for k in LAYER_FIELDS if k in outputs})


class MaskVLForImageTextRetrieval(MaskVLPreTrainedModel):
    """Image-text retrieval: ITC similarity for all pairs of a batch, ITM score for re-ranking aligned pairs.

    Needs a config with ``use_itc_head=True``; the ITM score is available when ``use_itm_head=True``.
    """

    def __init__(self, config: MaskVLConfig):
        super().__init__(config)
        if not config.use_itc_head:
            raise ValueError("MaskVLForImageTextRetrieval needs config.use_itc_head=True (ITC projections).")
        self.maskvl = MaskVLModel(config, add_pooling_layer=config.use_itm_head, use_mask_token=False)
        self.itm_head = MaskVLITMHead(config.cross_modal_config.hidden_size) if config.use_itm_head else None
        self.post_init()

    def itm_scores(self, input_ids, attention_mask, pixel_values) -> torch.Tensor:
        """Probability (B,) that text i matches image i -- use it to re-rank the ITC top-k."""
        if self.itm_head is None:
            raise ValueError("This model has no ITM head (config.use_itm_head=False).")
        out = self.maskvl(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values)
        return self.itm_head(out.pooler_output).softmax(-1)[:, 1]

    @can_return_tuple
    def forward(self, input_ids=None, attention_mask=None, pixel_values=None, itm_labels=None, return_loss=False,
                token_type_ids=None, inputs_embeds=None, output_attentions=None,
                output_hidden_states=None) -> MaskVLRetrievalOutput:
        out = self.maskvl(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values,
                          token_type_ids=token_type_ids, inputs_embeds=inputs_embeds,
                          output_attentions=output_attentions, output_hidden_states=output_hidden_states)
        scale = self.maskvl.logit_scale.clamp(max=4.6052).exp()
        logits_per_text = scale * out.text_embeds @ out.image_embeds.t()  # (B, B)
        itm_logits = self.itm_head(out.pooler_output) if self.itm_head is not None else None
        loss = None
        if return_loss:
            batch = logits_per_text.shape[0]
            positive = (itm_labels == 1 if itm_labels is not None
                        else torch.ones(batch, dtype=torch.bool, device=logits_per_text.device))
            rows = positive.nonzero().squeeze(1)
            sub = logits_per_text[rows][:, rows]
            targets = torch.arange(len(rows), device=sub.device)
            loss = contrastive_loss(sub, sub.t(), targets)
            if itm_labels is not None and itm_logits is not None:
                loss = loss + itm_loss(itm_logits, itm_labels)
        return MaskVLRetrievalOutput(
            loss=loss, logits_per_text=logits_per_text, logits_per_image=logits_per_text.t(), itm_logits=itm_logits,
            itm_scores=itm_logits.softmax(-1)[:, 1] if itm_logits is not None else None,
            text_embeds=out.text_embeds, image_embeds=out.image_embeds,
            **{k: out[k] for k in LAYER_FIELDS if k in out},
        )
