"""Image masking policies: exact counts, block contiguity and alignment, row-major order, seeding; BEiT blocks
give the same masks as the original numpy implementation (kept below as the reference)."""

import math

import numpy as np
import pytest
import torch

from maskvl_processing import IMAGE_MASKING_POLICIES, PatchGrid
from maskvl_processing.masking_primitives import blockwise_masks


def blockwise_mask(grid, num_masked: int, generator, **settings) -> torch.Tensor:
    """One image's BEiT-style mask (N,): a batch of one of `blockwise_masks`."""
    return blockwise_masks(grid, [num_masked], generator, **settings)[0]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def components(mask2d: torch.Tensor) -> list[int]:
    """Sizes of the 4-connected components of a (H, W) bool mask."""
    h, w = mask2d.shape
    cells = {(r, c) for r in range(h) for c in range(w) if mask2d[r, c]}
    sizes = []
    while cells:
        stack = [cells.pop()]
        size = 0
        while stack:
            r, c = stack.pop()
            size += 1
            for nb in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if nb in cells:
                    cells.remove(nb)
                    stack.append(nb)
        sizes.append(size)
    return sizes


def test_registry_and_repr():
    assert set(IMAGE_MASKING_POLICIES) == {"none", "random", "block"}
    assert "ratio=0.6" in repr(IMAGE_MASKING_POLICIES["random"]())
    assert "block_pixels=32" in repr(IMAGE_MASKING_POLICIES["block"]())
    assert "BEiT" in repr(IMAGE_MASKING_POLICIES["block"](block_pixels=None))


def test_none_masks_nothing():
    grid = PatchGrid.from_image_size(64, 16)
    mask = IMAGE_MASKING_POLICIES["none"]()(8, grid, gen())
    assert mask.shape == (8, 16) and mask.dtype == torch.bool and not mask.any()


@pytest.mark.parametrize("ratio", [0.25, 0.6, 0.75])
def test_random_exact_count_and_uniform_coverage(ratio):
    grid = PatchGrid.from_image_size(224, 16)  # 14 x 14
    mask = IMAGE_MASKING_POLICIES["random"](ratio=ratio)(2000, grid, gen(1))
    assert mask.shape == (2000, 196) and mask.dtype == torch.bool
    assert (mask.sum(dim=1) == round(ratio * 196)).all()
    per_patch = mask.float().mean(dim=0)
    assert (per_patch - ratio).abs().max() < 0.05, "some patches are masked far more often than others"


def test_aligned_pixel_blocks_are_whole_and_reach_ratio():
    grid = PatchGrid.from_image_size(128, 16)  # 8 x 8 patches, 32 px blocks = 2 x 2 patches, 16 blocks
    mask = IMAGE_MASKING_POLICIES["block"](ratio=0.6, block_pixels=32)(500, grid, gen(2))
    blocks = mask.view(500, 4, 2, 4, 2).permute(0, 1, 3, 2, 4).reshape(500, 16, 4)  # (B, blocks, 4 patches)
    assert ((blocks.sum(-1) == 0) | (blocks.sum(-1) == 4)).all(), "a 32x32 block is partly masked"
    assert (blocks.all(-1).sum(-1) == round(0.6 * 16)).all()
    assert abs(mask.float().mean().item() - round(0.6 * 16) / 16) < 1e-6


def test_aligned_blocks_crop_at_the_edge():
    grid = PatchGrid(height=5, width=5, patch_size=16)  # 3 x 3 blocks of 2 x 2 patches, edges cropped
    mask = IMAGE_MASKING_POLICIES["block"](ratio=1.0, block_pixels=32)(3, grid, gen(3))
    assert mask.all()
    with pytest.raises(ValueError, match="multiple of patch_size"):
        IMAGE_MASKING_POLICIES["block"](block_pixels=24)(1, grid, gen(3))


