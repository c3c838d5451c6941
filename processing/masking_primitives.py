"""Masking primitives: pure functions of tensors and a `torch.Generator`, each written once.

Conventions (as in MAE / BEiT): a mask is a bool tensor, True = masked. Text tensors are (B, T)
over word-pieces; word-level tensors are (B, W) over word indices (`word_ids`, -1 = no word);
image masks are (B, N) over patches in row-major order (ViT's flattening of the conv grid).
All randomness comes from the `generator` argument, so the same seed gives the same masks.
The policy classes in `text_masking`, `image_masking`, `joint_masking` and `itm_negatives`
are thin wrappers around these; the default rates and the rate check they share are here too.
"""

import math
import numbers

import numpy as np
import torch

IGNORE_INDEX = -100
TEXT_MASK_RATE = 0.15  # BERT: the default text masking rate
IMAGE_MASK_RATIO = 0.6  # MaskVLM: the default image masking ratio


def check_rate(name: str, value) -> float:
    """`value` as a float, or a ValueError naming it unless it is a number in [0, 1] (every policy's rate)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def per_row(value, batch_size: int, default: float | None = None) -> torch.Tensor:
    """A rate as a (B,) float tensor: a float, a one-element tensor, a (B,) tensor, or None (then `default`).
    The one helper of every policy that takes a per-row masking rate (the joint policies plan them per row)."""
    if value is None:
        value = default
    if isinstance(value, torch.Tensor):
        return value.float().reshape(-1).expand(batch_size).clone() if value.numel() == 1 else value.float()
    return torch.full((batch_size,), float(value))


def bernoulli_mask(candidates: torch.Tensor, rate, generator: torch.Generator) -> torch.Tensor:
    """Mask each candidate position independently with probability `rate` (float or (B,)). (B, T) bool."""
    rate = per_row(rate, candidates.shape[0])
    draws = torch.rand(candidates.shape, generator=generator)  # (B, T)
    return candidates & (draws < rate[:, None])


def exact_count_mask(candidates: torch.Tensor, counts: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mask exactly `min(counts[b], #candidates[b])` candidate positions per row, uniformly. (B, N) bool."""
    noise = torch.rand(candidates.shape, generator=generator)  # (B, N)
    noise = noise.masked_fill(~candidates, 2.0)  # non-candidates sort last
    ranks = noise.argsort(dim=1).argsort(dim=1)  # rank of each position in its row
    return candidates & (ranks < counts.to(torch.long)[:, None])


def word_level_features(word_ids: torch.Tensor, values: torch.Tensor, num_words: int, fill=0) -> torch.Tensor:
    """Scatter token values onto words: (B, T) -> (B, W), the max over each word's tokens.

    All tokens of a word carry the same value in the tagged features, so the max just collects it.
    Positions with word id -1 are ignored; words without tokens get `fill`.
    """
    batch = word_ids.shape[0]
    valid = word_ids >= 0
    index = word_ids.clamp(min=0)
    work = values.to(torch.int64) if values.dtype == torch.bool else values
    low = torch.finfo(work.dtype).min if work.is_floating_point() else torch.iinfo(work.dtype).min
    present = torch.zeros((batch, num_words), dtype=torch.int64).scatter_reduce(1, index, valid.long(), "amax")
    out = torch.full((batch, num_words), low, dtype=work.dtype)
    out = out.scatter_reduce(1, index, work.masked_fill(~valid, low), "amax")  # (B, W)
    out = out.masked_fill(present == 0, fill)
    return out.bool() if values.dtype == torch.bool else out


def whole_word_bernoulli_mask(word_ids: torch.Tensor, candidates: torch.Tensor, rate, generator) -> torch.Tensor:
    """Pick each candidate *word* with probability `rate`; mask all of its word-pieces. (B, T) bool."""
    batch, _ = word_ids.shape
    num_words = int(word_ids.max().item()) + 1 if word_ids.numel() else 0
    if num_words <= 0:
        return torch.zeros_like(candidates)
    rate = per_row(rate, batch)
    picked_words = torch.rand((batch, num_words), generator=generator) < rate[:, None]  # (B, W)
    picked = picked_words.gather(1, word_ids.clamp(min=0))  # (B, T)
    return candidates & picked & (word_ids >= 0)


