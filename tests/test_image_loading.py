"""The one image loader (`maskvl_processing.image_loading.load_image`) and the paths that use it: EXIF orientation
the same in training (collator, screening) and inference (image processor, pipelines), the pixel cap, special
files refused without blocking, errors naming the file."""

import os
import signal
import time

import datasets
import numpy as np
import PIL.Image
import pytest
import torch
from fuzz_data import BIG_SIDE, exif_rotated_jpeg, png_claiming_size
from maskvl_processing import MaskVLDataCollator, MaskVLDataError, MaskVLImageProcessor, load_image
from maskvl_processing.synthetic_scenes import make_synthetic_dataset


@pytest.fixture(scope="module")
def rotated(tmp_path_factory):
    path = tmp_path_factory.mktemp("exif") / "phone.jpg"
    path.write_bytes(exif_rotated_jpeg(40, 20))
    return path


def upright_reference(path) -> PIL.Image.Image:
    """What transformers' `load_image` (the pipelines' loader) makes of the file."""
    from transformers.image_utils import load_image as transformers_load_image

    return transformers_load_image(str(path))


def red_on_top(image) -> bool:
    array = np.asarray(image.convert("RGB"), dtype=np.int32)
    top, bottom = array[: array.shape[0] // 2], array[array.shape[0] // 2:]
    return top[..., 0].mean() > 200 and bottom[..., 0].mean() < 60


def test_loader_applies_exif_orientation_like_transformers(rotated):
    reference = upright_reference(rotated)
    assert reference.size == (20, 40) and red_on_top(reference)  # the fixture is what we think it is
    for source in (str(rotated), {"bytes": None, "path": str(rotated)}, {"bytes": rotated.read_bytes(), "path": None}):
        image = load_image(source, "item 0")
        assert image.size == (20, 40) and red_on_top(image), source if isinstance(source, str) else "dict"
        assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(reference))
    again = load_image(load_image(str(rotated), "item 0"), "item 0")  # no second turn
    assert again.size == (20, 40)


def test_training_and_inference_see_the_same_pixels(rotated):
    processor = MaskVLImageProcessor(size={"height": 32, "width": 32}, patch_size=16)
    inference = processor(upright_reference(rotated), return_tensors="pt")["pixel_values"]
    opened = processor(PIL.Image.open(rotated), return_tensors="pt")["pixel_values"]  # a user's own PIL.Image.open
    from maskvl_processing import train_wordpiece_tokenizer

    tokenizer = train_wordpiece_tokenizer(["a red circle"], vocab_size=60)
    collator = MaskVLDataCollator(tokenizer, processor, seed=0)
    feature = {"input_ids": tokenizer("a red circle")["input_ids"]}
    training = collator([{**feature, "image": {"bytes": None, "path": str(rotated)}}])["pixel_values"]
    decoded = datasets.Dataset.from_dict({"image": [str(rotated)]}).cast_column("image", datasets.Image())[0]["image"]
    from_datasets = collator([{**feature, "image": decoded}])["pixel_values"]
    for pixels in (opened, training, from_datasets):
        assert torch.equal(pixels, inference)


def test_image_over_the_pixel_cap_is_refused_from_its_header(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(png_claiming_size(BIG_SIDE, BIG_SIDE))  # 169 M pixels: PIL alone would decode 0.5 GB
    assert path.stat().st_size < 200
    start = time.perf_counter()
    with pytest.raises(MaskVLDataError, match=rf"item 3 \(file '.*big\.png'\): .*{BIG_SIDE * BIG_SIDE} pixels exceeds"):
        load_image(str(path), "item 3")
    assert time.perf_counter() - start < 2.0


def test_pixel_cap_is_configurable(tmp_path, monkeypatch):
    from maskvl_processing.image_loading import load_image as load

    path = tmp_path / "small.png"
    PIL.Image.new("RGB", (40, 20)).save(path)
    with pytest.raises(MaskVLDataError, match="800 pixels exceeds the cap of 500"):
        load(str(path), "item 0", max_pixels=500)
    monkeypatch.setenv("MASKVL_MAX_IMAGE_PIXELS", "799")
    with pytest.raises(MaskVLDataError, match="cap of 799"):
        load(str(path), "item 0")
    monkeypatch.setenv("MASKVL_MAX_IMAGE_PIXELS", "800")
    assert load(str(path), "item 0").size == (40, 20)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_special_files_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)

    def hang(*_):
        raise TimeoutError("load_image blocked on a FIFO")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(5)
    try:
        with pytest.raises(MaskVLDataError, match=r"item 1 \(file '.*fifo\.png'\): is a FIFO"):
            load_image(str(fifo), "item 1")
        with pytest.raises(MaskVLDataError, match=r"item 1 \(file .*\): is a directory"):
            load_image({"bytes": None, "path": str(tmp_path)}, "item 1")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(MaskVLDataError, match=r"item 2 \(file '.*nowhere\.png'\): no such file"):
        load_image(str(tmp_path / "nowhere.png"), "item 2")


def test_pipeline_loader_is_the_training_loader(rotated, tmp_path):
    from maskvl_processing.pipelines_maskvl import MaskVLPipelineError, _load_rgb

    assert red_on_top(_load_rgb(str(rotated))) and _load_rgb(str(rotated)).size == (20, 40)
    rgba = PIL.Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # fully transparent: white in training (alpha on white)
    path = tmp_path / "clear.png"
    rgba.save(path)
    processor = MaskVLImageProcessor(size={"height": 8, "width": 8}, patch_size=8)
    assert torch.equal(processor(_load_rgb(str(path)), return_tensors="pt")["pixel_values"],
                       processor(load_image(str(path), "item 0"), return_tensors="pt")["pixel_values"])
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(MaskVLPipelineError, match="is a FIFO"):
        _load_rgb(str(fifo))


def test_scenes_round_trip_unchanged(tmp_path):
    """Images without EXIF are returned as decoded (nothing turned, nothing converted)."""
    image = make_synthetic_dataset(1, seed=0, image_size=16)[0]["image"]
    path = tmp_path / "scene.png"
    image.save(path)
    assert np.array_equal(np.asarray(load_image(str(path), "item 0")), np.asarray(image))
