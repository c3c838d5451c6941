"""`MaskVLImageProcessor`: modes, input types, shapes, bad images, save/load, Auto and remote code, and the
batch fast path (bit-identical to the per-image path, taken only where it applies)."""

import json

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import AutoImageProcessor

from maskvl_processing import MaskVLDataError, MaskVLImageProcessor
from maskvl_processing.image_processing_maskvl import FAST_PATH_PIL_MODES


@pytest.fixture(scope="module")
def processor():
    return MaskVLImageProcessor(size={"height": 32, "width": 32}, patch_size=8)


def pixels(processor, image):
    return processor(image, return_tensors="pt")["pixel_values"]


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "I", "F", "RGB", "1"])
def test_every_mode_becomes_rgb(processor, mode):
    image = PIL.Image.new(mode, (40, 24))
    out = pixels(processor, image)
    assert out.shape == (1, 3, 32, 32) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_gray_value_is_kept_across_modes(processor):
    """The same mid-gray in 8-bit L, 8-bit RGB and 16-bit I;16 gives the same pixel values (no clipping)."""
    gray8 = PIL.Image.new("L", (16, 16), 128)
    gray16 = PIL.Image.fromarray(np.full((16, 16), 128 * 257, dtype=np.uint16))
    assert gray16.mode == "I;16"
    a, b = pixels(processor, gray8), pixels(processor, gray16)
    c = pixels(processor, PIL.Image.new("RGB", (16, 16), (128, 128, 128)))
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(a, c, atol=1e-6)
    assert abs(a.mean().item()) < 0.01  # 128/255 normalised with mean 0.5, std 0.5


def test_transparency_composited_on_white(processor):
    clear = PIL.Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    assert torch.allclose(pixels(processor, clear), torch.ones(1, 3, 32, 32))
    opaque = PIL.Image.new("RGBA", (16, 16), (255, 0, 0, 255))
    out = pixels(processor, opaque)
    assert torch.allclose(out[0, 0], torch.ones(32, 32)) and torch.allclose(out[0, 1], -torch.ones(32, 32))


def test_numpy_torch_single_and_batched(processor):
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    reference = pixels(processor, PIL.Image.fromarray(hwc))
    assert torch.allclose(pixels(processor, hwc), reference, atol=1e-5)
    assert torch.allclose(pixels(processor, np.moveaxis(hwc, -1, 0)), reference, atol=1e-5)
    assert torch.allclose(pixels(processor, torch.from_numpy(np.moveaxis(hwc, -1, 0))), reference, atol=1e-5)
    batch = np.stack([hwc, hwc[::-1]])
    out = pixels(processor, batch)
    assert out.shape == (2, 3, 32, 32) and torch.allclose(out[0], reference[0], atol=1e-5)
    assert not torch.allclose(out[0], out[1])
    assert pixels(processor, [PIL.Image.fromarray(hwc)] * 3).shape == (3, 3, 32, 32)
    assert pixels(processor, torch.from_numpy(np.moveaxis(batch, -1, 1))).shape == (2, 3, 32, 32)


def test_sixteen_bit_arrays_are_scaled(processor):
    assert torch.allclose(
        pixels(processor, np.full((8, 8, 3), 65535, dtype=np.uint16)), torch.ones(1, 3, 32, 32), atol=1e-6
    )


def test_bad_images_name_the_item(processor):
    good = PIL.Image.new("RGB", (8, 8))
    with pytest.raises(MaskVLDataError, match=r"item 1.*zero size"):
        processor([good, PIL.Image.new("RGB", (0, 5))])
    with pytest.raises(MaskVLDataError, match=r"item 0.*zero size"):
        processor(np.zeros((0, 4, 3), dtype=np.uint8))


