"""Image processor for MaskVL: any image -> RGB -> resize -> rescale -> normalise -> `pixel_values`.

Built on transformers' PIL backend (`PilBackend`), so it needs neither torchvision nor anything
outside torch / transformers / numpy / PIL. It is copied to the Hub with the model as remote code,
so it may only import those libraries and flat siblings (`from .errors import ...`).

Input images may be PIL images, numpy arrays or torch tensors, single or batched. PIL modes
`L`, `LA`, `RGBA`, `P`, `CMYK`, `I;16*` (16-bit), `I` and `F` are converted to RGB; transparency
is composited onto white (transformers' convention). 16-bit images are scaled to 8 bits
(value / 257), not clipped. Integer numpy arrays / tensors of dtype uint16 are scaled the same way.
Float arrays are taken as already in [0, 1] only if you pass `do_rescale=False` (as everywhere in
transformers).

The processor also stores `patch_size`, so the data collator can size `bool_masked_pos`
(N = (height / patch_size) * (width / patch_size), row-major patch order).
"""

from typing import Any

import numpy as np
import PIL.Image
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, PILImageResampling
from transformers.processing_utils import ImagesKwargs

from .errors import MaskVLDataError, describe_item

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _check_array_ranks(images) -> None:
    """Arrays / tensors must be one image (2 or 3 dims) or a batch of images (4 dims); name the bad one."""
    def rank(item):
        return item.ndim if isinstance(item, np.ndarray) or hasattr(item, "detach") else None

    top = rank(images)
    if top is not None:
        if top not in (2, 3, 4):
            raise MaskVLDataError(f"image array has {top} dimensions, shape {tuple(images.shape)}; expected one image "
                                  "(H, W), (H, W, C) or (C, H, W), or a batch of them (B, ...)")
        return
    if isinstance(images, (list, tuple)):
        flat = [item for group in images for item in (group if isinstance(group, (list, tuple)) else [group])]
        for index, item in enumerate(flat):
            if rank(item) is not None and rank(item) not in (2, 3, 4):
                raise MaskVLDataError(f"{describe_item(index)}: image array has {rank(item)} dimensions, shape "
                                      f"{tuple(item.shape)}; expected one image (H, W), (H, W, C) or (C, H, W), "
                                      "or a batch of them (B, ...)")


class MaskVLImageProcessorKwargs(ImagesKwargs, total=False):
    """`ImagesKwargs` plus the ViT patch size (used by the collator to size image masks)."""

    patch_size: int | None


