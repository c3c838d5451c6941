"""Cross-modal fusion: attention, one pre-norm transformer layer, and the three fusion modules.

Shapes: B batch, T text tokens, N image tokens (CLS + patches), D fusion width, H heads.
Attention masks passed around here are *key padding* masks of shape (B, S) with 1 = keep, or None.
"""

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput

from .configuration_maskvl import MaskVLCrossModalConfig


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Plain softmax attention. query/key/value: (B, H, S, Dh); attention_mask: additive, (B, 1, 1, S_k)."""
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, H, S_q, S_k)
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()  # (B, S_q, H, Dh)
    return attn_output, attn_weights


def additive_key_mask(key_padding_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, S) 1/0 keep-mask -> (B, 1, 1, S) additive mask for the attention interface."""
    if key_padding_mask is None:
        return None
    mask = key_padding_mask[:, None, None, :].to(dtype)
    return (1.0 - mask) * torch.finfo(dtype).min


class MaskVLAttention(nn.Module):
    """Multi-head attention (self- or cross-) dispatched through transformers' attention interface."""

    def __init__(self, config: MaskVLCrossModalConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.dropout = config.attention_probs_dropout_prob
        self.is_causal = False
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states, context=None, attention_mask=None):
        """hidden_states: (B, S_q, D); context: (B, S_k, D) or None for self-attention;
        attention_mask: additive (B, 1, 1, S_k) or None.

        Returns (output (B, S_q, D), attention weights (B, H, S_q, S_k) -- None from kernels that do not
        materialise them, e.g. sdpa)."""
        context = hidden_states if context is None else context
        batch, q_len, _ = hidden_states.shape
        query = self.q_proj(hidden_states).view(batch, q_len, self.num_heads, self.head_dim).transpose(1, 2)
        key = self.k_proj(context).view(batch, -1, self.num_heads, self.head_dim).transpose(1, 2)
        value = self.v_proj(context).view(batch, -1, self.num_heads, self.head_dim).transpose(1, 2)
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self, query, key, value, attention_mask,
            dropout=self.dropout if self.training else 0.0, scaling=self.scaling,
        )
        return self.o_proj(attn_output.reshape(batch, q_len, -1)), attn_weights  # (B, S_q, D)


class MaskVLMLP(nn.Module):
    def __init__(self, config: MaskVLCrossModalConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x):
        return self.dropout(self.fc2(self.act(self.fc1(x))))


class MaskVLFusionLayer(GradientCheckpointingLayer):
    """Pre-norm transformer layer: self-attention, optional cross-attention to a context, MLP."""

    def __init__(self, config: MaskVLCrossModalConfig, cross_attention: bool = True):
        super().__init__()
        eps = config.layer_norm_eps
        self.self_norm = nn.LayerNorm(config.hidden_size, eps=eps)
        self.self_attn = MaskVLAttention(config)
        self.cross_norm = nn.LayerNorm(config.hidden_size, eps=eps) if cross_attention else None
        self.cross_attn = MaskVLAttention(config) if cross_attention else None
        self.mlp_norm = nn.LayerNorm(config.hidden_size, eps=eps)
        self.mlp = MaskVLMLP(config)

    def forward(self, hidden_states, self_mask=None, context=None, context_mask=None):
        """hidden_states: (B, S, D); self_mask: additive mask over S; context: (B, S_c, D); context_mask over S_c.

        Returns (hidden_states (B, S, D), self-attention weights (B, H, S, S), cross-attention weights
        (B, H, S, S_c) or None without cross-attention)."""
        x = hidden_states
        attended, self_weights = self.self_attn(self.self_norm(x), attention_mask=self_mask)
        x = x + attended
        cross_weights = None
        if self.cross_attn is not None:
            attended, cross_weights = self.cross_attn(self.cross_norm(x), context=context, attention_mask=context_mask)
            x = x + attended
        x = x + self.mlp(self.mlp_norm(x))
        return x, self_weights, cross_weights


