"""`MaskVLDataCollator`: tagged features -> exactly the arguments of `MaskVLForPreTraining.forward`.

Per batch it: loads and processes the images (image processor, on the fly), pads the tagged text,
asks the joint policy how much of each modality to mask per pair, applies the text policy (with
BERT's 80/10/10 corruption) and the image policy, and optionally swaps images for ITM negatives.
The joint policy is the one owner of the per-row rates: the text and image policies mask each row at the rate
of its plan (see `joint_masking`).

Returned keys (all torch tensors):

* `input_ids` (B, T) long — masking applied; `attention_mask` (B, T) long;
* `pixel_values` (B, 3, H, W) float — *unmasked* (the model applies `bool_masked_pos` itself);
  after the ITM swap when negatives are on;
* `bool_masked_pos` (B, N) bool — True = masked patch, row-major, N = (H / patch) * (W / patch);
* `labels` (B, T) long — original ids at masked positions, -100 elsewhere;
* `itm_labels` (B,) long — only with swapping `itm_negatives`: 1 = true pair, 0 = swapped image;
* `itm_negative_index` (B,) long — only with `itm_negatives="in_batch"` (ALBEF / MaskVLM): row b is ALSO scored
  by ITM against the image of row `itm_negative_index[b]` (-1: no negative); every pair stays a true pair;
* `patch_drop_noise` (B, N) float in [0, 1) — only with `patch_drop_noise=True`: the randomness of FLIP-style
  patch dropping (`MaskVLConfig.patch_drop_ratio`; the model keeps the patches of smallest noise), drawn after
  every other draw, so turning it on changes no mask.

Text is padded to the batch's longest (truncated) caption, not to `max_length` (captions of 10-20 tokens make
batches of 10-20 columns under `max_length=40`); `pad_to_multiple_of` rounds that width up.

For a swapped (negative) pair `labels` is all -100 by default (`mlm_on_negatives=False`): its text
cannot be reconstructed from the wrong image. Its masks are still drawn like any other pair so
that masking does not reveal the ITM label; the model should restrict MIM to `itm_labels == 1`.

Features are dicts from a dataset tagged by `CaptionTagger` (`input_ids`, `word_ids`,
`token_word_class`, `token_concreteness`) plus `image` (PIL image, path, numpy array, or a
`datasets` Image dict with `path`/`bytes`) or precomputed `pixel_values`. Without `word_ids`
every non-special token is its own word (enough for `random`). Text longer than `max_length` is
truncated (the last kept token is not re-set to [SEP]; tag with the same `max_length` to avoid it).

Bad items — unreadable/truncated/zero-size image, empty `input_ids` (e.g. an empty caption skipped
by the tagger), missing column — raise `MaskVLDataError` naming the batch index and the file or
field; with `on_error="skip"` they are dropped from the batch, counted in `stats["skipped"]` and
logged (a batch with no good item still raises).

Randomness: one `torch.Generator` per data-loader worker, seeded with `seed + worker_id`
(as transformers' `DataCollatorForLanguageModeling(seed=...)`); same seed -> same masks. With
`seed=None` the generator is seeded from torch's global RNG (which torch seeds per worker).
`collator(features, generator=g)` draws this batch from `g` instead and leaves the collator's own generator
untouched (`maskvl_train.seeded_masking.ExampleSeededMasking` seeds `g` from the batch's example ids).
"""

import logging
import os
from collections import Counter
from collections.abc import Mapping

import numpy as np
import torch

from .errors import MaskVLDataError, describe_item
from .image_loading import load_image
from .image_masking import IMAGE_MASKING_POLICIES, ImageMaskingPolicy, PatchGrid
from .itm_negatives import ImageSwapNegatives, InBatchNegatives
from .joint_masking import JOINT_MASKING_POLICIES, JointMaskingPolicy
from .masking_primitives import IGNORE_INDEX
from .text_masking import TEXT_MASKING_POLICIES, TextBatch, TextMaskingPolicy

