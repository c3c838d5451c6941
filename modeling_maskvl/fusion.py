"""Cross-modal fusion: attention, one pre-norm transformer layer, and the three fusion modules.

Shapes: B batch, T text tokens, N image tokens (CLS + patches), D fusion width, H heads.
Attention masks passed around here are *key padding* masks of shape (B, S) with 1 = keep, or None.
"""

from typing import Callable

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

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
        attention_mask: additive (B, 1, 1, S_k) or None."""
        context = hidden_states if context is None else context
        batch, q_len, _ = hidden_states.shape
        query = self.q_proj(hidden_states).view(batch, q_len, self.num_heads, self.head_dim).transpose(1, 2)
        key = self.k_proj(context).view(batch, -1, self.num_heads, self.head_dim).transpose(1, 2)
        value = self.v_proj(context).view(batch, -1, self.num_heads, self.head_dim).transpose(1, 2)
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, _ = attention_interface(
            self, query, key, value, attention_mask,
            dropout=self.dropout if self.training else 0.0, scaling=self.scaling,
        )
        return self.o_proj(attn_output.reshape(batch, q_len, -1))  # (B, S_q, D)


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
        """hidden_states: (B, S, D); self_mask: additive mask over S; context: (B, S_c, D); context_mask over S_c."""
        x = hidden_states
        x = x + self.self_attn(self.self_norm(x), attention_mask=self_mask)
        if self.cross_attn is not None:
            x = x + self.cross_attn(self.cross_norm(x), context=context, attention_mask=context_mask)
        x = x + self.mlp(self.mlp_norm(x))
        return x


class MaskVLCrossEncoder(nn.Module):
    """A stack of fusion layers whose queries attend to a fixed context (one MaskVLM cross-modality encoder)."""

    def __init__(self, config: MaskVLCrossModalConfig, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(MaskVLFusionLayer(config) for _ in range(num_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states, self_mask, context, context_mask):
        for layer in self.layers:
            hidden_states = layer(hidden_states, self_mask, context, context_mask)
        return self.norm(hidden_states)


class MaskVLFusion(nn.Module):
    """Fuses text states (B, T, D) and image states (B, N, D) into fused text and fused image states.

    ``fusion_type``:
      * "cross": text cross-encoder (text -> image) and image cross-encoder (image -> text), each attending
        to the other modality's *unimodal* states. Either side can be computed alone.
      * "co_attention": per layer, both streams attend to each other's current states (LXMERT).
      * "single_stream": self-attention over the concatenation [text; image] with modality-type embeddings.
    """

    def __init__(self, config: MaskVLCrossModalConfig):
        super().__init__()
        self.fusion_type = config.fusion_type
        n = config.num_hidden_layers
        if self.fusion_type == "cross":
            self.text_encoder = MaskVLCrossEncoder(config, n)
            self.image_encoder = MaskVLCrossEncoder(config, n)
        elif self.fusion_type == "co_attention":
            self.text_layers = nn.ModuleList(MaskVLFusionLayer(config) for _ in range(n))
            self.image_layers = nn.ModuleList(MaskVLFusionLayer(config) for _ in range(n))
            self.text_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
            self.image_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        else:
            self.modality_embeddings = nn.Embedding(2, config.hidden_size)  # 0 = text, 1 = image
            self.layers = nn.ModuleList(MaskVLFusionLayer(config, cross_attention=False) for _ in range(n))
            self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, text_states, text_mask, image_states, return_text=True, return_image=True):
        """text_states (B, T, D), text_mask (B, T) 1 = token, image_states (B, N, D).

        Returns (fused_text (B, T, D) or None, fused_image (B, N, D) or None). With "cross" fusion a side
        that is not asked for is not computed.
        """
        text_keys = additive_key_mask(text_mask, text_states.dtype)
        if self.fusion_type == "cross":
            fused_text = self.text_encoder(text_states, text_keys, image_states, None) if return_text else None
            fused_image = self.image_encoder(image_states, None, text_states, text_keys) if return_image else None
            return fused_text, fused_image
        if self.fusion_type == "co_attention":
            text, image = text_states, image_states
            for text_layer, image_layer in zip(self.text_layers, self.image_layers):
                text, image = (text_layer(text, text_keys, image, None),
                               image_layer(image, None, text, text_keys))
            return self.text_norm(text), self.image_norm(image)
        num_text = text_states.shape[1]
        stream = torch.cat([text_states + self.modality_embeddings.weight[0],
                            image_states + self.modality_embeddings.weight[1]], dim=1)  # (B, T + N, D)
        image_keep = text_mask.new_ones(image_states.shape[:2])
        stream_keys = additive_key_mask(torch.cat([text_mask, image_keep], dim=1), stream.dtype)
        for layer in self.layers:
            stream = layer(stream, stream_keys)
        stream = self.norm(stream)
        return stream[:, :num_text], stream[:, num_text:]