def test_arrays_of_the_wrong_rank_name_the_item_without_dumping_them(processor):
    good = np.zeros((8, 8, 3), dtype=np.uint8)
    five_d = np.zeros((2, 3, 8, 8, 1), dtype=np.uint8)
    with pytest.raises(MaskVLDataError, match=r"item 1: image array has 5 dimensions, shape \(2, 3, 8, 8, 1\)") as error:
        processor([good, five_d])
    assert len(str(error.value)) < 300  # the base class would print the whole array
    with pytest.raises(MaskVLDataError, match=r"^image array has 1 dimensions"):
        processor(torch.zeros(8))
    batches = processor([np.zeros((2, 8, 8, 3), np.uint8), np.zeros((3, 8, 8, 3), np.uint8)], return_tensors="pt")
    assert batches["pixel_values"].shape == (5, 3, 32, 32)  # lists of batches still work, as in transformers


def test_save_load_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert config["image_processor_type"] == "MaskVLImageProcessor" and config["patch_size"] == 8
    loaded = MaskVLImageProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == processor.to_dict() and loaded.num_patches == 16
    auto = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(auto, MaskVLImageProcessor)
    image = PIL.Image.new("RGB", (50, 20), (10, 200, 30))
    assert torch.equal(pixels(auto, image), pixels(processor, image))


class PerImageProcessor(MaskVLImageProcessor):
    """Overrides a step of the per-image path, so it never takes the batch fast path: the reference."""

    calls = 0

    def _preprocess(self, *args, **kwargs):
        PerImageProcessor.calls += 1
        return super()._preprocess(*args, **kwargs)


def random_image(rng, mode, width, height):
    """A random image of `mode`: random RGBA pixels (alpha 0-255) converted, so transparency varies."""
    image = PIL.Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), "RGBA")
    if mode == "P":
        return image.convert("RGB").quantize(32)
    return image.convert(mode)


def both_paths(images, size=(32, 32), return_tensors="pt", **options):
    """(fast, per-image) `pixel_values` of the same call; asserts the reference really ran per image."""
    settings = {"size": {"height": size[0], "width": size[1]}, "patch_size": 8, **options}
    before = PerImageProcessor.calls
    reference = PerImageProcessor(**settings)(images, return_tensors=return_tensors)["pixel_values"]
    assert PerImageProcessor.calls == before + 1, "the reference did not take the per-image path"
    return MaskVLImageProcessor(**settings)(images, return_tensors=return_tensors)["pixel_values"], reference


