"""One image loader for every path: the collator, the image processor, the pipelines and the data screening.

`load_image(image, name)` opens and validates one image and returns a decoded PIL image (or a validated
numpy array / torch tensor). It raises `MaskVLDataError` naming the item (`name`) and its file on any
problem, and never hangs or decodes more than it was allowed to:

* **EXIF orientation** is applied (`PIL.ImageOps.exif_transpose`), as `datasets.Image` decoding and
  transformers' `load_image` (the pipelines) do, so a rotated phone photo is seen the same way in training
  and at inference. The returned image carries no orientation tag, so a second pass changes nothing.
* **Pixel cap**: an image whose header claims more than `max_pixels` pixels (default
  `DEFAULT_MAX_IMAGE_PIXELS`, PIL's own warning threshold of 89.5 M pixels; the environment variable
  `MASKVL_MAX_IMAGE_PIXELS` or the `max_pixels` argument change it) is refused from its header, before
  any pixel buffer is allocated: a 190 KB PNG can claim 169 M pixels (1.26 GB decoded).
* **Special files**: a path is checked with `os.stat` before it is opened; directories, FIFOs, sockets
  and devices are refused (opening a FIFO blocks forever).
* **Arrays** (numpy or torch): 2 or 3 dimensions, no zero-size axis, a numeric dtype (bool, unsigned or
  signed integers, floats; not object, complex or strings), finite values.

Self-contained (PIL, numpy, flat siblings) so that it is copied to the Hub next to the image processor.
"""

import io
import os
import stat
import warnings
from collections.abc import Mapping

import numpy as np
import PIL.Image
import PIL.ImageOps

from .errors import MaskVLDataError

#: Default pixel cap (width * height): PIL's `MAX_IMAGE_PIXELS` warning threshold (1024**3 // 12).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
_ORIENTATION_TAG = 0x0112
#: Array dtype kinds that hold pixels: bool, signed / unsigned integers, floats.
PIXEL_DTYPE_KINDS = frozenset("biuf")


def max_image_pixels(max_pixels: int | None = None) -> int:
    """The pixel cap in force: `max_pixels`, else `$MASKVL_MAX_IMAGE_PIXELS`, else the default."""
    if max_pixels is None:
        value = os.environ.get("MASKVL_MAX_IMAGE_PIXELS")
        try:
            max_pixels = int(value) if value else DEFAULT_MAX_IMAGE_PIXELS
        except ValueError:
            raise ValueError(f"MASKVL_MAX_IMAGE_PIXELS must be an integer, got {value!r}") from None
    if max_pixels <= 0:
        raise ValueError(f"the pixel cap must be positive, got {max_pixels}")
    return max_pixels


def check_regular_file(path) -> str:
    """`path` as a str if it names a regular file (symlinks followed); else `MaskVLDataError`.
    Uses `os.stat` only: nothing is opened, so a FIFO cannot block."""
    path = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise MaskVLDataError("no such file") from None
    except OSError as error:
        raise MaskVLDataError(f"cannot stat the file: {error.strerror or error}") from None
    if stat.S_ISDIR(mode):
        raise MaskVLDataError("is a directory, not an image file")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise MaskVLDataError(f"is {kind}, not an image file (refused: reading it could block)")
    return path


def check_pixel_count(width: int, height: int, max_pixels: int | None = None) -> None:
    """Refuse an image of more than the pixel cap (from its header size, before decoding)."""
    cap = max_image_pixels(max_pixels)
    if width * height > cap:
        raise MaskVLDataError(
            f"image of {width}x{height} = {width * height} pixels exceeds the cap of {cap} pixels "
            "(a decompression bomb or an oversized image; raise the cap with max_pixels= or "
            "$MASKVL_MAX_IMAGE_PIXELS if it is genuine)"
        )


