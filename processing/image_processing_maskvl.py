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

Fast path. With the usual settings (convert to RGB, resize to a fixed height x width with a PIL filter,
rescale and normalise with a scalar or per-channel mean / std, no crop, no padding) and a batch of only
8-bit PIL images (modes in `FAST_PATH_PIL_MODES`) or uint8 RGB arrays (H, W, 3) / (3, H, W), the batch skips
transformers' per-image numpy round trips: each image is converted with the same `to_rgb_pil`, resized
with the same PIL call (skipped when it already has the target size: PIL would return a copy), and the
stacked uint8 batch is rescaled and normalised at once through a 256-entry table per channel, computed
with exactly the slow path's float64 rescale and float32 normalisation. The `pixel_values` are
bit-identical to the per-image path (tested). Any other batch (16-bit or float images, tensors, other
options, a subclass overriding a step) takes the per-image path unchanged.
"""

from typing import Any

import numpy as np
import PIL.Image
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_base import BatchFeature
from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, PILImageResampling
from transformers.processing_utils import ImagesKwargs

from .errors import MaskVLDataError, describe_item
from .image_loading import check_pixel_array, exif_upright

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
# 8-bit PIL modes the batch fast path takes (`to_rgb_pil` turns each into 8-bit RGB exactly as the slow path)
FAST_PATH_PIL_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK"})
_PIL_FILTERS = frozenset(int(f) for f in PILImageResampling)
# steps of the per-image path; a subclass overriding one of them keeps the per-image path
_FAST_PATH_STEPS = ("process_image", "_preprocess", "_prepare_image_like_inputs", "convert_to_rgb", "resize",
                    "rescale", "normalize")


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
    if images is None:
        raise MaskVLDataError("no images given (images=None)")
    if isinstance(images, (list, tuple)):
        flat = [item for group in images for item in (group if isinstance(group, (list, tuple)) else [group])]
        if not flat:
            raise MaskVLDataError("no images given (an empty list); pass at least one image")
        for index, item in enumerate(flat):
            if item is None:
                raise MaskVLDataError(f"{describe_item(index)}: image is None")
            if rank(item) is None and not isinstance(item, PIL.Image.Image):
                raise MaskVLDataError(f"{describe_item(index)}: unsupported image type {type(item).__name__} "
                                      "(give PIL images, numpy arrays or torch tensors; open paths with load_image)")
            if rank(item) is not None and rank(item) not in (2, 3, 4):
                raise MaskVLDataError(f"{describe_item(index)}: image array has {rank(item)} dimensions, shape "
                                      f"{tuple(item.shape)}; expected one image (H, W), (H, W, C) or (C, H, W), "
                                      "or a batch of them (B, ...)")


_IMAGE_ERRORS = (MaskVLDataError, ValueError, OSError, TypeError)


def _named_error(index: int, image, error: Exception) -> MaskVLDataError:
    """`error` of the image at `index` of the batch, naming the item and its file."""
    source = getattr(image, "filename", None) or None
    return MaskVLDataError(f"{describe_item(index, source)}: {error}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)


def _channel_values(value) -> np.ndarray | None:
    """A scalar or 3 per-channel values as float32 (3,) (as `normalize` builds them), else None."""
    if _is_number(value):
        value = [value] * 3
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(_is_number(v) for v in value):
        return None
    return np.array(value, dtype=np.float32)


def _fast_path_image(image) -> bool:
    """Whether the batch fast path takes this image: an 8-bit PIL image of a mode in `FAST_PATH_PIL_MODES`
    (RGB without a transparency key) or a uint8 array (H, W, 3) / (3, H, W) whose layout is unambiguous."""
    if isinstance(image, PIL.Image.Image):
        if image.width == 0 or image.height == 0 or image.mode not in FAST_PATH_PIL_MODES:
            return False
        return image.mode != "RGB" or image.info.get("transparency") is None
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.size == 0:
        return False
    first, last = image.shape[0], image.shape[-1]
    return (last == 3 and first not in (1, 3, 4)) or (first == 3 and last not in (1, 3, 4))


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


def array_to_pixels(image: np.ndarray, do_rescale: bool | None = True) -> np.ndarray:
    """Validate a pixel array and bring it to a dtype the PIL backend reads right (module doc).

    bool -> 0 / 255; signed or wide integers -> uint8 (negative values refused; above 255 scaled as 16-bit);
    floats (when they will be rescaled) -> uint8: values in [0, 1] are taken as [0, 1] and scaled by 255,
    values in [0, 255] as 8-bit levels, anything else is refused. With `do_rescale=False` floats pass as they
    are (already rescaled, transformers' convention)."""
    check_pixel_array(image)
    kind = image.dtype.kind
    if kind == "b":
        return image.astype(np.uint8) * 255
    if kind in "iu" and image.dtype != np.uint8:
        low = int(image.min())
        if low < 0:
            raise MaskVLDataError(f"image array of dtype {image.dtype} has negative values (min {low}); "
                                  "pixel values must be >= 0")
        return _high_bit_depth_to_uint8(image)
    if kind == "f" and do_rescale is not False:
        low, high = float(image.min()), float(image.max())
        if low < 0.0 or high > 255.0:
            raise MaskVLDataError(f"float image array has values in [{low:g}, {high:g}]; expected [0, 1] "
                                  "(or 8-bit levels in [0, 255]); pass do_rescale=False for already-scaled values")
        scale = 255.0 if high <= 1.0 else 1.0
        return np.clip(image.astype(np.float64) * scale, 0.0, 255.0).round().astype(np.uint8)
    return image


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
        """Validate one image, bring it to 8-bit RGB (upright by its EXIF orientation), return it channels-first."""
        if isinstance(image, PIL.Image.Image):
            if image.width == 0 or image.height == 0:
                raise MaskVLDataError(f"image has zero size {image.size}")
            if image.mode == "F" and not np.isfinite(np.asarray(image)).all():
                raise MaskVLDataError("image (mode F, e.g. a float TIFF) holds NaN or inf values")
            image = exif_upright(image)
            if do_convert_rgb:
                image = to_rgb_pil(image)
        else:
            if hasattr(image, "detach"):  # torch tensor
                check_pixel_array(image)
                image = image.detach().cpu()
                image = (image.float() if image.is_floating_point() else image).numpy()
            if not isinstance(image, np.ndarray):
                raise MaskVLDataError(f"unsupported image type {type(image).__name__}")
            if image.size == 0:
                raise MaskVLDataError(f"image array has zero size, shape {tuple(image.shape)}")
            image = array_to_pixels(image, kwargs.get("do_rescale", self.do_rescale))
        return super().process_image(image, do_convert_rgb=do_convert_rgb, input_data_format=input_data_format)

    def _flat_images(self, images, expected_ndims: int = 3) -> list:
        """The input as a flat list of images; arrays of the wrong rank and unreadable nesting raise
        `MaskVLDataError` (without dumping arrays)."""
        _check_array_ranks(images)
        try:
            return self._prepare_images_structure(images, expected_ndims=expected_ndims)
        except ValueError as error:  # the base message prints whole arrays
            raise MaskVLDataError(f"cannot read the images as one image or a list of images: "
                                  f"{str(error)[:200]}") from None

    def _prepare_image_like_inputs(self, images, *args, expected_ndims: int = 3, **kwargs) -> list[Any]:
        """Like the base method, but a failing image raises `MaskVLDataError` naming its index."""
        images = self._flat_images(images, expected_ndims=expected_ndims)
        prepared = []
        for index, image in enumerate(images):
            try:
                prepared.append(self.process_image(image, *args, **kwargs))
            except _IMAGE_ERRORS as error:
                raise _named_error(index, image, error) from error
        return prepared

    def _preprocess_image_like_inputs(self, images, *args, **kwargs):
        """The batch fast path (module doc) when the settings and every image allow it, else the per-image path."""
        settings = None if args else self._fast_path_settings(**kwargs)
        if settings is not None:
            flat = self._flat_images(images, expected_ndims=kwargs.get("expected_ndims", 3))
            if flat and all(_fast_path_image(image) for image in flat):
                features = self._fast_preprocess(flat, *settings)
                if features is not None:
                    return features
        return super()._preprocess_image_like_inputs(images, *args, **kwargs)

    def _fast_path_settings(self, do_convert_rgb=None, do_resize=None, size=None, resample=None, do_center_crop=None,
                            do_rescale=None, rescale_factor=None, do_normalize=None, image_mean=None, image_std=None,
                            do_pad=None, input_data_format=None, return_tensors=None, **_):
        """(height, width, resample, rescale_factor, mean, std, return_tensors) when the fast path gives exactly
        the per-image path's result with these settings, else None."""
        cls = type(self)
        if any(getattr(cls, step) is not getattr(MaskVLImageProcessor, step) for step in _FAST_PATH_STEPS):
            return None
        if not (do_convert_rgb and do_resize and do_rescale and do_normalize) or do_center_crop or do_pad:
            return None
        if input_data_format is not None or size is None or not (size.height and size.width):
            return None
        if size.shortest_edge or size.longest_edge or size.max_height or size.max_width:
            return None  # the per-image resize computes these sizes from each image
        if resample is None:
            resample = PILImageResampling.BILINEAR  # as `PilBackend.resize`
        if isinstance(resample, bool) or resample not in _PIL_FILTERS:
            return None
        if not _is_number(rescale_factor):
            return None
        mean, std = _channel_values(image_mean), _channel_values(image_std)
        if mean is None or std is None:
            return None
        return size.height, size.width, resample, rescale_factor, mean, std, return_tensors

    def _fast_preprocess(self, images: list, height, width, resample, rescale_factor, mean, std, return_tensors):
        """The fast path on a flat list of eligible images; None to fall back (a converted image that still
        carries a transparency key, which transformers' RGB conversion would composite)."""
        rows = []
        for index, image in enumerate(images):
            try:  # what `process_image` does (and names the item for) in the per-image path
                if isinstance(image, PIL.Image.Image):
                    image.load()  # unreadable / truncated files fail here, as in `process_image`
                    image = to_rgb_pil(exif_upright(image))
                    if image.info.get("transparency") is not None:
                        return None
                else:  # uint8 (H, W, 3) or (3, H, W)
                    image = PIL.Image.fromarray(image if image.shape[-1] == 3 else np.moveaxis(image, 0, -1))
            except _IMAGE_ERRORS as error:
                raise _named_error(index, images[index], error) from error
            if image.size != (width, height):  # PIL returns a copy when the size already matches
                image = image.resize((width, height), resample=resample)
            rows.append(image.tobytes())
        batch = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), height, width, 3)
        # the per-image path: float32(float64(x) * rescale_factor), then (x - mean) / std in float32, per channel;
        # the same arithmetic on the 256 possible values, looked up
        values = (np.arange(256, dtype=np.uint8).astype(np.float64) * rescale_factor).astype(np.float32)
        table = (values[None, :] - mean[:, None]) / std[:, None]  # (3, 256) float32
        channels_first = batch.transpose(0, 3, 1, 2)
        pixel_values = np.empty(channels_first.shape, dtype=np.float32)  # (B, 3, H, W)
        for channel in range(3):
            np.take(table[channel], channels_first[:, channel], out=pixel_values[:, channel])
        data = {"pixel_values": list(pixel_values) if return_tensors is None else pixel_values}
        return BatchFeature(data=data, tensor_type=return_tensors)

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