@dataclass
class MaskVLFusionOutput(ModelOutput):
    """What :class:`MaskVLFusion` returns: the last fused states of each stream and, when asked for, per layer
    hidden states (input + every layer, the last one after the final norm) and attention weights.

    Args:
        text_last_hidden_state (B, T, D), image_last_hidden_state (B, N, D): None for a stream not computed.
        text_hidden_states, image_hidden_states: tuples of L + 1 tensors (B, T, D) / (B, N, D).
        text_attentions, image_attentions: self-attention weights per layer, (B, H, T, S) / (B, H, N, S)
            with S = T (text stream), N (image stream) or T + N (single stream, whose rows are split by modality).
        text_cross_attentions (B, H, T, N), image_cross_attentions (B, H, N, T): cross-attention weights per
            layer ("cross" / "co_attention" fusion only).
    """

    text_last_hidden_state: torch.FloatTensor | None = None
    image_last_hidden_state: torch.FloatTensor | None = None
    text_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    image_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    text_attentions: tuple[torch.FloatTensor, ...] | None = None
    image_attentions: tuple[torch.FloatTensor, ...] | None = None
    text_cross_attentions: tuple[torch.FloatTensor, ...] | None = None
    image_cross_attentions: tuple[torch.FloatTensor, ...] | None = None


class _Recorder:
    """Collects per-layer states of one stream only when they were asked for."""

    def __init__(self, hidden: bool, attentions: bool, cross: bool = True):
        self.hidden = [] if hidden else None
        self.attentions = [] if attentions else None
        self.cross = [] if attentions and cross else None

    def state(self, x):
        if self.hidden is not None:
            self.hidden.append(x)

    def weights(self, self_weights, cross_weights=None):
        if self.attentions is not None:
            self.attentions.append(self_weights)
        if self.cross is not None:
            self.cross.append(cross_weights)

    def done(self, final):
        """Replace the last recorded state with the normed output (hidden_states[-1] == last_hidden_state)."""
        if self.hidden is not None:
            self.hidden[-1] = final
        as_tuple = (lambda v: tuple(v) if v is not None else None)
        return as_tuple(self.hidden), as_tuple(self.attentions), as_tuple(self.cross)


