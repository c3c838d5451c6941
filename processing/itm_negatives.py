"""Image-text matching (ITM) negatives from inside the batch: swapped images (`ImageSwapNegatives`, the pair is
replaced) or extra mismatched pairs (`InBatchNegatives`, ALBEF / MaskVLM: every pair stays a true pair).

`ImageSwapNegatives`:

Each row is chosen with probability `prob` (default 0.5); the chosen rows exchange images by a
uniformly random derangement, so no chosen row keeps its own image. Labels: `itm_labels[b] = 1`
for a true pair, 0 for a swapped one. If exactly one row is chosen (a derangement of one row is
impossible) a second random row joins it; if the batch has one row nothing is swapped.

A swapped pair is never a true pair: rows are compared as *examples* (by batch position), or by
`group_ids` when given (e.g. COCO's `image_id`, since five captions share one image) — a row whose
new image has its own group id is relabelled 1 (it is a true pair) and counted in
`stats["same_group"]`. Pixel content is not compared: two different examples with byte-identical
images still count as a negative unless they share a group id.
"""

from collections import Counter

import torch

from .masking_primitives import derangement


class ImageSwapNegatives:
    """`negatives(batch_size, generator, group_ids=None)` -> (image_index (B,) long, itm_labels (B,) long).

    `pixel_values[image_index]` gives the batch's images after swapping.
    """

    def __init__(self, prob: float = 0.5):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.prob = prob
        self.stats = Counter()

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(prob={self.prob})"

    def __call__(
        self, batch_size: int, generator: torch.Generator, group_ids=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image_index = torch.arange(batch_size)
        chosen = torch.rand(batch_size, generator=generator) < self.prob  # (B,)
        if int(chosen.sum()) == 1 and batch_size > 1:
            others = (~chosen).nonzero().squeeze(1)
            chosen[others[torch.randint(len(others), (1,), generator=generator)]] = True
        rows = chosen.nonzero().squeeze(1)
        if len(rows) >= 2:
            image_index[rows] = rows[derangement(len(rows), generator)]
        itm_labels = (image_index == torch.arange(batch_size)).long()
        if group_ids is not None:
            codes: dict = {}
            groups = torch.tensor([codes.setdefault(group, len(codes)) for group in group_ids])
            same = (groups[image_index] == groups) & (itm_labels == 0)
            self.stats["same_group"] += int(same.sum())
            itm_labels[same] = 1
        self.stats["pairs"] += batch_size
        self.stats["negatives"] += int((itm_labels == 0).sum())
        return image_index, itm_labels


class InBatchNegatives:
    """ALBEF / MaskVLM-style ITM negatives *in addition to* the true pairs:
    `negatives(batch_size, generator, group_ids=None)` -> `itm_negative_index` (B,) long.

    Every row stays a true pair (so MLM, MIM and ITC keep the whole batch); row b is also scored by ITM
    against the image of row `itm_negative_index[b]`, a uniformly random derangement (never its own image).
    With `group_ids`, a row whose drawn image shares its group (the same image, another caption) gets -1: no
    negative for it (counted in `stats["same_group"]`). A batch of one row has no negative (-1).
    """

    def __init__(self):
        self.stats = Counter()

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}()"

    def __call__(self, batch_size: int, generator: torch.Generator, group_ids=None) -> torch.Tensor:
        if batch_size < 2:
            return torch.full((batch_size,), -1, dtype=torch.long)
        index = derangement(batch_size, generator)  # (B,), index[b] != b
        if group_ids is not None:
            codes: dict = {}
            groups = torch.tensor([codes.setdefault(group, len(codes)) for group in group_ids])
            same = groups[index] == groups
            self.stats["same_group"] += int(same.sum())
            index = index.masked_fill(same, -1)
        self.stats["pairs"] += batch_size
        self.stats["negatives"] += int((index >= 0).sum())
        return index


__all__ = ["ImageSwapNegatives", "InBatchNegatives"]
