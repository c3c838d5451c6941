"""The fuzz data set of the robustness tests: good image-caption pairs mixed with every kind of bad item.

Everything is generated (no download, a few KB) and written by the tests into their tmp dirs:

* `write_fuzz_imagefolder(root)` -> a `FuzzSet`: an `imagefolder` (`metadata.jsonl` + image files) whose
  rows are good synthetic scenes, valid-but-odd images (1x1, grayscale, RGBA, palette with transparency,
  CMYK JPEG, 16-bit PNG), valid-but-odd captions (very long, non-Latin, emoji) and bad rows (truncated PNG,
  corrupt JPEG, zero-byte file, a PNG header claiming 400 M pixels, empty / whitespace-only /
  control-character captions). `FuzzSet.rows` says for every row whether it is good and why not.
* `odd_images()` -> valid PIL images in every mode the processor must convert.
* `bad_image_bytes()` -> the bad files' bytes; `bad_arrays()` -> NaN / inf / empty / wrong-rank arrays.
* `odd_captions()` / `bad_captions()` -> captions that must be kept / rejected (incl. bytes, numbers, lone
  surrogates, and captions that tokenise to nothing: U+FFFD only, combining marks only).
* `bad_image_inputs()` -> in-memory image inputs the image processor must name (float NaN TIFF, negative int8,
  object / complex arrays); `float01_array()` -> a valid float image in [0, 1].
* `exif_rotated_jpeg()` -> a JPEG whose EXIF orientation tag turns it upright.
* `bad_metadata_lines()` -> `metadata.jsonl` lines that cannot be read (numeric / list / null caption, latin-1,
  not JSON); `write_dirty_webdataset(path)` -> a shard with every kind of bad sample (and `truncate_shard`).

A row is *good* when a careful pipeline must train on it, *bad* when it must be rejected (error naming it)
or skipped (counted). The tests check both directions: nothing good is dropped, every bad row is caught.
"""

import io
import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
from maskvl_processing.synthetic_scenes import make_synthetic_dataset