def whole_word_rate_mask(word_ids, candidate_words: torch.Tensor, rate, generator) -> torch.Tensor:
    """Pick `round(rate * #candidate words)` candidate words per row (at least one if any). (B, W) bool."""
    rate = per_row(rate, candidate_words.shape[0])
    available = candidate_words.sum(dim=1).float()
    counts = torch.where(available > 0, (rate * available).round().clamp(min=1), torch.zeros_like(available))
    counts = torch.where(rate > 0, counts, torch.zeros_like(counts))
    return exact_count_mask(candidate_words, counts.long(), generator)


def choose_one_word(candidate_words: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Pick one candidate word per row uniformly; -1 where a row has no candidate. (B,) long."""
    scores = torch.rand(candidate_words.shape, generator=generator).masked_fill(~candidate_words, -1.0)
    best = scores.argmax(dim=1)
    return torch.where(candidate_words.any(dim=1), best, torch.full_like(best, -1))


def choose_top_k_weighted(
    word_scores: torch.Tensor, candidate_words: torch.Tensor, weights_by_count: dict, generator: torch.Generator
) -> torch.Tensor:
    """Rank candidate words by score and pick one of the top k with count-dependent weights. (B,) long.

    `weights_by_count[n]` gives the weights when a row has n ranked candidates (n = 1..k), e.g.
    {3: (0.55, 0.30, 0.15), 2: (0.75, 0.25), 1: (1.0,)} (Bitton et al.'s top-concrete). Rows with
    no candidate get -1. Ties in score are broken by word position (earlier first).
    """
    k = max(weights_by_count)
    batch, num_words = word_scores.shape
    if num_words == 0:
        return torch.full((batch,), -1, dtype=torch.long)
    k_eff = min(k, num_words)
    position_bias = torch.arange(num_words, dtype=torch.float64) * 1e-9  # stable tie-breaking
    scores = word_scores.double() - position_bias
    scores = scores.masked_fill(~candidate_words, -math.inf)
    top_scores, top_words = scores.topk(k_eff, dim=1)  # (B, k)
    available = torch.isfinite(top_scores).sum(dim=1)  # (B,)
    weight_table = torch.zeros((k + 1, k_eff))
    for n, weights in weights_by_count.items():
        weight_table[n, : min(n, k_eff)] = torch.tensor(weights[:k_eff], dtype=torch.float32)
    weights = weight_table[available.clamp(max=k)]  # (B, k)
    has_any = available > 0
    weights[~has_any, 0] = 1.0  # dummy, replaced by -1 below
    slot = torch.multinomial(weights, 1, generator=generator).squeeze(1)  # (B,)
    chosen = top_words.gather(1, slot[:, None]).squeeze(1)
    return torch.where(has_any, chosen, torch.full_like(chosen, -1))


def word_keys(input_ids: torch.Tensor, word_ids: torch.Tensor) -> torch.Tensor:
    """A hash per token of its whole word's word-piece sequence, so equal words share a key. (B, T) long.

    Same word-pieces = same word (for uncased tokenizers: same lower-cased word). Tokens without
    a word get key -1. Polynomial hash of the piece ids in int64 (wrap-around is deterministic).
    """
    batch, length = input_ids.shape
    valid = word_ids >= 0
    index = word_ids.clamp(min=0)
    positions = torch.arange(length).expand(batch, length)
    num_words = max(int(word_ids.max().item()) + 1, 1) if word_ids.numel() else 1
    first = torch.full((batch, num_words), length, dtype=torch.long)
    first = first.scatter_reduce(1, index, positions.masked_fill(~valid, length), "amin")
    offset = positions - first.gather(1, index)  # piece position inside its word
    base = torch.tensor(1_000_003, dtype=torch.long)
    powers = base.pow(offset.clamp(min=0, max=62))  # wraps deterministically in int64
    contributions = ((input_ids.long() + 1) * powers).masked_fill(~valid, 0)
    keys = torch.zeros((batch, num_words), dtype=torch.long).scatter_add(1, index, contributions)
    return torch.where(valid, keys.gather(1, index), torch.full_like(input_ids, -1, dtype=torch.long))


def mask_word_occurrences(keys: torch.Tensor, word_ids: torch.Tensor, target_words: torch.Tensor) -> torch.Tensor:
    """Mask every token whose word equals row b's target word (`target_words[b]`, -1 = none). (B, T) bool."""
    has_target = target_words >= 0
    target_position = (word_ids == target_words[:, None]) & has_target[:, None]  # (B, T)
    # key of the target word: any of its tokens carries it
    target_key = torch.where(target_position, keys, torch.full_like(keys, torch.iinfo(torch.long).min)).amax(dim=1)
    return (keys == target_key[:, None]) & (word_ids >= 0) & has_target[:, None]


def corrupt_tokens(
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    generator: torch.Generator,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT corruption of the masked positions: each one independently becomes [MASK] with
    `mask_replace_prob`, a random token with `random_replace_prob`, else stays. Returns
    (corrupted input_ids (B, T), labels (B, T) with -100 where not masked)."""
    labels = torch.where(mask, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    draws = torch.rand(input_ids.shape, generator=generator)  # (B, T)
    to_mask = mask & (draws < mask_replace_prob)
    to_random = mask & (draws >= mask_replace_prob) & (draws < mask_replace_prob + random_replace_prob)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, dtype=input_ids.dtype)
    corrupted = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    corrupted = torch.where(to_random, random_ids, corrupted)
    return corrupted, labels


def random_patch_mask(batch_size: int, num_patches: int, counts: torch.Tensor, generator) -> torch.Tensor:
    """MAE-style: exactly `counts[b]` random patches masked in image b. (B, N) bool."""
    candidates = torch.ones((batch_size, num_patches), dtype=torch.bool)
    return exact_count_mask(candidates, counts, generator)


def aligned_block_mask(
    batch_size: int, grid: tuple[int, int], block: tuple[int, int], block_counts: torch.Tensor, generator
) -> torch.Tensor:
    """MaskVLM-style: tile the patch grid with aligned blocks of `block` (h, w) patches and mask
    exactly `block_counts[b]` whole blocks of image b. Edge blocks are cropped. (B, N) bool."""
    grid_h, grid_w = grid
    block_h, block_w = block
    blocks_h, blocks_w = math.ceil(grid_h / block_h), math.ceil(grid_w / block_w)
    chosen = random_patch_mask(batch_size, blocks_h * blocks_w, block_counts, generator)  # (B, bh*bw)
    chosen = chosen.view(batch_size, blocks_h, blocks_w)
    full = chosen.repeat_interleave(block_h, dim=1).repeat_interleave(block_w, dim=2)  # (B, bh*h, bw*w)
    return full[:, :grid_h, :grid_w].reshape(batch_size, grid_h * grid_w)


def blockwise_masks(
    grid: tuple[int, int],
    num_masked,
    generator: torch.Generator,
    min_block_patches: int = 4,
    max_block_patches: int | None = None,
    min_aspect: float = 0.3,
    max_attempts: int = 10,
) -> torch.Tensor:
    """BEiT-style blockwise masks: row b has exactly `num_masked[b]` patches (a list or (B,) tensor). (B, N) bool.

    Rectangles of random area in [min_block_patches, max_block_patches] and log-uniform aspect
    ratio are placed until no more fit (BEiT's algorithm); any shortfall (< min_block_patches) is
    then filled with patches 4-adjacent to the mask, so every patch touches a block. The loop runs
    on a bit set of the grid with a numpy generator seeded by one 62-bit draw from `generator` per row
    (in row order), so a batch is the same as a loop of one-row calls.
    """
    grid_h, grid_w = grid
    num_patches = grid_h * grid_w
    counts = num_masked.tolist() if isinstance(num_masked, torch.Tensor) else list(num_masked)
    seeds = torch.randint(2**62, (len(counts),), generator=generator).tolist() if counts else []
    layout = _GridBits(grid_h, grid_w)
    rows = [
        layout.blockwise(max(0, min(int(count), num_patches)), np.random.default_rng(seed), min_block_patches,
                         max_block_patches, min_aspect, max_attempts)
        for count, seed in zip(counts, seeds)
    ]
    return layout.to_tensor(rows)


class _GridBits:
    """Masks of a (H, W) patch grid as Python ints: bit r * W + c = patch (r, c) (row-major), set = masked.

    A block is a few integer operations and its overlap with the mask a `bit_count`, which is much
    cheaper than numpy calls on grids this small."""

    def __init__(self, height: int, width: int):
        self.height, self.width = height, width
        self.num_patches = height * width
        self.full = (1 << self.num_patches) - 1
        first_column = sum(1 << (r * width) for r in range(height))  # bit (r, 0) of every row
        self.not_first_column = self.full & ~first_column
        self.not_last_column = self.full & ~(first_column << max(width - 1, 0))
        self.column_stack = [sum(1 << (r * width) for r in range(h)) for h in range(height + 1)]  # h rows, column 0

    def block(self, top: int, left: int, h: int, w: int) -> int:
        """Bits of the h x w rectangle with top-left patch (top, left)."""
        return (((1 << w) - 1) * self.column_stack[h]) << (top * self.width + left)

    def blockwise(self, num_masked: int, rng: np.random.Generator, min_block_patches: int,
                  max_block_patches: int | None, min_aspect: float, max_attempts: int) -> int:
        """One BEiT-style mask with exactly `num_masked` patches, drawing from `rng` (see `blockwise_masks`)."""
        grid_h, grid_w = self.height, self.width
        max_block_patches = max_block_patches or num_masked
        mask = 0
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
                    continue  # rounding can shrink a block below the minimum: redraw
                top = int(u_top * (grid_h - h + 1))
                left = int(u_left * (grid_w - w + 1))
                block = self.block(top, left, h, w)
                new = h * w - (mask & block).bit_count()
                if 0 < new <= budget:
                    mask |= block
                    added = new
                    break
            if added == 0:
                break
            count += added
        for _ in range(num_masked - count):
            mask |= self._grow_one(mask, rng)
        return mask

    def _grow_one(self, mask: int, rng: np.random.Generator) -> int:
        """The bit of one random patch 4-adjacent to `mask` (any unmasked patch if there is none or `mask` is empty)."""
        free = self.full & ~mask
        frontier = free
        if mask:
            neighbours = ((mask << self.width) | (mask >> self.width) | ((mask << 1) & self.not_first_column)
                          | ((mask >> 1) & self.not_last_column))
            frontier = (neighbours & free) or free
        for _ in range(int(rng.integers(frontier.bit_count()))):  # the k-th candidate in row-major order
            frontier &= frontier - 1
        return frontier & -frontier

    def to_tensor(self, masks: list[int]) -> torch.Tensor:
        """(B, N) bool from the bit sets."""
        num_bytes = max(1, -(-self.num_patches // 8))
        raw = np.frombuffer(b"".join(m.to_bytes(num_bytes, "little") for m in masks), dtype=np.uint8)
        bits = np.unpackbits(raw.reshape(len(masks), num_bytes), axis=1, bitorder="little")[:, : self.num_patches]
        return torch.from_numpy(bits.astype(bool))


def derangement(n: int, generator: torch.Generator, max_tries: int = 1000) -> torch.Tensor:
    """A uniformly random permutation of range(n) with no fixed point (n >= 2). (n,) long."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 elements, got {n}")
    identity = torch.arange(n)
    for _ in range(max_tries):
        perm = torch.randperm(n, generator=generator)
        if not (perm == identity).any():
            return perm
    return torch.roll(identity, 1)  # unreachable in practice (P(fail) ~ e^-1000)


def sample_modes(batch_size: int, probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Draw one mode index per row from the categorical `probs` (M,). (B,) long."""
    return torch.multinomial(probs.float().expand(batch_size, -1), 1, generator=generator).squeeze(1)


__all__ = [
    "IGNORE_INDEX",
    "TEXT_MASK_RATE",
    "IMAGE_MASK_RATIO",
    "check_rate",
    "per_row",
    "bernoulli_mask",
    "exact_count_mask",
    "word_level_features",
    "whole_word_bernoulli_mask",
    "whole_word_rate_mask",
    "choose_one_word",
    "choose_top_k_weighted",
    "word_keys",
    "mask_word_occurrences",
    "corrupt_tokens",
    "random_patch_mask",
    "aligned_block_mask",
    "blockwise_masks",
    "derangement",
    "sample_modes",
]