logger = logging.getLogger(__name__)


def _joint_policy(policy, kwargs: dict | None, text_policy, image_policy) -> JointMaskingPolicy:
    """The joint policy, built once with concrete rates: by name, `independent` masks every pair at the rates the
    text and image policies were built with (unless `kwargs` set them); the others have rates of their own."""
    if policy == "independent":
        kwargs = {"text_rate": text_policy.rate, "image_ratio": image_policy.ratio, **(kwargs or {})}
    return _build(policy, JOINT_MASKING_POLICIES, "joint", kwargs)


def _build(policy, registry: dict, kind: str, kwargs: dict | None):
    """A policy instance from a name (+ kwargs) or an instance."""
    if isinstance(policy, str):
        if policy not in registry:
            raise ValueError(f"unknown {kind} masking policy {policy!r}; choose one of {sorted(registry)}")
        return registry[policy](**(kwargs or {}))
    if kwargs:
        raise ValueError(f"{kind}_policy_kwargs given with a policy instance {policy!r}")
    return policy


class MaskVLDataCollator:
    r"""Collate tagged features into `MaskVLForPreTraining.forward` arguments, with masking.

    Args:
        tokenizer: the tokenizer used for tagging ([PAD] and [MASK] required).
        image_processor: a `MaskVLImageProcessor` (images are processed on the fly). Optional when
            features carry `pixel_values`.
        text_policy: name in `TEXT_MASKING_POLICIES` or an instance (default "random").
        image_policy: name in `IMAGE_MASKING_POLICIES` or an instance (default "none").
        joint_policy: name in `JOINT_MASKING_POLICIES` or an instance (default "independent").
        itm_negatives: False (default), True (swap probability 0.5), a float probability, an
            `ImageSwapNegatives`, or "in_batch" / an `InBatchNegatives` (extra mismatched pairs, no swap).
        text_policy_kwargs / image_policy_kwargs / joint_policy_kwargs: constructor arguments when
            the policy is given by name, e.g. `{"rate": 0.3}`. The joint policy decides every row's rates;
            `independent` given by name takes the text and image policies' `rate` / `ratio` (see `joint_masking`).
        image_size / patch_size: override the image processor's (N = (size / patch) ** 2).
        seed: seed of the per-worker generator (None = from torch's global RNG).
        max_length: truncate text to this many tokens (None = keep the tagged length); at least 2
            ([CLS] and one text token).
        pad_to_multiple_of: pad T to a multiple of this.
        on_error: "raise" (default) or "skip" bad items (counted in `stats`).
        image_column: feature key of the image (default "image").
        group_column: optional feature key (e.g. "image_id") of pairs sharing an image, so an
            ITM swap between them is labelled a true pair.
        mlm_on_negatives: keep MLM labels on swapped pairs (default False).
        patch_drop_noise: also return `patch_drop_noise` (B, N) for FLIP-style patch dropping (default False).

    Example:
        >>> collator = MaskVLDataCollator(tokenizer, image_processor, text_policy="objects",
        ...                               image_policy="block", joint_policy="maskvlm", seed=0)
        >>> batch = collator([tagged[i] for i in range(32)])
    """

    def __init__(
        self,
        tokenizer,
        image_processor=None,
        text_policy="random",
        image_policy="none",
        joint_policy="independent",
        itm_negatives=False,
        text_policy_kwargs: dict | None = None,
        image_policy_kwargs: dict | None = None,
        joint_policy_kwargs: dict | None = None,
        image_size=None,
        patch_size: int | None = None,
        seed: int | None = None,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        on_error: str = "raise",
        image_column: str = "image",
        group_column: str | None = None,
        mlm_on_negatives: bool = False,
        patch_drop_noise: bool = False,
    ):
        if tokenizer.mask_token_id is None or tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer needs a [MASK] and a [PAD] token")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.text_policy: TextMaskingPolicy = _build(text_policy, TEXT_MASKING_POLICIES, "text", text_policy_kwargs)
        self.image_policy: ImageMaskingPolicy = _build(
            image_policy, IMAGE_MASKING_POLICIES, "image", image_policy_kwargs
        )
        self.joint_policy: JointMaskingPolicy = _joint_policy(
            joint_policy or "independent", joint_policy_kwargs, self.text_policy, self.image_policy
        )
        if itm_negatives is True:
            itm_negatives = ImageSwapNegatives()
        elif itm_negatives == "in_batch":
            itm_negatives = InBatchNegatives()
        elif isinstance(itm_negatives, float) and not isinstance(itm_negatives, bool):
            itm_negatives = ImageSwapNegatives(itm_negatives)
        self.itm_negatives: ImageSwapNegatives | InBatchNegatives | None = itm_negatives or None
        if image_size is None and image_processor is not None:
            image_size = (image_processor.size.height, image_processor.size.width)
        if patch_size is None and image_processor is not None:
            patch_size = image_processor.patch_size
        if image_size is None or patch_size is None:
            raise ValueError("give `image_size` and `patch_size`, or an image processor that has them")
        self.grid = PatchGrid.from_image_size(image_size, patch_size)
        self.seed = seed
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or max_length < 2):
            raise ValueError(f"max_length must be an int >= 2 ([CLS] and one text token) or None, got {max_length!r}")
        self.max_length = max_length
        self.pad_to_multiple_of = pad_to_multiple_of
        self.on_error = on_error
        self.image_column = image_column
        self.group_column = group_column
        self.mlm_on_negatives = mlm_on_negatives
        self.patch_drop_noise = patch_drop_noise
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        self.vocab_size = len(tokenizer)
        self._non_text_ids = np.array(sorted(set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}), dtype=np.int64)
        self.stats = Counter()
        self._generator = None
        self._generator_owner = None

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(text_policy={self.text_policy!r}, image_policy={self.image_policy!r}, "
            f"joint_policy={self.joint_policy!r}, itm_negatives={self.itm_negatives!r}, grid={self.grid}, "
            f"seed={self.seed})"
        )

    # ---- randomness ---------------------------------------------------------------------------
    @property
    def generator(self) -> torch.Generator:
        """The generator of the current process / data-loader worker (created on first use)."""
        worker = torch.utils.data.get_worker_info()
        owner = (os.getpid(), None if worker is None else worker.id)
        if self._generator is None or self._generator_owner != owner:
            if self.seed is None:
                seed = int(torch.randint(2**62, (1,)).item())
            else:
                seed = self.seed + (0 if worker is None else worker.id)
            self._generator = torch.Generator().manual_seed(seed)
            self._generator_owner = owner
        return self._generator

    def reset_generator(self) -> None:
        """Start the random stream again from `seed` (for reproducible evaluation masks)."""
        self._generator = None

    # ---- validation and loading ---------------------------------------------------------------
    def _check_item(self, index: int, feature) -> None:
        name = describe_item(index)
        if not isinstance(feature, Mapping):
            raise MaskVLDataError(f"{name}: a feature must be a dict, got {type(feature).__name__}")
        if "input_ids" not in feature:
            raise MaskVLDataError(
                f"{describe_item(index, field='input_ids')}: missing; tag captions with CaptionTagger "
                f"(available keys: {sorted(feature)})"
            )
        if len(feature["input_ids"]) == 0:
            raise MaskVLDataError(f"{describe_item(index, field='input_ids')}: empty (empty caption?)")
        self._check_token_ids(index, feature)
        lengths = {
            key: len(feature[key]) for key in ("word_ids", "token_word_class", "token_concreteness") if key in feature
        }
        if any(length != len(feature["input_ids"]) for length in lengths.values()):
            raise MaskVLDataError(
                f"{name}: token feature lengths differ: input_ids {len(feature['input_ids'])}, {lengths}"
            )
        if "pixel_values" not in feature and self.image_column not in feature:
            raise MaskVLDataError(
                f"{describe_item(index, field=self.image_column)}: missing (neither {self.image_column!r} nor "
                f"'pixel_values'; available keys: {sorted(feature)})"
            )

    def _check_token_ids(self, index: int, feature) -> None:
        """Integer ids inside the vocabulary, and at least one text token within `max_length` (a row of special
        tokens only has no word for a word-class policy to mask)."""
        name = describe_item(index, field="input_ids")
        try:
            ids = np.asarray(feature["input_ids"])
        except (TypeError, ValueError) as error:
            raise MaskVLDataError(f"{name}: not a list of token ids ({error})") from None
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise MaskVLDataError(f"{name}: token ids must be a flat list of integers, got {ids.dtype} "
                                  f"shape {ids.shape} ({list(feature['input_ids'])[:8]!r:.60})")
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= self.vocab_size:
            raise MaskVLDataError(f"{name}: token id {low if low < 0 else high} is outside the vocabulary "
                                  f"[0, {self.vocab_size}) (tagged with another tokenizer?)")
        kept = ids[: self.max_length] if self.max_length else ids
        word_ids = feature.get("word_ids")
        if word_ids is not None:
            has_text = max(list(word_ids)[: len(kept)], default=-1) >= 0
        else:
            has_text = bool(np.isin(kept, self._non_text_ids, invert=True).any())
        if not has_text:
            raise MaskVLDataError(f"{name}: no text token{' within max_length' if len(kept) < len(ids) else ''} "
                                  "(only special tokens: an empty or unreadable caption)")

    def _good_items(self, features: list) -> tuple[list, list]:
        """Validated features and their loaded images; bad items raise or are skipped."""
        good, images = [], []
        for index, feature in enumerate(features):
            try:
                self._check_item(index, feature)
                image = None
                if "pixel_values" not in feature:
                    image = load_image(feature[self.image_column], describe_item(index, field=self.image_column))
                good.append(feature)
                images.append(image)
            except MaskVLDataError as error:
                if self.on_error == "raise":
                    raise
                self.stats["skipped"] += 1
                logger.warning("MaskVLDataCollator skipped %s", error)
        if not good:
            raise MaskVLDataError(f"no usable item in a batch of {len(features)} (all skipped, see the log)")
        return good, images

    def _pixel_values(self, features: list, images: list) -> torch.Tensor:
        if all(image is None for image in images):
            pixel_values = torch.stack(
                [torch.as_tensor(np.asarray(f["pixel_values"]), dtype=torch.float32) for f in features]
            )
        elif self.image_processor is None:
            raise ValueError("features carry raw images but the collator has no image_processor")
        else:
            processed = [
                torch.as_tensor(np.asarray(f["pixel_values"]), dtype=torch.float32)[None] if image is None else None
                for f, image in zip(features, images)
            ]
            raw = [image for image in images if image is not None]
            out = self.image_processor(raw, return_tensors="pt")["pixel_values"]  # (B_raw, 3, H, W)
            iterator = iter(out)
            pixel_values = torch.stack([next(iterator) if p is None else p[0] for p in processed])
        expected = (3, self.grid.height * self.grid.patch_size, self.grid.width * self.grid.patch_size)
        if tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(
                f"pixel_values have shape {tuple(pixel_values.shape[1:])}, the collator expects {expected}"
            )
        return pixel_values

    # ---- text ---------------------------------------------------------------------------------
    def _pad_text(self, features: list) -> tuple[TextBatch, torch.Tensor]:
        """Pad the token features; returns the `TextBatch` and the attention mask (B, T) long."""
        lengths = [len(f["input_ids"]) for f in features]
        if self.max_length is not None:
            self.stats["truncated"] += sum(length > self.max_length for length in lengths)
            lengths = [min(length, self.max_length) for length in lengths]
        width = max(lengths)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of

        def padded(key: str, fill, dtype) -> torch.Tensor:  # one tensor per key from padded lists: (B, T)
            rows = [list(f[key][:n]) + [fill] * (width - n) for f, n in zip(features, lengths)]
            return torch.tensor(rows, dtype=dtype)

        input_ids = padded("input_ids", self.tokenizer.pad_token_id, torch.long)
        if all("word_ids" in f for f in features):
            word_ids = padded("word_ids", -1, torch.long)
        else:  # each non-special token is its own word
            real = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
            word_ids = torch.arange(width).expand_as(input_ids).clone()
            word_ids[~real | torch.isin(input_ids, self.special_ids)] = -1
        word_class = (
            padded("token_word_class", 0, torch.long) if all("token_word_class" in f for f in features) else None
        )
        concreteness = (
            padded("token_concreteness", 0.0, torch.float32)
            if all("token_concreteness" in f for f in features)
            else None
        )
        attention_mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()  # (B, T)
        return TextBatch(
            input_ids=input_ids,
            word_ids=word_ids,
            mask_token_id=self.tokenizer.mask_token_id,
            vocab_size=self.vocab_size,
            word_class=word_class,
            concreteness=concreteness,
        ), attention_mask

    # ---- the collator -------------------------------------------------------------------------
    def __call__(self, features: list, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Collate a list of feature dicts into the model's forward arguments (see module doc); every draw comes
        from `generator` when one is given, else from the collator's own (per-worker) generator."""
        if len(features) == 0:
            raise MaskVLDataError("empty batch")
        features, images = self._good_items(list(features))
        generator = self.generator if generator is None else generator
        batch_size = len(features)
        text, attention_mask = self._pad_text(features)
        pixel_values = self._pixel_values(features, images)  # (B, 3, H, W)

        plan = self.joint_policy(batch_size, generator)  # every row's text rate and image ratio
        input_ids, labels = self.text_policy(text, generator, rate=plan.text_rate)
        bool_masked_pos = self.image_policy(batch_size, self.grid, generator, ratio=plan.image_ratio)  # (B, N)
        self.stats["batches"] += 1
        self.stats["items"] += batch_size
        for index, mode in enumerate(plan.mode_names):
            self.stats[f"mode_{mode}"] += int((plan.mode == index).sum())

        out = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "pixel_values": pixel_values,
            "bool_masked_pos": bool_masked_pos,
            "labels": labels,
        }
        if isinstance(self.itm_negatives, InBatchNegatives):  # extra mismatched pairs; every pair stays true
            groups = [f.get(self.group_column) for f in features] if self.group_column else None
            out["itm_negative_index"] = self.itm_negatives(batch_size, generator, groups)
        elif self.itm_negatives is not None:
            groups = [f.get(self.group_column) for f in features] if self.group_column else None
            image_index, itm_labels = self.itm_negatives(batch_size, generator, groups)
            out["pixel_values"] = pixel_values[image_index]
            if not self.mlm_on_negatives:
                out["labels"] = labels.masked_fill(itm_labels[:, None] == 0, IGNORE_INDEX)
            out["itm_labels"] = itm_labels
        if self.patch_drop_noise:  # last draw: the masks above are the same with or without it
            out["patch_drop_noise"] = torch.rand(batch_size, self.grid.num_patches, generator=generator)
        return out

    def report(self) -> dict:
        """Counters of the collator and of its policies (skipped items, fallbacks, modes...)."""
        report = {"collator": dict(self.stats), "text_policy": dict(self.text_policy.stats)}
        if self.itm_negatives is not None:
            report["itm_negatives"] = dict(self.itm_negatives.stats)
        return report


__all__ = ["MaskVLDataCollator", "load_image"]
