"""Small task heads on top of the fused states."""

import torch
from torch import nn
from transformers.activations import ACT2FN

from .configuration_maskvl import MaskVLCrossModalConfig
from .fusion import MaskVLFusionLayer


class MaskVLFeatureNorm(nn.BatchNorm1d):
    """Batch-centres and scales ITC features (B, D) before L2 normalisation (running statistics in eval mode).

    Trained from scratch, the towers' CLS states are nearly the same for every input (cosine 0.998-1.0
    at init on the embedded data set): the shared component dominates the ITC logits and training collapses
    every embedding onto it, with the loss stuck at ln(batch). Removing the batch mean (as the BN projection
    heads of SimCLR / MoCo v3 do) leaves only what tells the inputs apart. A batch of one in training mode
    uses the running statistics.
    """

    def __init__(self, dim: int):
        super().__init__(dim, affine=False)

    def forward(self, features):
        if self.training and features.shape[0] < 2:
            return nn.functional.batch_norm(features, self.running_mean, self.running_var, training=False,
                                            eps=self.eps)
        return super().forward(features)


class MaskVLPooler(nn.Module):
    """Pooled pair representation (B, D): tanh(dense(.)) of [fused text CLS; fused image CLS] (``pooling="pair"``)
    or of the fused text CLS alone (``pooling="text"``, ALBEF: the text stream has attended to the image)."""

    def __init__(self, hidden_size: int, pooling: str = "pair"):
        super().__init__()
        self.pooling = pooling
        self.dense = nn.Linear((2 if pooling == "pair" else 1) * hidden_size, hidden_size)

    @property
    def needs_image_stream(self) -> bool:
        return self.pooling == "pair"

    def forward(self, fused_text, fused_image=None):
        if self.pooling == "text":
            return torch.tanh(self.dense(fused_text[:, 0]))
        return torch.tanh(self.dense(torch.cat([fused_text[:, 0], fused_image[:, 0]], dim=-1)))


class MaskVLMLMHead(nn.Module):
    """BERT-style prediction head: dense -> act -> LayerNorm -> vocabulary logits."""

    def __init__(self, hidden_size: int, vocab_size: int, hidden_act: str = "gelu", eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.act = ACT2FN[hidden_act]
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.decoder = nn.Linear(hidden_size, vocab_size)

    def forward(self, hidden_states):  # (..., D) -> (..., V)
        return self.decoder(self.norm(self.act(self.dense(hidden_states))))


class MaskVLPixelDecoder(nn.Module):
    """Masked-image head: a few cross-attention blocks conditioned on text, then a linear pixel projection.

    fused image states (B, N, D) + text context (B, T, D) -> per-patch pixels (B, N, P * P * C).
    With ``num_decoder_layers == 0`` it is a LayerNorm + linear head (MLIM).
    """

    def __init__(self, config: MaskVLCrossModalConfig, patch_size: int, num_channels: int):
        super().__init__()
        self.layers = nn.ModuleList(MaskVLFusionLayer(config) for _ in range(config.num_decoder_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pixel_proj = nn.Linear(config.hidden_size, patch_size * patch_size * num_channels)

    def forward(self, image_states, text_states=None, text_keys=None):
        x = image_states
        for layer in self.layers:
            x = layer(x, None, text_states, text_keys)[0]
        return self.pixel_proj(self.norm(x))


class MaskVLITMHead(nn.Module):
    """Pooled pair (B, D) -> match / no-match logits (B, 2); index 1 = matched."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.fc = nn.Linear(hidden_size, 2)

    def forward(self, pooled):
        return self.fc(pooled)


class MaskVLAnswerHead(nn.Module):
    """VQA classifier over a fixed answer vocabulary (ViLT-style 2-layer MLP)."""

    def __init__(self, hidden_size: int, num_labels: int, eps: float = 1e-6):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden_size, 2 * hidden_size), nn.LayerNorm(2 * hidden_size, eps=eps),
                                 nn.GELU(), nn.Linear(2 * hidden_size, num_labels))

    def forward(self, pooled):
        return self.net(pooled)