class MaskVLCrossEncoder(nn.Module):
    """A stack of fusion layers whose queries attend to a fixed context (one MaskVLM cross-modality encoder)."""

    def __init__(self, config: MaskVLCrossModalConfig, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(MaskVLFusionLayer(config) for _ in range(num_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states, self_mask, context, context_mask, recorder: _Recorder):
        recorder.state(hidden_states)
        for layer in self.layers:
            hidden_states, self_weights, cross_weights = layer(hidden_states, self_mask, context, context_mask)
            recorder.state(hidden_states)
            recorder.weights(self_weights, cross_weights)
        final = self.norm(hidden_states)
        return final, recorder.done(final)


class MaskVLFusion(nn.Module):
    """Fuses text states (B, T, D) and image states (B, N, D) into fused text and fused image states.

    ``fusion_type``:
      * "cross": text cross-encoder (text -> image) and image cross-encoder (image -> text), each attending
        to the other modality's *unimodal* states. Either side can be computed alone.
      * "co_attention": per layer, both streams attend to each other's current states (LXMERT).
      * "single_stream": self-attention over the concatenation [text; image] with modality-type embeddings.

    ``text_only=True`` builds only what the fused *text* states need (a fill-mask model): "cross" has no image
    cross-encoder, "co_attention" no last image layer and no image norm (the text stream never reads them).
    """

    def __init__(self, config: MaskVLCrossModalConfig, text_only: bool = False):
        super().__init__()
        self.fusion_type = config.fusion_type
        self.text_only = text_only
        n = config.num_hidden_layers
        if self.fusion_type == "cross":
            self.text_encoder = MaskVLCrossEncoder(config, n)
            self.image_encoder = None if text_only else MaskVLCrossEncoder(config, n)
        elif self.fusion_type == "co_attention":
            self.text_layers = nn.ModuleList(MaskVLFusionLayer(config) for _ in range(n))
            self.image_layers = nn.ModuleList(MaskVLFusionLayer(config) for _ in range(n - 1 if text_only else n))
            self.text_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
            self.image_norm = None if text_only else nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        else:
            self.modality_embeddings = nn.Embedding(2, config.hidden_size)  # 0 = text, 1 = image
            self.layers = nn.ModuleList(MaskVLFusionLayer(config, cross_attention=False) for _ in range(n))
            self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, text_states, text_mask, image_states, return_text=True, return_image=True,
                output_hidden_states=False, output_attentions=False, image_mask=None) -> MaskVLFusionOutput:
        """text_states (B, T, D), text_mask (B, T) 1 = token, image_states (B, N, D), image_mask (B, N) 1 = token
        or None (every image token is real; visible-only encoding pads rows with fewer visible patches).

        Returns a :class:`MaskVLFusionOutput`. With "cross" fusion a side that is not asked for is not computed.
        """
        if return_image and self.text_only and self.fusion_type != "single_stream":
            raise ValueError("This fusion module was built for fused text states only (text_only=True).")
        text_keys = additive_key_mask(text_mask, text_states.dtype)
        image_keys = additive_key_mask(image_mask, image_states.dtype)
        text_rec = _Recorder(output_hidden_states, output_attentions, self.fusion_type != "single_stream")
        image_rec = _Recorder(output_hidden_states, output_attentions, self.fusion_type != "single_stream")
        if self.fusion_type == "cross":
            fused_text = fused_image = None
            text_rec_out = image_rec_out = (None, None, None)
            if return_text:
                fused_text, text_rec_out = self.text_encoder(text_states, text_keys, image_states, image_keys,
                                                             text_rec)
            if return_image:
                fused_image, image_rec_out = self.image_encoder(image_states, image_keys, text_states, text_keys,
                                                                image_rec)
        elif self.fusion_type == "co_attention":
            text, image = text_states, image_states
            text_rec.state(text)
            image_rec.state(image)
            for i, text_layer in enumerate(self.text_layers):
                new_text, text_self, text_cross = text_layer(text, text_keys, image, image_keys)
                text_rec.state(new_text)
                text_rec.weights(text_self, text_cross)
                if i < len(self.image_layers):
                    image, image_self, image_cross = self.image_layers[i](image, image_keys, text, text_keys)
                    image_rec.state(image)
                    image_rec.weights(image_self, image_cross)
                text = new_text
            fused_text = self.text_norm(text)
            fused_image = self.image_norm(image) if return_image else None
            text_rec_out = text_rec.done(fused_text)
            image_rec_out = image_rec.done(fused_image) if return_image else (None, None, None)
        else:
            num_text = text_states.shape[1]
            stream = torch.cat([text_states + self.modality_embeddings.weight[0],
                                image_states + self.modality_embeddings.weight[1]], dim=1)  # (B, T + N, D)
            image_keep = text_mask.new_ones(image_states.shape[:2]) if image_mask is None else image_mask.to(text_mask)
            stream_keys = additive_key_mask(torch.cat([text_mask, image_keep], dim=1), stream.dtype)

            def record(stream):  # the next layer reads the recorded parts, so gradients reach them (probing)
                if not output_hidden_states:
                    return stream
                text_part, image_part = stream[:, :num_text], stream[:, num_text:]
                text_rec.state(text_part)
                image_rec.state(image_part)
                return torch.cat([text_part, image_part], dim=1)

            stream = record(stream)
            for layer in self.layers:
                stream, weights, _ = layer(stream, stream_keys)
                stream = record(stream)
                text_rec.weights(None if weights is None else weights[:, :, :num_text])  # (B, H, T, T + N)
                image_rec.weights(None if weights is None else weights[:, :, num_text:])  # (B, H, N, T + N)
            stream = self.norm(stream)
            fused_text, fused_image = stream[:, :num_text], stream[:, num_text:]
            text_rec_out, image_rec_out = text_rec.done(fused_text), image_rec.done(fused_image)
        return MaskVLFusionOutput(
            text_last_hidden_state=fused_text, image_last_hidden_state=fused_image,
            text_hidden_states=text_rec_out[0], image_hidden_states=image_rec_out[0],
            text_attentions=text_rec_out[1], image_attentions=image_rec_out[1],
            text_cross_attentions=text_rec_out[2], image_cross_attentions=image_rec_out[2],
        )