def _open(file, max_pixels: int | None) -> PIL.Image.Image:
    """PIL.Image.open without PIL's own bomb warning / error (our cap, with our message, applies)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
        try:
            image = PIL.Image.open(file)
        except PIL.Image.DecompressionBombError as error:  # over twice PIL's own limit: refused by PIL first
            raise MaskVLDataError(f"cannot read image: {error}") from None
    check_pixel_count(image.width, image.height, max_pixels)
    return image


def exif_upright(image: PIL.Image.Image) -> PIL.Image.Image:
    """`image` turned by its EXIF orientation tag (as transformers' and datasets' loaders do); unchanged
    when it has none or orientation 1."""
    try:
        orientation = image.getexif().get(_ORIENTATION_TAG)
    except Exception:  # noqa: BLE001 - a broken EXIF block is no orientation
        return image
    if orientation in (None, 1):
        return image
    return PIL.ImageOps.exif_transpose(image)


def check_pixel_array(array) -> None:
    """Validate a numpy array / torch tensor holding one image: rank, size, dtype, finite values."""
    if array.ndim not in (2, 3) or 0 in tuple(array.shape):
        raise MaskVLDataError(f"image array has invalid shape {tuple(array.shape)}")
    if hasattr(array, "detach"):  # torch tensor
        if array.is_complex() or not (array.is_floating_point() or array.dtype.is_signed or str(array.dtype)
                                      in ("torch.uint8", "torch.bool", "torch.uint16", "torch.uint32")):
            raise MaskVLDataError(f"image tensor has dtype {array.dtype}; pixels must be integers, bool or floats")
        if array.is_floating_point() and not bool(array.isfinite().all()):
            raise MaskVLDataError("image array holds NaN or inf values")
        return
    if array.dtype.kind not in PIXEL_DTYPE_KINDS:
        raise MaskVLDataError(f"image array has dtype {array.dtype}; pixels must be integers, bool or floats")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise MaskVLDataError("image array holds NaN or inf values")


def _check_float_mode(image: PIL.Image.Image) -> None:
    if image.mode == "F" and not np.isfinite(np.asarray(image)).all():
        raise MaskVLDataError("image (mode F, e.g. a float TIFF) holds NaN or inf values")


def load_image(image, name: str = "image", max_pixels: int | None = None):
    """Open / validate one image; raise `MaskVLDataError` with `name` (and the file) on any problem.

    Accepts a path, a `datasets.Image` dict (`{"bytes", "path"}`, as with `decode=False`), a PIL image,
    a numpy array or a torch tensor. Files and PIL images come back decoded, upright (EXIF) and capped at
    `max_pixels`; arrays come back as they are, validated.
    """
    source = None
    try:
        if isinstance(image, Mapping):  # datasets Image feature with decode=False
            source = image.get("path")
            if image.get("bytes"):
                image = _open(io.BytesIO(image["bytes"]), max_pixels)
            elif source:
                image = _open(check_regular_file(source), max_pixels)
            else:
                raise MaskVLDataError("image dict has neither 'bytes' nor 'path'")
        elif isinstance(image, (str, os.PathLike)):
            source = os.fspath(image)
            image = _open(check_regular_file(source), max_pixels)
        elif isinstance(image, (bytes, bytearray)):
            image = _open(io.BytesIO(image), max_pixels)
        if isinstance(image, PIL.Image.Image):
            source = source or getattr(image, "filename", None) or None
            check_pixel_count(image.width, image.height, max_pixels)
            image.load()  # truncated files fail here, not deep inside the image processor
            if image.width == 0 or image.height == 0:
                raise MaskVLDataError(f"image has zero size {image.size}")
            _check_float_mode(image)
            image = exif_upright(image)
        elif isinstance(image, np.ndarray) or hasattr(image, "detach"):
            check_pixel_array(image)
        elif image is None:
            raise MaskVLDataError("image is None")
        else:
            raise MaskVLDataError(f"unsupported image type {type(image).__name__}")
        return image
    except MaskVLDataError as error:
        raise MaskVLDataError(f"{name if source is None else name + f' (file {source!r})'}: {error}") from None
    except (OSError, ValueError, SyntaxError, EOFError, PIL.Image.DecompressionBombError) as error:
        where = name if source is None else name + f" (file {source!r})"
        raise MaskVLDataError(f"{where}: cannot read image: {error}") from error


__all__ = ["DEFAULT_MAX_IMAGE_PIXELS", "check_pixel_array", "check_pixel_count", "check_regular_file",
           "exif_upright", "load_image", "max_image_pixels"]