@pytest.fixture
def count_per_image(monkeypatch):
    """Counts calls of the per-image steps of `MaskVLImageProcessor` itself (`process_image`, `_preprocess`)."""
    calls = {"process_image": 0, "_preprocess": 0}
    for name in calls:
        original = getattr(MaskVLImageProcessor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(MaskVLImageProcessor, name, counted)
    return calls


FAST_SIZES = [(32, 32), (40, 24), (7, 9), (64, 64), (33, 95)]


@pytest.mark.parametrize("mode", sorted(FAST_PATH_PIL_MODES))
def test_fast_path_equals_per_image_path_for_every_8bit_mode(mode):
    rng = np.random.default_rng(len(mode))
    images = [random_image(rng, mode, w, h) for w, h in FAST_SIZES]
    fast, reference = both_paths(images)
    assert fast.shape == (len(FAST_SIZES), 3, 32, 32) and fast.dtype == torch.float32
    torch.testing.assert_close(fast, reference, rtol=0, atol=0)  # bit-identical


def test_fast_path_equals_per_image_path_for_mixed_batches_arrays_and_options():
    rng = np.random.default_rng(1)
    modes = sorted(FAST_PATH_PIL_MODES)
    mixed = [random_image(rng, modes[i % len(modes)], w, h) for i, (w, h) in enumerate(FAST_SIZES * 3)]
    hwc = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    chw = rng.integers(0, 256, (3, 17, 40), dtype=np.uint8)
    cases = [
        (mixed, {}),
        ([hwc, chw, hwc[::-1, ::2], mixed[0]], {}),  # arrays (one not contiguous) next to a PIL image
        (rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8), {}),  # one (B, H, W, C) array
        (mixed, {"resample": PIL.Image.Resampling.NEAREST}),
        (mixed, {"resample": PIL.Image.Resampling.BILINEAR}),
        (mixed, {"resample": PIL.Image.Resampling.LANCZOS}),
        (mixed, {"image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}),
        (mixed, {"rescale_factor": 1 / 127.5, "image_mean": 0.25, "image_std": 2.0}),
    ]
    for images, options in cases:
        for size in ((32, 32), (24, 40)):
            fast, reference = both_paths(images, size=size, **options)
            torch.testing.assert_close(fast, reference, rtol=0, atol=0, msg=lambda m: f"{options}, {size}: {m}")


def test_fast_path_returns_what_the_per_image_path_returns():
    images = [PIL.Image.new("RGB", (32, 32), (1, 2, 3)), PIL.Image.new("L", (10, 50), 200)]
    fast_np, reference_np = both_paths(images, return_tensors="np")
    assert isinstance(fast_np, np.ndarray) and fast_np.dtype == np.float32 and np.array_equal(fast_np, reference_np)
    fast_list, reference_list = both_paths(images, return_tensors=None)
    assert isinstance(fast_list, list) and len(fast_list) == 2
    for a, b in zip(fast_list, reference_list):
        assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == (3, 32, 32) and np.array_equal(a, b)


def test_fast_path_is_taken_for_common_batches(processor, count_per_image):
    rng = np.random.default_rng(2)
    batches = [
        [random_image(rng, "RGB", 32, 32) for _ in range(8)],  # the collator's case: RGB at the target size
        [random_image(rng, mode, 20, 40) for mode in sorted(FAST_PATH_PIL_MODES)],
        rng.integers(0, 256, (3, 20, 30, 3), dtype=np.uint8),
        PIL.Image.new("P", (30, 20)),
    ]
    for images in batches:
        assert pixels(processor, images).shape[1:] == (3, 32, 32)
    assert count_per_image == {"process_image": 0, "_preprocess": 0}


def test_other_inputs_and_options_take_the_per_image_path(processor, count_per_image):
    rng = np.random.default_rng(3)
    rgb = random_image(rng, "RGB", 20, 20)
    keyed = rgb.copy()
    keyed.info["transparency"] = (0, 0, 0)  # an RGB PNG with a tRNS colour key: transformers composites it
    sixteen = PIL.Image.fromarray(rng.integers(0, 65536, (20, 20), dtype=np.uint16))
    cases = [
        ([rgb, sixteen], {}),  # one 16-bit image sends the whole batch per image
        ([sixteen], {}),
        ([PIL.Image.new("I", (9, 9), 70000)], {}),
        ([PIL.Image.new("F", (9, 9), 0.5)], {}),
        ([keyed], {}),
        ([rng.random((20, 20, 3)).astype(np.float32)], {"do_rescale": False}),
        ([rng.integers(0, 65536, (20, 20, 3), dtype=np.uint16)], {}),
        ([torch.randint(0, 256, (3, 20, 20), dtype=torch.uint8)], {}),
        ([rng.integers(0, 2, (20, 20, 3)).astype(bool)], {}),
        ([rng.integers(0, 256, (3, 20, 3), dtype=np.uint8)], {}),  # ambiguous channel layout
        ([rng.integers(0, 256, (20, 20, 4), dtype=np.uint8)], {}),  # RGBA array
        ([rgb], {"do_resize": False}),
        ([rgb], {"do_normalize": False}),
        ([rgb], {"do_center_crop": True, "crop_size": {"height": 16, "width": 16}}),
        ([rgb], {"size": {"shortest_edge": 32}}),
        ([rgb], {"image_mean": [0.5, 0.5], "image_std": [0.5, 0.5]}),  # a ValueError from normalize, as before
    ]
    for images, options in cases:
        before = dict(count_per_image)
        try:
            processor(images, return_tensors="pt", **options)
        except ValueError:
            assert "image_mean" in options
        assert count_per_image["process_image"] > before["process_image"], (images, options)
    PerImageProcessor.calls = 0
    PerImageProcessor(size={"height": 32, "width": 32})([rgb])
    assert PerImageProcessor.calls == 1  # a subclass overriding a step keeps the per-image path


def test_fast_path_names_a_bad_item_like_the_per_image_path(tmp_path):
    rng = np.random.default_rng(4)
    path = tmp_path / "broken.png"
    random_image(rng, "RGB", 32, 32).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    messages = []
    for cls in (MaskVLImageProcessor, PerImageProcessor):
        images = [random_image(rng, "RGB", 32, 32), random_image(rng, "L", 8, 8), PIL.Image.open(path)]
        with pytest.raises(MaskVLDataError, match=r"item 2 \(file '.*broken\.png'\): .*truncated") as error:
            cls(size={"height": 32, "width": 32}, patch_size=8)(images)
        messages.append(str(error.value))
    assert messages[0] == messages[1]


# The remote-code round trip (AutoImageProcessor and AutoProcessor in a process without the package)
# is tested in test_processor.py, one subprocess for both.


# ---- hostile in-memory inputs (issue 14) ----------------------------------------------------------------------
def test_float_array_in_unit_range_is_not_crushed_to_a_constant(processor):
    """Float images in [0, 1] with the default do_rescale=True: scaled by 255 first, not divided by 255 again."""
    from fuzz_data import float01_array

    array = float01_array()
    as_uint8 = (array * 255).round().astype(np.uint8)
    got = processor(array, return_tensors="pt")["pixel_values"]
    assert torch.equal(got, processor(as_uint8, return_tensors="pt")["pixel_values"])
    assert got.std() > 0.3  # uniform noise normalised to [-1, 1]: std ~0.58 (was 0.002)
    unscaled = processor(array, do_rescale=False, return_tensors="pt")["pixel_values"]  # the float pipeline
    assert (unscaled - got).abs().mean() < 0.02
    levels = (array * 255).round()  # float 8-bit levels in [0, 255] are read as such
    assert torch.equal(processor(levels, return_tensors="pt")["pixel_values"], got)


@pytest.mark.parametrize("name", ["nan_float_tiff", "negative_int8", "object_array", "complex_array",
                                  "float_out_of_range", "none"])
def test_bad_in_memory_image_is_named_by_its_index(processor, name):
    from fuzz_data import bad_image_inputs

    good = np.zeros((8, 8, 3), np.uint8)
    messages = {"nan_float_tiff": "NaN or inf", "negative_int8": "negative values", "object_array": "dtype object",
                "complex_array": "dtype complex64", "float_out_of_range": r"values in \[300, 300\]",
                "none": "image is None"}
    with pytest.raises(MaskVLDataError, match=rf"item 2\b.*{messages[name]}"):
        processor([good, good, bad_image_inputs()[name]], return_tensors="pt")


def test_wide_integer_arrays_are_scaled_not_refused(processor):
    sixteen = np.full((8, 8, 3), 257 * 100, dtype=np.int16)  # 16-bit level 25700 -> 8-bit 100
    eight = np.full((8, 8, 3), 100, dtype=np.int8)
    reference = processor(np.full((8, 8, 3), 100, np.uint8), return_tensors="pt")["pixel_values"]
    for array in (sixteen, eight):
        assert torch.equal(processor(array, return_tensors="pt")["pixel_values"], reference), array.dtype


def test_no_images_is_a_clear_error(processor):
    for empty in ([], [[]]):
        with pytest.raises(MaskVLDataError, match="no images given"):
            processor(empty, return_tensors="pt")
    with pytest.raises(MaskVLDataError, match=r"item 1: unsupported image type str"):
        processor([np.zeros((8, 8, 3), np.uint8), "cat.png"], return_tensors="pt")