@pytest.mark.parametrize("ratio", [0.4, 0.6])
def test_beit_blocks_are_contiguous_and_exact(ratio):
    grid = PatchGrid.from_image_size(224, 16)
    policy = IMAGE_MASKING_POLICIES["block"](ratio=ratio, block_pixels=None)
    mask = policy(200, grid, gen(4))
    target = round(ratio * 196)
    assert (mask.sum(dim=1) == target).all()
    random_mask = IMAGE_MASKING_POLICIES["random"](ratio=ratio)(200, grid, gen(4))
    block_parts = [len(components(m.view(14, 14))) for m in mask[:50]]
    random_parts = [len(components(m.view(14, 14))) for m in random_mask[:50]]
    assert sum(block_parts) * 4 < sum(random_parts), (block_parts, random_parts)
    for m in mask[:50]:
        assert min(components(m.view(14, 14))) >= 4, "a block smaller than min_block_patches"


def test_blockwise_small_targets():
    for count in (0, 1, 3, 196):
        assert int(blockwise_mask((14, 14), count, gen(count)).sum()) == count


def test_row_major_patch_order_matches_vit_flattening():
    """ViT flattens its conv patch grid as (B, C, h, w) -> (B, h*w, C): row-major."""
    grid = PatchGrid.from_image_size((64, 96), 16)  # 4 x 6 patches
    image = torch.zeros(1, 1, 64, 96)
    for r in range(4):
        for c in range(6):
            image[0, 0, r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16] = r * 6 + c
    weight = torch.full((1, 1, 16, 16), 1.0 / 256)
    embeddings = torch.nn.functional.conv2d(image, weight, stride=16).flatten(2).transpose(1, 2)  # (1, N, 1)
    assert torch.allclose(embeddings[0, :, 0], torch.arange(24.0))
    mask = IMAGE_MASKING_POLICIES["block"](ratio=1 / 6, block_pixels=32)(1, grid, gen(5))  # one 2x2 block
    masked_values = embeddings[0, mask[0], 0]
    rows, cols = (masked_values // 6).long(), (masked_values % 6).long()
    assert len(masked_values) == 4 and rows.max() - rows.min() == 1 and cols.max() - cols.min() == 1
    assert rows.min() % 2 == 0 and cols.min() % 2 == 0


@pytest.mark.parametrize("name,kwargs", [("random", {}), ("block", {}), ("block", {"block_pixels": None})])
def test_per_row_ratio_and_determinism(name, kwargs):
    grid = PatchGrid.from_image_size(128, 16)
    policy = IMAGE_MASKING_POLICIES[name](**kwargs)
    ratio = torch.tensor([0.0, 0.5, 0.75, 0.0])
    a = policy(4, grid, gen(6), ratio=ratio)
    assert not a[0].any() and not a[3].any()
    assert a[2].sum() > a[1].sum() > 0
    assert torch.equal(a, policy(4, grid, gen(6), ratio=ratio))
    many = policy(64, grid, gen(6))
    assert not torch.equal(many, policy(64, grid, gen(7)))


def test_grid_validation():
    with pytest.raises(ValueError):
        PatchGrid.from_image_size(70, 16)
    with pytest.raises(ValueError):
        IMAGE_MASKING_POLICIES["random"](ratio=1.2)


# ------------------------------------------------------------------------------------------------ BEiT reference
def reference_blockwise_mask(grid, num_masked, generator, min_block_patches=4, max_block_patches=None,
                             min_aspect=0.3, max_attempts=10):
    """The original numpy implementation of `blockwise_mask` (np.pad per grown patch), as the reference."""
    grid_h, grid_w = grid
    num_patches = grid_h * grid_w
    num_masked = max(0, min(int(num_masked), num_patches))
    max_block_patches = max_block_patches or num_masked
    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
    mask = np.zeros((grid_h, grid_w), dtype=bool)
    log_aspect = (math.log(min_aspect), math.log(1.0 / min_aspect))
    count = 0
    while count < num_masked:
        budget = num_masked - count
        upper = min(budget, max_block_patches)
        added = 0
        for u_area, u_aspect, u_top, u_left in rng.random((max_attempts, 4)).tolist():
            if upper < min_block_patches:
                break
            area = min_block_patches + u_area * (upper - min_block_patches)
            aspect = math.exp(log_aspect[0] + u_aspect * (log_aspect[1] - log_aspect[0]))
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if not (0 < h <= grid_h and 0 < w <= grid_w) or h * w < min_block_patches:
                continue
            top = int(u_top * (grid_h - h + 1))
            left = int(u_left * (grid_w - w + 1))
            window = mask[top : top + h, left : left + w]
            new = h * w - int(window.sum())
            if 0 < new <= budget:
                window[...] = True
                added = new
                break
        if added == 0:
            break
        count += added
    for _ in range(num_masked - count):
        padded = np.pad(mask, 1)
        neighbours = padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
        frontier = neighbours & ~mask if mask.any() else ~mask
        if not frontier.any():
            frontier = ~mask
        flat = np.flatnonzero(frontier)
        mask.flat[flat[rng.integers(len(flat))]] = True
    return torch.from_numpy(mask.reshape(num_patches))


BEIT_GRIDS = [(4, 4), (8, 8), (14, 14), (5, 7), (1, 9), (9, 1), (16, 3), (2, 2)]
BEIT_SETTINGS = [{}, {"min_block_patches": 1}, {"max_block_patches": 6}, {"min_aspect": 0.5, "max_attempts": 3},
                 {"min_block_patches": 16}, {"min_aspect": 1.0}]


@pytest.mark.parametrize("grid", BEIT_GRIDS)
def test_beit_masks_equal_the_reference_for_the_same_seed(grid):
    n = grid[0] * grid[1]
    for settings in BEIT_SETTINGS:
        for count in sorted({0, 1, 3, 5, n // 2, round(0.4 * n), round(0.6 * n), n - 1, n, n + 3}):
            for seed in range(3):
                ours, reference = gen(seed), gen(seed)
                got = blockwise_mask(grid, count, ours, **settings)
                want = reference_blockwise_mask(grid, count, reference, **settings)
                assert got.shape == (n,) and got.dtype == torch.bool
                assert torch.equal(got, want), (grid, settings, count, seed)
                assert torch.equal(ours.get_state(), reference.get_state())  # the same draws from the generator


@pytest.mark.parametrize("size,patch", [(32, 8), (224, 16), ((64, 96), 16)])
def test_beit_policy_equals_a_loop_of_reference_masks(size, patch):
    grid = PatchGrid.from_image_size(size, patch)
    policy = IMAGE_MASKING_POLICIES["block"](ratio=0.6, block_pixels=None)
    for ratio in (None, torch.tensor([0.0, 0.5, 0.75, 0.3, 1.0, 0.6])):
        batch = 64 if ratio is None else len(ratio)
        ours, reference = gen(11), gen(11)
        got = policy(batch, grid, ours, ratio=ratio)
        rates = torch.full((batch,), 0.6) if ratio is None else ratio
        counts = (rates * grid.num_patches).round().long().tolist()
        want = torch.stack([reference_blockwise_mask((grid.height, grid.width), c, reference) for c in counts])
        assert torch.equal(got, want)
        assert torch.equal(torch.rand(3, generator=ours), torch.rand(3, generator=reference))  # streams in step
    assert policy(0, grid, gen()).shape == (0, grid.num_patches)


def test_beit_batch_equals_single_image_calls():
    counts = torch.tensor([10, 0, 16, 3, 7])
    a, b = gen(12), gen(12)
    batch = blockwise_masks((4, 4), counts, a)
    assert torch.equal(batch, torch.stack([blockwise_mask((4, 4), int(c), b) for c in counts]))
    assert batch.sum(dim=1).tolist() == counts.tolist()


def test_beit_masks_do_not_pad_per_patch(monkeypatch):
    """The grown patches are found on a bit set of the grid, not with one `np.pad` per patch (issue 7)."""
    monkeypatch.setattr(np, "pad", lambda *args, **kwargs: pytest.fail("np.pad called"))
    mask = blockwise_mask((14, 14), 118, gen(13), min_block_patches=16)  # large blocks: the grow step adds many
    assert int(mask.sum()) == 118
