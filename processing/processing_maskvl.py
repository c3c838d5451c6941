"""`MaskVLProcessor`: tokenizer + `MaskVLImageProcessor` -> exactly the model's inputs.

Inference-side only: no masking happens here (masking is the data collator's job). Copied to the
Hub as remote code with `save_pretrained`, so it imports only torch / transformers / numpy / PIL
and flat siblings. Registration with `AutoProcessor` lives in the package `__init__`.
"""

from typing import Unpack

from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessingKwargs, ProcessorMixin

from .image_processing_maskvl import MaskVLImageProcessor, MaskVLImageProcessorKwargs  # noqa: F401  (remote code)


class MaskVLProcessorKwargs(ProcessingKwargs, total=False):
    """Typed keyword arguments of `MaskVLProcessor.__call__`: `text_kwargs` go to the tokenizer, `images_kwargs`
    to the image processor, `common_kwargs` to both; flat keywords are routed to whichever accepts them."""

    images_kwargs: MaskVLImageProcessorKwargs


class MaskVLProcessor(ProcessorMixin):
    r"""Wraps a BERT-style tokenizer and a `MaskVLImageProcessor`.

    `processor(images=..., text=...)` returns a `BatchFeature` with `input_ids` (B, T) and
    `attention_mask` (B, T) for text and `pixel_values` (B, 3, H, W) float for images — nothing
    else by default (`token_type_ids` is not returned; the model does not need it).

    Keyword arguments follow transformers' `ProcessorMixin` convention (`_merge_kwargs`): per modality
    (`text_kwargs={...}`, `images_kwargs={...}`), `common_kwargs={...}`, or flat (`max_length=16`). Priority:
    call arguments, then the tokenizer's own saved settings, then this class's defaults (`text_kwargs` /
    `images_kwargs` below: pad to the longest text, truncate, PyTorch tensors).

    Args:
        image_processor (`MaskVLImageProcessor`): the image processor.
        tokenizer (`PreTrainedTokenizerBase`): any tokenizer with [CLS]/[SEP]/[PAD]/[MASK].

    Example:
        >>> processor = MaskVLProcessor(image_processor=MaskVLImageProcessor(), tokenizer=tokenizer)
        >>> batch = processor(images=[image], text=["a red ball"], return_tensors="pt")
        >>> sorted(batch.keys())
        ['attention_mask', 'input_ids', 'pixel_values']
    """

    valid_processor_kwargs = MaskVLProcessorKwargs
    # processor-level defaults: the lowest priority in `_merge_kwargs`
    text_kwargs = {"padding": "longest", "truncation": True, "return_token_type_ids": False, "return_tensors": "pt"}
    images_kwargs = {"return_tensors": "pt"}

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        super().__init__(image_processor, tokenizer, **kwargs)

    def __call__(self, images=None, text=None, **kwargs: Unpack[MaskVLProcessorKwargs]) -> BatchFeature:
        """Tokenise `text` and/or process `images` (one text per image); returns the model's inputs."""
        if images is None and text is None:
            raise ValueError("MaskVLProcessor needs `images`, `text`, or both.")
        data = super().__call__(images=images, text=text, **kwargs)
        if "input_ids" in data and "pixel_values" in data and len(data["input_ids"]) != len(data["pixel_values"]):
            raise ValueError(
                f"MaskVLProcessor got {len(data['pixel_values'])} image(s) but {len(data['input_ids'])} text(s): "
                "give one text per image"
            )
        return data

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`ProcessorMixin.save_pretrained`, without the truncation/padding a fast tokenizer's last call left on
        its backend. transformers 5 writes that state into `tokenizer.json` and turns it into init kwargs on load
        (`max_length`, `pad_to_multiple_of`, ...), which `_merge_kwargs` then makes this processor's defaults: a
        collator's `max_length=40` would silently replace the tokenizer's `model_max_length`. Settings given to
        the tokenizer on purpose (init kwargs) are kept: they are saved in `tokenizer_config.json`."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None:
            return super().save_pretrained(save_directory, *args, **kwargs)
        truncation, padding = backend.truncation, backend.padding
        backend.no_truncation()
        backend.no_padding()
        try:
            return super().save_pretrained(save_directory, *args, **kwargs)
        finally:  # the tokenizer in memory keeps its state (the next call sets it anyway)
            if truncation is not None:
                backend.enable_truncation(**truncation)
            if padding is not None:
                backend.enable_padding(**padding)

    def batch_decode(self, *args, **kwargs):
        """Forwarded to the tokenizer's `batch_decode`."""
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        """Forwarded to the tokenizer's `decode`."""
        return self.tokenizer.decode(*args, **kwargs)


__all__ = ["MaskVLProcessor", "MaskVLProcessorKwargs"]
