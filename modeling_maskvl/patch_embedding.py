"""MLIM's shallow convolutional patch embedder.

A stack of convolutions whose kernel equals its stride, so each output position sees exactly one
``patch_size`` x ``patch_size`` region of the image: masking one embedding hides exactly that region.
It is a drop-in replacement for ViT's linear ``patch_embeddings`` (same call, same output shape).
"""

import torch
from torch import nn


def conv_strides(patch_size: int) -> list[int]:
    """Factor a power-of-two patch size into stride-4/2 stages, e.g. 16 -> [4, 2, 2], 8 -> [2, 2, 2]."""
    strides, remaining = [], patch_size
    while remaining > 1:
        stride = 4 if remaining >= 16 and not strides else 2
        strides.append(stride)
        remaining //= stride
    return strides or [1]


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each position of a (B, C, H, W) map: never mixes patches."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvPatchEmbeddings(nn.Module):
    """(B, C, H, W) pixels -> (B, (H/P) * (W/P), D) patch embeddings, row-major patch order."""

    def __init__(self, config):
        super().__init__()
        self.image_size = config.image_size
        self.patch_size = config.patch_size
        self.num_channels = config.num_channels
        self.num_patches = (config.image_size // config.patch_size) ** 2
        strides = conv_strides(config.patch_size)
        widths = [config.hidden_size // 2 ** (len(strides) - 1 - i) for i in range(len(strides))]
        layers, in_channels = [], config.num_channels
        for i, (stride, width) in enumerate(zip(strides, widths)):
            layers.append(nn.Conv2d(in_channels, width, kernel_size=stride, stride=stride))
            if i < len(strides) - 1:
                layers += [ChannelLayerNorm(width), nn.GELU()]
            in_channels = width
        self.stem = nn.Sequential(*layers[:-1])  # all but the last conv (ViT reads projection.weight.dtype)
        self.projection = layers[-1]

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        if pixel_values.shape[1] != self.num_channels:
            raise ValueError(f"pixel_values has {pixel_values.shape[1]} channels; the model expects "
                             f"{self.num_channels}.")
        embeddings = self.projection(self.stem(pixel_values))  # (B, D, H/P, W/P)
        return embeddings.flatten(2).transpose(1, 2)  # (B, N, D)