BOMB_SIDE = 20_000  # 400 M pixels: more than twice PIL's MAX_IMAGE_PIXELS (89.5 M), so PIL refuses it
BIG_SIDE = 13_000  # 169 M pixels: under twice PIL's limit (PIL only warns and decodes 0.5 GB); our cap refuses it


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny (~100 byte) PNG whose header claims `width` x `height` RGB pixels (a decompression bomb's
    header, without the payload: opening it must fail fast, before any pixel buffer is allocated)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _encode(image: PIL.Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def odd_images(size: int = 24) -> dict[str, PIL.Image.Image]:
    """Valid images the processor must bring to RGB (none of them may be rejected)."""
    rng = np.random.default_rng(0)
    rgb = PIL.Image.fromarray(rng.integers(0, 256, (size, size + 5, 3), dtype=np.uint8))
    rgba = rgb.convert("RGBA")
    rgba.putalpha(PIL.Image.fromarray(rng.integers(0, 256, (size, size + 5), dtype=np.uint8)))
    palette = rgb.convert("P", palette=PIL.Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    sixteen = PIL.Image.fromarray(rng.integers(0, 65536, (size, size), dtype=np.uint16))  # mode I;16
    return {
        "one_pixel": PIL.Image.new("RGB", (1, 1), (200, 30, 30)),
        "gray": rgb.convert("L"),
        "rgba": rgba,
        "palette": palette,
        "cmyk": rgb.convert("CMYK"),
        "sixteen_bit": sixteen,
        "wide": PIL.Image.new("RGB", (size * 20, 3), (0, 120, 255)),  # extreme aspect ratio
    }


ODD_IMAGE_FORMATS = {"cmyk": ("JPEG", "jpg")}  # CMYK cannot be PNG


def bad_image_bytes() -> dict[str, tuple[str, bytes]]:
    """name -> (file extension, bytes) of image files that cannot be used."""
    good = _encode(PIL.Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 48, 3), dtype=np.uint8)))
    jpeg = _encode(PIL.Image.new("RGB", (32, 32), (10, 200, 10)), "JPEG")
    return {
        "truncated_png": ("png", good[: len(good) // 2]),
        "corrupt_jpeg": ("jpg", jpeg[:20] + bytes(np.random.default_rng(2).integers(0, 256, 300, dtype=np.uint8))),
        "zero_bytes": ("png", b""),
        "not_an_image": ("png", b"<html>404 Not Found</html>"),
        "decompression_bomb": ("png", png_claiming_size(BOMB_SIDE, BOMB_SIDE)),
        "over_pixel_cap": ("png", png_claiming_size(BIG_SIDE, BIG_SIDE)),
    }


def float01_array(size: int = 16) -> np.ndarray:
    """A valid float image with values in [0, 1] (must not become a near-constant image)."""
    return np.random.default_rng(4).random((size, size, 3)).astype(np.float32)


def bad_image_inputs() -> dict[str, object]:
    """In-memory images the image processor must refuse, naming their index."""
    nan_tiff = np.random.default_rng(5).random((16, 16)).astype(np.float32)
    nan_tiff[2, 3] = np.nan
    buffer = io.BytesIO()
    PIL.Image.fromarray(nan_tiff, mode="F").save(buffer, format="TIFF")
    return {
        "nan_float_tiff": PIL.Image.open(io.BytesIO(buffer.getvalue())),
        "negative_int8": np.random.default_rng(6).integers(-128, 127, (16, 16, 3), dtype=np.int8),
        "object_array": np.empty((16, 16, 3), dtype=object),
        "complex_array": np.ones((16, 16, 3), dtype=np.complex64),
        "float_out_of_range": np.full((16, 16, 3), 300.0, dtype=np.float32),
        "none": None,
    }


def exif_rotated_jpeg(width: int = 40, height: int = 20) -> bytes:
    """A `width` x `height` JPEG, red on its left half, tagged EXIF orientation 6 (turn 90 degrees clockwise to
    view): viewed upright it is `height` x `width`, red on its top half."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, : width // 2] = (255, 0, 0)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    return buffer.getvalue()


def bad_arrays() -> dict[str, np.ndarray]:
    """Pixel arrays that must be rejected (never turned into NaN pixel values)."""
    nan = np.full((16, 16, 3), 0.5, dtype=np.float32)
    nan[3, 4, 1] = np.nan
    inf = np.full((16, 16, 3), 0.5, dtype=np.float32)
    inf[0, 0, 0] = np.inf
    return {
        "nan_pixels": nan,
        "inf_pixels": inf,
        "empty_array": np.zeros((0, 16, 3), dtype=np.uint8),
        "four_dims": np.zeros((1, 2, 16, 16, 3), dtype=np.uint8),
    }


def odd_captions() -> dict[str, str]:
    """Unusual captions that are still valid (must be kept; long ones are truncated, not dropped)."""
    return {
        "very_long": " ".join(["a small red circle near a big blue square"] * 400),  # ~3,600 words
        "chinese": "一个红色的圆圈在蓝色方块的左边",
        "arabic": "دائرة حمراء بجانب مربع أزرق",
        "emoji_mixed": "a red 🔴 circle next to a 🟦 square",
        "one_word": "circle",
        "padded": "   a red circle.   \n",
    }


def bad_captions() -> dict[str, object]:
    """Captions that cannot be used: empty, whitespace, control characters only, or not text at all."""
    return {
        "empty": "",
        "whitespace": " \t\n  ",
        "control_chars": "\x00\x01\x02",
        "none": None,
        "integer": 42,
        "float": 3.5,
        "word_list": ["a", "red", "circle"],
        "bytes": b"a red circle",
        "lone_surrogate": "a red \ud800 circle",
        "replacement_chars_only": "\ufffd\ufffd",
        "combining_marks_only": "\u0301\u0308",
    }


def bad_metadata_lines() -> dict[str, bytes]:
    """`metadata.jsonl` lines (bytes, without the newline) that cannot be read as a row: `{name}.png` is the file."""
    return {
        "numeric_caption": b'{"file_name": "numeric_caption.png", "caption": 5}',
        "list_caption": b'{"file_name": "list_caption.png", "caption": ["a", "dog"]}',
        "null_caption": b'{"file_name": "null_caption.png", "caption": null}',
        "missing_caption": b'{"file_name": "missing_caption.png"}',
        "latin1_line": '{"file_name": "latin1_line.png", "caption": "un caf\xe9"}'.encode("latin-1"),
        "not_json": b'{"file_name": "not_json.png", "caption": "a dog"',
    }


def _add_member(tar, name: str, data: bytes) -> None:
    import tarfile

    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


WEBDATASET_BAD_SAMPLES = ("no_caption_member", "json_without_field", "latin1_txt", "json_number_caption",
                          "no_image_member")


def write_dirty_webdataset(path, num_good: int = 6, image_size: int = 16) -> dict[str, str]:
    """A tar shard of `num_good` good samples (`.png` + `.txt`, some `.json`) with one sample per kind in
    `WEBDATASET_BAD_SAMPLES` mixed in; returns {key: "" for a good sample, else the kind}."""
    import tarfile

    scenes = make_synthetic_dataset(num_good, seed=7, image_size=image_size)
    bad = list(WEBDATASET_BAD_SAMPLES)
    order = [kind for pair in zip([""] * len(bad), bad) for kind in pair] + [""] * max(num_good - len(bad), 0)
    kinds: dict[str, str] = {}
    with tarfile.open(path, "w") as tar:
        for index, kind in enumerate(order):
            key = f"{index:06d}"
            kinds[key] = kind
            image = _encode(scenes[index % num_good]["image"])
            caption = scenes[index % num_good]["caption"]
            if kind != "no_image_member":
                _add_member(tar, f"{key}.png", image)
            if kind in ("", "no_image_member"):
                _add_member(tar, f"{key}.txt", (caption + "\n").encode())
            elif kind == "json_without_field":
                _add_member(tar, f"{key}.json", json.dumps({"width": image_size}).encode())
            elif kind == "latin1_txt":
                _add_member(tar, f"{key}.txt", "un caf\xe9".encode("latin-1"))
            elif kind == "json_number_caption":
                _add_member(tar, f"{key}.json", json.dumps({"caption": 12}).encode())
    return kinds


def truncate_shard(path, keep_fraction: float = 0.6) -> None:
    """Cut a tar shard at a 512-byte block boundary (a copy interrupted between two members' blocks)."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep_fraction) // 512 * 512])


STRING_BAD_CAPTIONS = ("empty", "whitespace", "control_chars", "replacement_chars_only", "combining_marks_only")
# ^ bad captions a JSON-lines caption column can hold as strings; `FUZZ_BAD_LINES` are lines the loader cannot read
FUZZ_BAD_LINES = ("numeric_caption", "null_caption", "latin1_line")


@dataclass
class FuzzRow:
    """One row of the fuzz image folder: `good` rows must be trained on, bad ones rejected or skipped."""

    file_name: str
    caption: str
    good: bool
    problem: str = ""  # which field is bad and how, e.g. "image: truncated_png"
    line: bytes = b""  # the raw metadata.jsonl line when it is not the JSON of (file_name, caption)


@dataclass
class FuzzSet:
    root: Path
    rows: list[FuzzRow] = field(default_factory=list)

    @property
    def good(self) -> list[FuzzRow]:
        return [row for row in self.rows if row.good]

    @property
    def bad(self) -> list[FuzzRow]:
        return [row for row in self.rows if not row.good]


def write_fuzz_imagefolder(root, num_good: int = 24, image_size: int = 32, seed: int = 0,
                           bad_lines: bool = True) -> FuzzSet:
    """Write the fuzz `imagefolder` (images + `metadata.jsonl` with `file_name` and `caption`) into `root`.

    Rows, in a shuffled (seeded) order: `num_good` synthetic scenes, one row per odd image (with a good
    caption), one per odd caption (with a good image), one per bad image file, one per bad string caption and,
    with `bad_lines`, one per unreadable `metadata.jsonl` line in `FUZZ_BAD_LINES` (a number or null as caption,
    a latin-1 line).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    scenes = make_synthetic_dataset(num_good + 8, seed=seed, image_size=image_size)
    good_captions = scenes["caption"]
    rows: list[FuzzRow] = []
    for index in range(num_good):
        name = f"scene_{index:03d}.png"
        scenes[index]["image"].save(root / name)
        rows.append(FuzzRow(name, good_captions[index], True))
    spare = iter(range(num_good, num_good + 8))
    for number, (kind, image) in enumerate(odd_images().items()):
        fmt, ext = ODD_IMAGE_FORMATS.get(kind, ("PNG", "png"))
        name = f"odd_{kind}.{ext}"
        (root / name).write_bytes(_encode(image, fmt))
        rows.append(FuzzRow(name, good_captions[number % num_good], True))
    for kind, caption in odd_captions().items():
        name = f"caption_{kind}.png"
        scenes[next(spare) % len(scenes)]["image"].save(root / name)
        rows.append(FuzzRow(name, caption, True))
    for kind, (ext, data) in bad_image_bytes().items():
        name = f"bad_{kind}.{ext}"
        (root / name).write_bytes(data)
        rows.append(FuzzRow(name, good_captions[0], False, f"image: {kind}"))
    for kind in STRING_BAD_CAPTIONS:
        name = f"bad_caption_{kind}.png"
        scenes[1]["image"].save(root / name)
        rows.append(FuzzRow(name, bad_captions()[kind], False, f"caption: {kind}"))
    for kind in FUZZ_BAD_LINES if bad_lines else ():
        name = f"{kind}.png"
        scenes[2]["image"].save(root / name)
        field_name = "line" if kind == "latin1_line" else "caption"  # a line that is not UTF-8 names no field
        rows.append(FuzzRow(name, None, False, f"{field_name}: {kind}", line=bad_metadata_lines()[kind]))
    order = np.random.default_rng(seed).permutation(len(rows))
    rows = [rows[i] for i in order]
    with open(root / "metadata.jsonl", "wb") as handle:
        handle.writelines(
            (row.line or json.dumps({"file_name": row.file_name, "caption": row.caption}, ensure_ascii=False).encode())
            + b"\n" for row in rows
        )
    return FuzzSet(root, rows)


__all__ = [
    "BIG_SIDE",
    "BOMB_SIDE",
    "WEBDATASET_BAD_SAMPLES",
    "bad_image_inputs",
    "bad_metadata_lines",
    "exif_rotated_jpeg",
    "float01_array",
    "truncate_shard",
    "write_dirty_webdataset",
    "FuzzRow",
    "FuzzSet",
    "bad_arrays",
    "bad_captions",
    "bad_image_bytes",
    "odd_captions",
    "odd_images",
    "png_claiming_size",
    "write_fuzz_imagefolder",
]
