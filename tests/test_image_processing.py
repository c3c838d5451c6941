"""`MaskVLImageProcessor`: modes, input types, shapes, bad images, save/load, Auto and remote code."""

import json

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import AutoImageProcessor

from maskvl_processing import MaskVLDataError, MaskVLImageProcessor


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


# The remote-code round trip (AutoImageProcessor and AutoProcessor in a process without the package)
# is tested in test_processor.py, one subprocess for both.