def _high_bit_depth_to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale a 16-bit (or 32-bit integer / float) gray image to uint8 without clipping."""
    if np.issubdtype(array.dtype, np.floating):
        peak = float(np.nanmax(array)) if array.size else 1.0
        scale = 255.0 if peak <= 1.0 else (255.0 / 65535.0 if peak > 255.0 else 1.0)
        return np.clip(np.nan_to_num(array) * scale, 0, 255).round().astype(np.uint8)
    peak = int(array.max()) if array.size else 0
    divisor = 257.0 if peak > 255 else 1.0  # 65535 / 257 == 255
    if peak > 65535:  # 32-bit data: scale by its own range
        divisor = peak / 255.0
    return np.clip(array / divisor, 0, 255).round().astype(np.uint8)


def to_rgb_pil(image: PIL.Image.Image) -> PIL.Image.Image:
    """Convert any PIL mode to 8-bit RGB (16-bit scaled, alpha composited onto white)."""
    if image.mode in _SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        image = PIL.Image.fromarray(_high_bit_depth_to_uint8(np.asarray(image)), mode="L")
    if image.mode == "RGB":
        return image
    has_alpha = "A" in image.getbands() or image.info.get("transparency") is not None
    if has_alpha:
        rgba = image.convert("RGBA")
        background = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


class MaskVLImageProcessor(PilBackend):
    r"""Resize, rescale and normalise images into `pixel_values` of shape (B, 3, H, W), float32.

    Args:
        size (`dict[str, int]`, defaults to `{"height": 224, "width": 224}`): output size.
        patch_size (`int`, defaults to 16): ViT patch size, stored for the data collator.
        resample (`PILImageResampling`, defaults to BICUBIC).
        do_rescale / rescale_factor (defaults `True`, 1/255), do_normalize / image_mean / image_std
        (defaults `True`, 0.5 / 0.5 per channel — pixel reconstruction targets stay in [-1, 1]).
        do_convert_rgb (defaults `True`): convert every mode to RGB as described in the module doc.

    Example:
        >>> processor = MaskVLImageProcessor(size={"height": 64, "width": 64}, patch_size=16)
        >>> processor(PIL.Image.new("L", (80, 50)), return_tensors="pt")["pixel_values"].shape
        torch.Size([1, 3, 64, 64])
    """

    model_input_names = ["pixel_values"]
    valid_kwargs = MaskVLImageProcessorKwargs
    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    size = {"height": 224, "width": 224}
    patch_size = 16
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    @property
    def num_patches(self) -> int:
        """Number of ViT patches per image, (height // patch_size) * (width // patch_size)."""
        return (self.size.height // self.patch_size) * (self.size.width // self.patch_size)

    def process_image(self, image, do_convert_rgb=None, input_data_format=None, **kwargs) -> np.ndarray:
        """Validate one image, bring it to 8-bit RGB, return it channels-first."""
        if isinstance(image, PIL.Image.Image):
            if image.width == 0 or image.height == 0:
                raise MaskVLDataError(f"image has zero size {image.size}")
            if do_convert_rgb:
                image = to_rgb_pil(image)
        else:
            if hasattr(image, "detach"):  # torch tensor
                image = image.detach().cpu().numpy()
            if not isinstance(image, np.ndarray):
                raise MaskVLDataError(f"unsupported image type {type(image).__name__}")
            if image.size == 0:
                raise MaskVLDataError(f"image array has zero size, shape {tuple(image.shape)}")
            if image.dtype.kind == "f" and not np.isfinite(image).all():
                raise MaskVLDataError("image array holds NaN or inf values")
            if image.dtype in (np.uint16, np.int32, np.uint32, np.int64):
                image = _high_bit_depth_to_uint8(image)
            elif image.dtype == np.bool_:
                image = image.astype(np.uint8) * 255
        return super().process_image(image, do_convert_rgb=do_convert_rgb, input_data_format=input_data_format)

    def _prepare_image_like_inputs(self, images, *args, expected_ndims: int = 3, **kwargs) -> list[Any]:
        """Like the base method, but a failing image raises `MaskVLDataError` naming its index."""
        _check_array_ranks(images)
        try:
            images = self._prepare_images_structure(images, expected_ndims=expected_ndims)
        except ValueError as error:  # the base message prints whole arrays
            raise MaskVLDataError(f"cannot read the images as one image or a list of images: "
                                  f"{str(error)[:200]}") from None
        prepared = []
        for index, image in enumerate(images):
            try:
                prepared.append(self.process_image(image, *args, **kwargs))
            except (MaskVLDataError, ValueError, OSError, TypeError) as error:
                source = getattr(image, "filename", None) or None
                raise MaskVLDataError(f"{describe_item(index, source)}: {error}") from error
        return prepared

    def _preprocess(self, images, *args, return_tensors=None, **kwargs):
        """Run the PIL pipeline; always return float32 `pixel_values`."""
        features = super()._preprocess(images, *args, return_tensors=None, **kwargs)
        features["pixel_values"] = [np.asarray(image, dtype=np.float32) for image in features["pixel_values"]]
        if return_tensors is not None:
            features = features.__class__(data=dict(features), tensor_type=return_tensors)
        return features

    def to_dict(self) -> dict[str, Any]:
        """Serialise; keeps this class's own name (the PIL backend strips a `Pil` suffix)."""
        output = super().to_dict()
        output["image_processor_type"] = self.__class__.__name__
        return output


__all__ = ["MaskVLImageProcessor", "to_rgb_pil"]
