"""Text masking policies: which word-pieces to mask, then BERT's 80/10/10 corruption.

Every policy is a small class around the pure functions of `masking_primitives`; they are looked
up by name in `TEXT_MASKING_POLICIES`. A policy is called on a `TextBatch` with a
`torch.Generator` and returns `(input_ids, labels)` — the corrupted ids and the targets, -100
where not masked. `policy.select(...)` returns only the (B, T) bool selection.

Policies (Bitton et al. 2021 for the class policies):

* `random` — each non-special token with probability `rate` (BERT, 0.15).
* `whole_word` — each word with probability `rate`, all of its word-pieces.
* `stop_words`, `content_words`, `objects`, `attributes`, `relationships`, `top_concrete` —
  in the default `mode="one"`: one target word per caption; every occurrence of that word (same
  word-pieces, i.e. the same lower-cased word for uncased tokenizers) is masked, each position
  with its own 80/10/10 draw.
  - `content_words`: with probability `content_prob` (0.8) a content word, else a stop-word /
    punctuation token (falls back to the other group when one is empty) — Bitton's code.
  - `objects`, `attributes`, `relationships`: a word of that class; fallback chain content words
    -> any word.
  - `stop_words`: a stop-word/punctuation token; fallback any word.
  - `top_concrete`: among the distinct non-stop-words, the 3 most concrete are chosen with
    weights 0.55/0.30/0.15 (0.75/0.25 with two, the word itself with one); uniform over all words
    if there is none.
  With `mode="rate"` a class policy instead masks `round(rate * n)` (at least 1) of the n words of
  its class in each caption — the "15% of the content words" evaluation masks; a caption with no
  word of the class gets no mask.
  Captions with no candidate never crash: the fallback taken is counted in `policy.stats`
  (keys `primary`, `fallback_content`, `fallback_any`, `no_candidate`).

Every call may take a per-row `rate=` tensor of shape (B,) (0 = leave the row unmasked; in `mode="one"` any
positive rate means "mask the one target word"). `MaskVLDataCollator` always passes one: there the joint
policy (`joint_masking`) decides every row's rate, and a policy's own `rate` (default 0.15; later work used
rates up to 0.6) is only what a call without `rate=` masks at, and what the collator's `independent` joint
policy is built with when it is given by name.
"""

from collections import Counter
from dataclasses import dataclass

import torch

from .masking_primitives import (
    TEXT_MASK_RATE,
    bernoulli_mask,
    check_rate,
    choose_one_word,
    choose_top_k_weighted,
    corrupt_tokens,
    mask_word_occurrences,
    per_row,
    whole_word_bernoulli_mask,
    whole_word_rate_mask,
    word_keys,
    word_level_features,
)
from .word_classes import ATTRIBUTE, CONTENT, OBJECT, RELATIONSHIP, STOP_OR_PUNCT

TOP_CONCRETE_WEIGHTS = {3: (0.55, 0.30, 0.15), 2: (0.75, 0.25), 1: (1.0,)}


@dataclass
class TextBatch:
    """Padded token-level features of a batch. All tensors are (B, T).

    `word_ids` is -1 for special and padding tokens (never masked). `word_class` and
    `concreteness` may be None for policies that do not need them (`random`, `whole_word`).
    """

    input_ids: torch.Tensor
    word_ids: torch.Tensor
    mask_token_id: int
    vocab_size: int
    word_class: torch.Tensor | None = None
    concreteness: torch.Tensor | None = None

    @property
    def num_words(self) -> int:
        """W, one more than the largest word index in the batch."""
        return int(self.word_ids.max().item()) + 1 if self.word_ids.numel() else 0

    def require(self, *names: str) -> None:
        """Raise a clear error when a policy needs tagged features that are missing."""
        missing = [name for name in names if getattr(self, name) is None]
        if missing:
            raise ValueError(
                f"this text masking policy needs {missing}: tag the captions with CaptionTagger "
                "(columns `token_word_class`, `token_concreteness`, `word_ids`)"
            )


