"""Convolutional patch embedders, drop-in replacements for ViT's linear ``patch_embeddings`` (same call, same
output shape; their shared attributes and call in :class:`ConvEmbeddingsBase`).

* :class:`ConvPatchEmbeddings` -- MLIM's shallow stack of convolutions whose kernel equals its stride, so each
  output position sees exactly one ``patch_size`` x ``patch_size`` region of the image: masking one embedding
  hides exactly that region.
* :class:`ConvStemPatchEmbeddings` -- early 3x3 convolutions (overlapping kernels).
"""

import torch
from torch import nn

from .configuration_maskvl import conv_stem_stages


def conv_strides(patch_size: int) -> list[int]:
    """Factor a power-of-two patch size into stride-4/2 stages, e.g. 16 -> [4, 2, 2], 8 -> [2, 2, 2]."""
    strides, remaining = [], patch_size
    while remaining > 1:
        stride = 4 if remaining >= 16 and not strides else 2
        strides.append(stride)
        remaining //= stride
    return strides or [1]


def conv_stem_channels(config) -> list[int]:
    """The stage widths of :class:`ConvStemPatchEmbeddings`: ``config.conv_stem_channels`` or the default rule."""
    stages = conv_stem_stages(config.patch_size)
    channels = getattr(config, "conv_stem_channels", None)
    if channels is None:
        return [max(16, config.hidden_size // 2 ** (stages - i)) for i in range(stages)]
    return list(channels)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each position of a (B, C, H, W) map: never mixes patches."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvEmbeddingsBase(nn.Module):
    """What the convolutional patch embedders share: ViT's patch-embedding attributes and call.

    A subclass builds ``self.stem`` (a (B, C, H, W) -> (B, D', H/P, W/P) module) and ``self.projection`` (the
    last convolution, to the hidden size D: ViT reads ``projection.weight.dtype``).
    """

    def __init__(self, config):
        super().__init__()
        self.image_size = config.image_size
        self.patch_size = config.patch_size
        self.num_channels = config.num_channels
        self.num_patches = (config.image_size // config.patch_size) ** 2

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        if pixel_values.shape[1] != self.num_channels:
            raise ValueError(f"pixel_values has {pixel_values.shape[1]} channels; the model expects "
                             f"{self.num_channels}.")
        embeddings = self.projection(self.stem(pixel_values))  # (B, D, H/P, W/P)
        return embeddings.flatten(2).transpose(1, 2)  # (B, N, D)


class ConvPatchEmbeddings(ConvEmbeddingsBase):
    """(B, C, H, W) pixels -> (B, (H/P) * (W/P), D) patch embeddings, row-major patch order."""

    def __init__(self, config):
        super().__init__(config)
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


class ConvStemPatchEmbeddings(ConvEmbeddingsBase):
    """Early convolutions (Xiao et al., 2021, "Early Convolutions Help Transformers See Better"): log2(P) stages
    of 3x3 stride-2 convolution + normalisation + GELU, then a 1x1 convolution to the hidden size.
    (B, C, H, W) pixels -> (B, (H/P) * (W/P), D), row-major patch order, a drop-in for ViT's patch embeddings.

    Two fields of the vision config shape it (read with defaults, so older configs load unchanged):

    * ``conv_stem_channels`` (list of log2(P) ints, or None): the width of each stage; None = ``hidden_size / 2 **
      (stages - i)``, at least 16 (16, 16, 16, 32 for width 64 and P = 16);
    * ``conv_stem_norm`` ("layer" | "batch"): channel LayerNorm (per position, never mixes images) or BatchNorm
      (Xiao et al.'s choice; running statistics at evaluation, so a single image is scored as in a batch).

    Unlike :class:`ConvPatchEmbeddings` the 3x3 kernels overlap, so an embedding also sees a few pixels of its
    neighbouring patches (at most ``2 ** stages - 1`` pixels across a border): edges and corners -- what a small
    ViT needs to tell shapes apart -- are found before the transformer. A masked patch's own embedding is still
    replaced by the mask token (or left out) downstream.
    """

    def __init__(self, config):
        super().__init__(config)
        widths = conv_stem_channels(config)
        norm = nn.BatchNorm2d if getattr(config, "conv_stem_norm", "layer") == "batch" else ChannelLayerNorm
        layers, in_channels = [], config.num_channels
        for width in widths:
            layers += [nn.Conv2d(in_channels, width, kernel_size=3, stride=2, padding=1, bias=False),
                       norm(width), nn.GELU()]
            in_channels = width
        self.stem = nn.Sequential(*layers)
        self.projection = nn.Conv2d(in_channels, config.hidden_size, kernel_size=1)  # ViT reads projection.weight
