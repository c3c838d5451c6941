"""load_image_text_dataset on local sources (imagefolder, webdataset shards, synthetic) and errors."""
import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

import datasets
from maskvl_processing.errors import MaskVLDataError
from maskvl_processing.pretraining_data import load_image_text_dataset, resolve_shards, train_eval_split
from maskvl_processing.synthetic_scenes import make_synthetic_splits


def _colour(i: int) -> tuple[int, int, int]:
    return (10 * i % 256, 255 - 10 * i % 256, 40)


def _png(i: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (12, 10), _colour(i)).save(buffer, format="PNG")
    return buffer.getvalue()


def _assert_pixel(image, i):
    assert image.size == (12, 10)
    assert tuple(np.asarray(image.convert("RGB"))[0, 0]) == _colour(i)


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    with open(folder / "metadata.jsonl", "w") as f:
        for i in range(5):
            (folder / f"img{i}.png").write_bytes(_png(i))
            f.write(json.dumps({"file_name": f"img{i}.png", "text": f"caption number {i}", "source": "test"}) + "\n")
    return folder


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def shards(tmp_path):
    """Two shards, 3 samples each: <key>.png + <key>.txt + <key>.json."""
    paths = []
    for s in range(2):
        path = tmp_path / f"shard-{s:03d}.tar"
        with tarfile.open(path, "w") as tar:
            for j in range(3):
                i, key = 3 * s + j, f"{3 * s + j:06d}"
                _add(tar, f"{key}.png", _png(i))
                _add(tar, f"{key}.txt", f"a txt caption {i}\n".encode())
                _add(tar, f"{key}.json", json.dumps({"alt_text": f"json caption {i}", "width": 12}).encode())
        paths.append(path)
    return paths


def test_imagefolder_with_metadata(image_folder):
    ds = load_image_text_dataset(train_dir=image_folder, caption_column="text")
    assert isinstance(ds, datasets.Dataset) and len(ds) == 5
    assert {"image", "caption"} <= set(ds.column_names) and "text" not in ds.column_names
    assert isinstance(ds.features["image"], datasets.Image)
    by_caption = {row["caption"]: row["image"] for row in ds}
    for i in range(5):
        _assert_pixel(by_caption[f"caption number {i}"], i)


def test_imagefolder_streaming(image_folder):
    ds = load_image_text_dataset(train_dir=image_folder, caption_column="text", streaming=True)
    assert isinstance(ds, datasets.IterableDataset)
    rows = list(ds)
    assert sorted(r["caption"] for r in rows) == [f"caption number {i}" for i in range(5)]


def test_missing_caption_column_is_named(image_folder):
    with pytest.raises(MaskVLDataError, match=r"caption column 'caption' not found.*'text'"):
        load_image_text_dataset(train_dir=image_folder)


def test_missing_image_column_is_named(image_folder):
    with pytest.raises(MaskVLDataError, match=r"image column 'picture' not found.*'image'.*'text'"):
        load_image_text_dataset(train_dir=image_folder, image_column="picture", caption_column="text")


def test_missing_directory_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_image_text_dataset(train_dir=missing)


def test_webdataset_txt_captions(shards):
    ds = load_image_text_dataset(webdataset=str(shards[0].parent / "shard-*.tar"))
    assert len(ds) == 6 and isinstance(ds.features["image"], datasets.Image)
    for i, row in enumerate(ds):
        assert row["caption"] == f"a txt caption {i}"  # newline stripped
        _assert_pixel(row["image"], i)


def test_webdataset_json_field_and_brace_pattern(shards):
    pattern = str(shards[0].parent / "shard-{000..001}.tar")
    assert resolve_shards(pattern) == [str(p) for p in shards]
    ds = load_image_text_dataset(webdataset=pattern, caption_column="alt_text")
    assert ds["caption"] == [f"json caption {i}" for i in range(6)]


def test_webdataset_streaming_list(shards):
    ds = load_image_text_dataset(webdataset=[str(p) for p in shards], streaming=True)
    rows = list(ds)
    assert [r["caption"] for r in rows] == [f"a txt caption {i}" for i in range(6)]
    _assert_pixel(rows[4]["image"], 4)


def test_webdataset_errors_name_path_and_column(shards, tmp_path):
    with pytest.raises(FileNotFoundError, match="shard-999.tar"):
        load_image_text_dataset(webdataset=[str(shards[0]), str(tmp_path / "shard-999.tar")])
    with pytest.raises(FileNotFoundError, match="nothing-"):
        load_image_text_dataset(webdataset=str(tmp_path / "nothing-*.tar"))
    with pytest.raises(MaskVLDataError, match=r"image column 'jpg' not found.*'png'"):
        load_image_text_dataset(webdataset=str(shards[0]), image_column="jpg")


def test_webdataset_missing_caption(tmp_path):
    path = tmp_path / "images-only.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, "000000.jpg", _png(0))
    with pytest.raises(MaskVLDataError, match=r"caption column 'caption' not found.*'jpg'"):
        load_image_text_dataset(webdataset=str(path))


def test_one_source_at_a_time(image_folder, shards):
    with pytest.raises(ValueError, match="at most one"):
        load_image_text_dataset(train_dir=image_folder, webdataset=str(shards[0]))


def test_synthetic_default_matches_splits():
    train = load_image_text_dataset(synthetic_num_examples=20, seed=3)
    validation = load_image_text_dataset(split="validation", synthetic_num_examples=10, seed=3)
    reference = make_synthetic_splits(20, 10, seed=3)
    assert train["caption"] == reference["train"]["caption"]
    assert validation["caption"] == reference["validation"]["caption"]
    assert {"image", "caption"} <= set(train.column_names)
    streamed = load_image_text_dataset(synthetic_num_examples=5, seed=3, streaming=True)
    assert [r["caption"] for r in streamed] == train["caption"][:5]


def test_train_eval_split():
    ds = datasets.Dataset.from_dict({"caption": [f"c{i}" for i in range(50)]})
    a = train_eval_split(ds, eval_size=10, seed=0)
    b = train_eval_split(ds, eval_size=10, seed=0)
    c = train_eval_split(ds, eval_size=10, seed=1)
    assert len(a["train"]) == 40 and len(a["validation"]) == 10
    assert not set(a["train"]["caption"]) & set(a["validation"]["caption"])
    assert a["validation"]["caption"] == b["validation"]["caption"] != c["validation"]["caption"]
    assert len(train_eval_split(ds, eval_size=0.2, seed=0)["validation"]) == 10
    with pytest.raises(ValueError, match="eval_size"):
        train_eval_split(ds, eval_size=50, seed=0)

    stream = ds.to_iterable_dataset()
    parts = train_eval_split(stream, eval_size=10, seed=0)
    held_out = [r["caption"] for r in parts["validation"]]
    rest = [r["caption"] for r in parts["train"]]
    assert len(held_out) == 10 and sorted(held_out + rest) == sorted(ds["caption"])
