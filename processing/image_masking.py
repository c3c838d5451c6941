"""Image masking policies: which patches to hide, as `bool_masked_pos` (B, N), True = masked.

Patches are numbered row-major over the (H / patch_size) x (W / patch_size) grid, the order of
ViT's flattening of its conv patch embedding. The model applies the mask itself; `pixel_values`
stay unmasked. Policies wrap `masking_primitives` and are looked up in `IMAGE_MASKING_POLICIES`:

* `none` — nothing masked.
* `random` — MAE-style: exactly `round(ratio * N)` random patches per image (default 0.6).
* `block` — blockwise. `block_pixels=32` (default, MaskVLM): the grid is tiled with aligned
  32x32-pixel blocks (2x2 patches at patch size 16) and `round(ratio * #blocks)` whole blocks are
  masked. `block_pixels=None`: BEiT's blockwise generator (random rectangles of >= 4 patches,
  aspect ratio in [0.3, 3.3]) with exactly `round(ratio * N)` patches per image.

Every call may take a per-row `ratio=` tensor (B,) (0 leaves the image unmasked). `MaskVLDataCollator` always
passes one: there the joint policy (`joint_masking`) decides every row's ratio, and a policy's own `ratio` is only
what a call without `ratio=` masks at, and what the collator's `independent` joint policy is built with when it
is given by name.
"""

from dataclasses import dataclass

import torch

from .masking_primitives import (
    IMAGE_MASK_RATIO,
    aligned_block_mask,
    blockwise_masks,
    check_rate,
    per_row,
    random_patch_mask,
)


@dataclass(frozen=True)
class PatchGrid:
    """Patch grid of the processed images: `height` x `width` patches of `patch_size` pixels."""

    height: int
    width: int
    patch_size: int

    @classmethod
    def from_image_size(cls, image_size, patch_size: int) -> "PatchGrid":
        """From an image size (int or (H, W)) in pixels; both sides must be multiples of `patch_size`."""
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if h % patch_size or w % patch_size:
            raise ValueError(f"image size {(h, w)} is not a multiple of patch_size {patch_size}")
        return cls(h // patch_size, w // patch_size, patch_size)

    @property
    def num_patches(self) -> int:
        """N = height * width."""
        return self.height * self.width


class ImageMaskingPolicy:
    """Base class. `policy(batch_size, grid, generator, ratio=None)` -> (B, N) bool."""

    def __init__(self, ratio: float = IMAGE_MASK_RATIO):
        self.ratio = check_rate("ratio", ratio)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(ratio={self.ratio})"

    def __call__(self, batch_size: int, grid: PatchGrid, generator: torch.Generator, ratio=None) -> torch.Tensor:
        raise NotImplementedError


class NoImageMasking(ImageMaskingPolicy):
    """Mask nothing (text-only masking)."""

    def __init__(self, ratio: float = 0.0):
        super().__init__(ratio)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}()"

    def __call__(self, batch_size, grid, generator, ratio=None):
        return torch.zeros((batch_size, grid.num_patches), dtype=torch.bool)


class RandomPatchMasking(ImageMaskingPolicy):
    """MAE-style: exactly `round(ratio * N)` uniformly random patches per image."""

    def __call__(self, batch_size, grid, generator, ratio=None):
        ratio = per_row(ratio, batch_size, self.ratio)
        counts = (ratio * grid.num_patches).round().long()
        return random_patch_mask(batch_size, grid.num_patches, counts, generator)


class BlockMasking(ImageMaskingPolicy):
    """Blockwise masking: aligned pixel blocks (MaskVLM, `block_pixels=32`) or BEiT rectangles.

    Args:
        ratio: fraction of the image to mask (default 0.6, MaskVLM).
        block_pixels: side of the aligned square blocks in pixels (a multiple of the patch size);
            `None` selects BEiT's generator.
        min_block_patches / max_block_patches / min_aspect: BEiT generator settings.
    """

    def __init__(
        self,
        ratio: float = IMAGE_MASK_RATIO,
        block_pixels: int | None = 32,
        min_block_patches: int = 4,
        max_block_patches: int | None = None,
        min_aspect: float = 0.3,
    ):
        super().__init__(ratio)
        self.block_pixels = block_pixels
        self.min_block_patches = min_block_patches
        self.max_block_patches = max_block_patches
        self.min_aspect = min_aspect

    def __repr__(self) -> str:
        if self.block_pixels is not None:
            return f"{self.__class__.__name__}(ratio={self.ratio}, block_pixels={self.block_pixels})"
        return (
            f"{self.__class__.__name__}(ratio={self.ratio}, block_pixels=None (BEiT), "
            f"min_block_patches={self.min_block_patches}, max_block_patches={self.max_block_patches}, "
            f"min_aspect={self.min_aspect})"
        )

    def block_patches(self, grid: PatchGrid) -> int:
        """Block side in patches."""
        if self.block_pixels % grid.patch_size:
            raise ValueError(f"block_pixels={self.block_pixels} is not a multiple of patch_size={grid.patch_size}")
        return self.block_pixels // grid.patch_size

    def __call__(self, batch_size, grid, generator, ratio=None):
        ratio = per_row(ratio, batch_size, self.ratio)
        if self.block_pixels is not None:
            side = self.block_patches(grid)
            num_blocks = -(-grid.height // side) * -(-grid.width // side)
            counts = (ratio * num_blocks).round().long()
            return aligned_block_mask(batch_size, (grid.height, grid.width), (side, side), counts, generator)
        counts = (ratio * grid.num_patches).round().long()
        return blockwise_masks(
            (grid.height, grid.width),
            counts,
            generator,
            self.min_block_patches,
            self.max_block_patches,
            self.min_aspect,
        )


IMAGE_MASKING_POLICIES = {
    "none": NoImageMasking,
    "random": RandomPatchMasking,
    "block": BlockMasking,
}

__all__ = [
    "PatchGrid",
    "ImageMaskingPolicy",
    "NoImageMasking",
    "RandomPatchMasking",
    "BlockMasking",
    "IMAGE_MASKING_POLICIES",
]