class TextMaskingPolicy:
    """Base class: a selection rule plus BERT corruption (`mask_replace_prob` / `random_replace_prob`)."""

    def __init__(self, rate: float = TEXT_MASK_RATE, mask_replace_prob: float = 0.8, random_replace_prob: float = 0.1):
        if mask_replace_prob < 0 or random_replace_prob < 0 or mask_replace_prob + random_replace_prob > 1:
            raise ValueError("mask_replace_prob and random_replace_prob must be >= 0 and sum to at most 1")
        self.rate = check_rate("rate", rate)
        self.mask_replace_prob = mask_replace_prob
        self.random_replace_prob = random_replace_prob
        self.stats = Counter()

    def _repr_args(self) -> str:
        return f"rate={self.rate}"

    def __repr__(self) -> str:
        split = f"{self.mask_replace_prob:g}/{self.random_replace_prob:g}/{1 - self.mask_replace_prob - self.random_replace_prob:g}"
        return f"{self.__class__.__name__}({self._repr_args()}, split={split})"

    def select(self, batch: TextBatch, generator: torch.Generator, rate=None) -> torch.Tensor:
        """(B, T) bool: the positions to mask, row b at `rate[b]` (None: every row at `self.rate`)."""
        raise NotImplementedError

    def __call__(self, batch: TextBatch, generator: torch.Generator, rate=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Select and corrupt: returns (input_ids (B, T), labels (B, T) with -100 where not masked)."""
        selection = self.select(batch, generator, rate)
        return corrupt_tokens(
            batch.input_ids,
            selection,
            batch.mask_token_id,
            batch.vocab_size,
            generator,
            self.mask_replace_prob,
            self.random_replace_prob,
        )


class RandomTokenMasking(TextMaskingPolicy):
    """BERT: every non-special token independently with probability `rate` (default 0.15)."""

    def select(self, batch, generator, rate=None):
        rate = per_row(rate, batch.input_ids.shape[0], self.rate)
        return bernoulli_mask(batch.word_ids >= 0, rate, generator)


class WholeWordMasking(TextMaskingPolicy):
    """Every word independently with probability `rate`, all of its word-pieces together."""

    def select(self, batch, generator, rate=None):
        rate = per_row(rate, batch.input_ids.shape[0], self.rate)
        return whole_word_bernoulli_mask(batch.word_ids, batch.word_ids >= 0, rate, generator)


class WordClassMasking(TextMaskingPolicy):
    """Mask words of one class: one target word per caption (`mode="one"`) or a rate of them.

    Args:
        word_class: bit flag(s) from `word_classes` (a word qualifies if it has any of them).
        mode: "one" (Bitton et al. pre-training masks) or "rate" (evaluation masks).
        rate: fraction of the class's words in `mode="rate"` (default 0.15).
        fallbacks: flags tried in order when a caption has no word of the class ("one" mode);
            `None` in the chain means "any word".
    """

    def __init__(self, word_class: int, mode: str = "one", fallbacks=(None,), rate: float = TEXT_MASK_RATE, **kwargs):
        super().__init__(rate=rate, **kwargs)
        if mode not in ("one", "rate"):
            raise ValueError(f"mode must be 'one' or 'rate', got {mode!r}")
        self.word_class = word_class
        self.mode = mode
        self.fallbacks = tuple(fallbacks)

    def _repr_args(self) -> str:
        rate = f", rate={self.rate}" if self.mode == "rate" else ""
        return f"word_class={self.word_class}, mode={self.mode!r}{rate}"

    def _word_level(self, batch: TextBatch):
        """(word class flags (B, W), word exists (B, W))."""
        batch.require("word_class")
        num_words = batch.num_words
        classes = word_level_features(batch.word_ids, batch.word_class.long(), num_words, fill=0)
        exists = word_level_features(batch.word_ids, batch.word_ids >= 0, num_words, fill=False)
        return classes, exists

    def _candidates(self, classes, exists, flags) -> torch.Tensor:
        return exists if flags is None else exists & ((classes & flags) != 0)

    def _primary_candidates(self, classes, exists, generator) -> torch.Tensor:
        return self._candidates(classes, exists, self.word_class)

    def choose_targets(self, batch: TextBatch, generator: torch.Generator, active: torch.Tensor) -> torch.Tensor:
        """One target word index per row (B,), -1 for inactive rows or rows without any word."""
        classes, exists = self._word_level(batch)
        candidates = self._primary_candidates(classes, exists, generator)
        level = torch.zeros(candidates.shape[0], dtype=torch.long)  # 0 = primary
        for step, flags in enumerate(self.fallbacks, start=1):
            empty = ~candidates.any(dim=1)
            fallback = self._candidates(classes, exists, flags)
            candidates = torch.where(empty[:, None], fallback, candidates)
            level = torch.where(empty & fallback.any(dim=1), torch.full_like(level, step), level)
        targets = choose_one_word(candidates & active[:, None], generator)
        self._count(level, targets, active)
        return targets

    def _count(self, level, targets, active) -> None:
        names = ["primary"] + [
            "fallback_any" if flags is None else ("fallback_content" if flags == CONTENT else f"fallback_{flags}")
            for flags in self.fallbacks
        ]
        for index, name in enumerate(names):
            self.stats[name] += int(((level == index) & (targets >= 0) & active).sum())
        self.stats["no_candidate"] += int(((targets < 0) & active).sum())

    def select(self, batch, generator, rate=None):
        rate = per_row(rate, batch.input_ids.shape[0], self.rate)
        active = rate > 0
        if self.mode == "rate":
            classes, exists = self._word_level(batch)
            candidates = self._candidates(classes, exists, self.word_class) & active[:, None]
            chosen_words = whole_word_rate_mask(batch.word_ids, candidates, rate, generator)  # (B, W)
            self.stats["primary"] += int((chosen_words.any(dim=1)).sum())
            self.stats["no_candidate"] += int((active & ~candidates.any(dim=1)).sum())
            return chosen_words.gather(1, batch.word_ids.clamp(min=0)) & (batch.word_ids >= 0)
        targets = self.choose_targets(batch, generator, active)
        return mask_word_occurrences(word_keys(batch.input_ids, batch.word_ids), batch.word_ids, targets)


class StopWordMasking(WordClassMasking):
    """One stop-word / punctuation token per caption (an evaluation mask in Bitton et al.)."""

    def __init__(self, mode="one", **kwargs):
        super().__init__(STOP_OR_PUNCT, mode=mode, fallbacks=(None,), **kwargs)


class ObjectMasking(WordClassMasking):
    """One object (noun, optionally in a VG vocabulary) per caption; falls back to content words."""

    def __init__(self, mode="one", **kwargs):
        super().__init__(OBJECT, mode=mode, fallbacks=(CONTENT, None), **kwargs)


class AttributeMasking(WordClassMasking):
    """One attribute (adjective, optionally in a VG vocabulary) per caption; fallback content words."""

    def __init__(self, mode="one", **kwargs):
        super().__init__(ATTRIBUTE, mode=mode, fallbacks=(CONTENT, None), **kwargs)


class RelationshipMasking(WordClassMasking):
    """One relationship (verb / adposition) per caption; fallback content words."""

    def __init__(self, mode="one", **kwargs):
        super().__init__(RELATIONSHIP, mode=mode, fallbacks=(CONTENT, None), **kwargs)


class ContentWordMasking(WordClassMasking):
    """One word per caption: a content word with probability `content_prob` (0.8), else a
    stop-word / punctuation token; whichever group is empty falls back to the other."""

    def __init__(self, mode="one", content_prob: float = 0.8, **kwargs):
        super().__init__(CONTENT, mode=mode, fallbacks=(None,), **kwargs)
        self.content_prob = content_prob

    def _repr_args(self) -> str:
        return super()._repr_args() + f", content_prob={self.content_prob}"

    def _primary_candidates(self, classes, exists, generator):
        content = self._candidates(classes, exists, CONTENT)
        other = exists & ~content
        want_content = torch.rand(classes.shape[0], generator=generator) < self.content_prob  # (B,)
        use_content = torch.where(content.any(dim=1) & other.any(dim=1), want_content, content.any(dim=1))
        self.stats["chose_content"] += int(use_content.sum())
        return torch.where(use_content[:, None], content, other)


class TopConcreteMasking(WordClassMasking):
    """One of the 3 most concrete distinct non-stop-words, weighted 0.55/0.30/0.15 (Bitton et al.)."""

    def __init__(self, mode="one", weights=None, **kwargs):
        super().__init__(CONTENT, mode=mode, fallbacks=(None,), **kwargs)
        self.weights = dict(weights or TOP_CONCRETE_WEIGHTS)

    def _repr_args(self) -> str:
        return super()._repr_args() + f", weights={self.weights[max(self.weights)]}"

    def choose_targets(self, batch, generator, active):
        batch.require("word_class", "concreteness")
        classes, exists = self._word_level(batch)
        num_words = classes.shape[1]
        scores = word_level_features(batch.word_ids, batch.concreteness.float(), num_words, fill=0.0)
        keys_tok = word_keys(batch.input_ids, batch.word_ids)
        keys = word_level_features(batch.word_ids, keys_tok, num_words, fill=-1)  # (B, W)
        earlier = torch.ones((num_words, num_words), dtype=torch.bool).tril(diagonal=-1)  # (W, W): w' < w
        earlier_same = ((keys[:, :, None] == keys[:, None, :]) & earlier).any(dim=2)  # (B, W)
        candidates = self._candidates(classes, exists, CONTENT) & ~earlier_same & active[:, None]
        targets = choose_top_k_weighted(scores, candidates, self.weights, generator)
        fallback = choose_one_word(exists & active[:, None], generator)
        use_fallback = targets < 0
        level = use_fallback.long()
        targets = torch.where(use_fallback, fallback, targets)
        self._count(level, targets, active)
        return targets


TEXT_MASKING_POLICIES = {
    "random": RandomTokenMasking,
    "whole_word": WholeWordMasking,
    "stop_words": StopWordMasking,
    "content_words": ContentWordMasking,
    "objects": ObjectMasking,
    "attributes": AttributeMasking,
    "relationships": RelationshipMasking,
    "top_concrete": TopConcreteMasking,
}

__all__ = [
    "TextBatch",
    "TextMaskingPolicy",
    "RandomTokenMasking",
    "WholeWordMasking",
    "WordClassMasking",
    "StopWordMasking",
    "ContentWordMasking",
    "ObjectMasking",
    "AttributeMasking",
    "RelationshipMasking",
    "TopConcreteMasking",
    "TEXT_MASKING_POLICIES",
    "TOP_CONCRETE_WEIGHTS",
]
