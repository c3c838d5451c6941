"""`MaskVLProcessor`: tokenizer + `MaskVLImageProcessor` -> exactly the model's inputs.

Inference-side only: no masking happens here (masking is the data collator's job). Copied to the
Hub as remote code with `save_pretrained`, so it imports only torch / transformers / numpy / PIL
and flat siblings. Registration with `AutoProcessor` lives in the package `__init__`.
"""

from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin

from .image_processing_maskvl import MaskVLImageProcessor  # noqa: F401  (copied alongside as remote code)


class MaskVLProcessor(ProcessorMixin):
    r"""Wraps a BERT-style tokenizer and a `MaskVLImageProcessor`.

    `processor(images=..., text=...)` returns a `BatchFeature` with `input_ids` (B, T) and
    `attention_mask` (B, T) for text and `pixel_values` (B, 3, H, W) float for images — nothing
    else (`token_type_ids` is dropped; the model does not need it).

    Args:
        image_processor (`MaskVLImageProcessor`): the image processor.
        tokenizer (`PreTrainedTokenizerBase`): any tokenizer with [CLS]/[SEP]/[PAD]/[MASK].

    Example:
        >>> processor = MaskVLProcessor(image_processor=MaskVLImageProcessor(), tokenizer=tokenizer)
        >>> batch = processor(images=[image], text=["a red ball"], return_tensors="pt")
        >>> sorted(batch.keys())
        ['attention_mask', 'input_ids', 'pixel_values']
    """

    model_input_names = ["input_ids", "attention_mask", "pixel_values"]

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        super().__init__(image_processor, tokenizer, **kwargs)

    def __call__(
        self,
        images=None,
        text=None,
        padding="longest",
        truncation=True,
        max_length=None,
        return_tensors="pt",
        **image_kwargs,
    ) -> BatchFeature:
        """Tokenise `text` and/or process `images`; returns only the model's input names."""
        if images is None and text is None:
            raise ValueError("MaskVLProcessor needs `images`, `text`, or both.")
        data = {}
        if text is not None:
            encoding = self.tokenizer(
                text,
                padding=padding,
                truncation=truncation,
                max_length=max_length,
                return_token_type_ids=False,
                return_tensors=return_tensors,
            )
            data["input_ids"] = encoding["input_ids"]
            data["attention_mask"] = encoding["attention_mask"]
        if images is not None:
            data["pixel_values"] = self.image_processor(images, return_tensors=return_tensors, **image_kwargs)[
                "pixel_values"
            ]
        if "input_ids" in data and "pixel_values" in data and len(data["input_ids"]) != len(data["pixel_values"]):
            raise ValueError(
                f"MaskVLProcessor got {len(data['pixel_values'])} image(s) but {len(data['input_ids'])} text(s): "
                "give one text per image"
            )
        return BatchFeature(data=data, tensor_type=return_tensors)

    def batch_decode(self, *args, **kwargs):
        """Forwarded to the tokenizer's `batch_decode`."""
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        """Forwarded to the tokenizer's `decode`."""
        return self.tokenizer.decode(*args, **kwargs)


__all__ = ["MaskVLProcessor"]
