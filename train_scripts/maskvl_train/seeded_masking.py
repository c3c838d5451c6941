"""Training-time masks that depend only on (seed, epoch, example ids), and the frequency baseline.

`ExampleSeededMasking` wraps a `MaskVLDataCollator` so that the masks of a batch depend only on
(seed, epoch, the batch's example ids). A run resumed from a checkpoint then draws exactly the masks of
an uninterrupted run: the collator's own generator would restart from its seed on resume, and torch's
global generator is consumed by data-loader prefetching. `EpochCallback` tells it which epoch is starting.

`most_frequent_masked_token` runs such a collator over training examples and returns the most frequent
masked target (the frequency baseline `MaskVLPreTrainer` reports).
"""

import itertools
import math

import numpy as np
import torch
from maskvl_processing import MaskVLDataError
from maskvl_processing.masking_primitives import IGNORE_INDEX
from tqdm.auto import tqdm
from transformers import TrainerCallback


class ExampleSeededMasking:
    """Collator wrapper: every batch is masked with a generator seeded from (seed, epoch, example ids).

    Features must carry `id_column` (an int unique per example, e.g. the index from
    `datasets.map(..., with_indices=True)`); it is removed before the wrapped collator sees them.
    `epoch` is set by `EpochCallback` (added by `MaskVLPreTrainer`), so each epoch draws new masks.
    """

    def __init__(self, collator, seed: int, id_column: str = "example_id"):
        self.collator = collator
        self.seed = int(seed)
        self.id_column = id_column
        self.epoch = 0

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(seed={self.seed}, epoch={self.epoch}, collator={self.collator!r})"

    def generator_for(self, ids: list[int]) -> torch.Generator:
        """The generator of a batch of these example ids in the current epoch (the collator's own is not used)."""
        entropy = [abs(self.seed), self.epoch, *ids]
        return torch.Generator().manual_seed(int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 2))

    def __call__(self, features: list) -> dict:
        ids, stripped = [], []
        for index, feature in enumerate(features):
            if self.id_column not in feature:
                raise MaskVLDataError(
                    f"item {index} (field {self.id_column!r}): missing; available keys: {sorted(feature)}"
                )
            ids.append(int(feature[self.id_column]))
            stripped.append({key: value for key, value in feature.items() if key != self.id_column})
        try:
            return self.collator(stripped, generator=self.generator_for(ids))
        except MaskVLDataError as error:  # "item i" is the position in the batch: name the examples too
            raise MaskVLDataError(f"{error} [batch items 0..{len(ids) - 1} are examples {ids}]") from error


class EpochCallback(TrainerCallback):
    """Tells an `ExampleSeededMasking` collator which epoch is starting (also after a resume)."""

    def __init__(self, masking: ExampleSeededMasking):
        self.masking = masking

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.masking.epoch = int(math.floor((state.epoch or 0.0) + 1e-6))


def most_frequent_masked_token(dataset, masking, num_examples: int, batch_size: int = 64) -> tuple[int, float]:
    """Run `masking` (an `ExampleSeededMasking`) over the first `num_examples` examples of `dataset` and
    return (the most frequent masked target id, its share of the masked targets).

    Images are not loaded (zero `pixel_values` stand in): only the text masks matter here.
    """
    grid = masking.collator.grid
    blank = np.zeros((3, grid.height * grid.patch_size, grid.width * grid.patch_size), dtype=np.float32)
    columns = ("input_ids", "word_ids", "token_word_class", "token_concreteness", masking.id_column)
    rows = itertools.islice(iter(dataset), num_examples)
    counts = torch.zeros(len(masking.collator.tokenizer), dtype=torch.long)
    progress = tqdm(total=num_examples, desc="Frequency baseline (masked targets)", unit="ex", leave=False)
    while True:
        chunk = [{**{k: row[k] for k in columns if k in row}, "pixel_values": blank} for row in itertools.islice(rows, batch_size)]
        if not chunk:
            break
        labels = masking(chunk)["labels"]
        counts += torch.bincount(labels[labels != IGNORE_INDEX], minlength=len(counts))
        progress.update(len(chunk))
    progress.close()
    if counts.sum() == 0:
        raise ValueError("the masking policy masked no text token in the training examples; check the masking options")
    token_id = int(counts.argmax())
    return token_id, float(counts[token_id] / counts.sum())


__all__ = ["EpochCallback", "ExampleSeededMasking", "most_frequent_masked_token"]
