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
from test_synthetic_scenes import make_synthetic_splits


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


# ---- dirty sources (issue 14): every bad row named (file + line / key + field) or kept as a counted problem row ----
from fuzz_data import WEBDATASET_BAD_SAMPLES, bad_metadata_lines, truncate_shard, write_dirty_webdataset  # noqa: E402
from maskvl_processing.pretraining_data import PROBLEM_COLUMN, SOURCE_COLUMN  # noqa: E402


@pytest.fixture
def dirty_folder(tmp_path):
    """5 good lines and one line per kind in `bad_metadata_lines()`, bad ones between good ones."""
    folder = tmp_path / "dirty"
    folder.mkdir()
    lines, expected = [], {}
    bad = bad_metadata_lines()
    for i, (name, line) in enumerate(bad.items()):
        (folder / f"img{i}.png").write_bytes(_png(i))
        lines.append(json.dumps({"file_name": f"img{i}.png", "caption": f"caption number {i}"}).encode())
        expected[len(lines)] = ""
        (folder / f"{name}.png").write_bytes(_png(i))
        lines.append(line)
        expected[len(lines)] = name
    (folder / "metadata.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return folder, expected


def test_metadata_line_that_cannot_be_read_is_named_by_file_line_and_field(dirty_folder):
    folder, expected = dirty_folder
    first_bad = min(line for line, kind in expected.items() if kind)
    with pytest.raises(MaskVLDataError, match=rf"metadata\.jsonl line {first_bad} \(field 'caption'\): caption is a "
                                               r"number, not a string \(5\)"):
        load_image_text_dataset(train_dir=folder)
    messages = {"numeric_caption": r"\(field 'caption'\): caption is a number",
                "list_caption": r"\(field 'caption'\): caption is a list",
                "null_caption": r"\(field 'caption'\): caption is null",
                "missing_caption": r"\(field 'caption'\): missing",
                "latin1_line": r": not UTF-8 text \(byte 0xe9",
                "not_json": r": not valid JSON"}
    for line, kind in expected.items():
        if not kind:
            continue
        single = folder.parent / f"single-{kind}"
        single.mkdir()
        (single / f"{kind}.png").write_bytes(_png(0))
        (single / "a.png").write_bytes(_png(1))
        good = json.dumps({"file_name": "a.png", "caption": "a dog"}).encode()
        (single / "metadata.jsonl").write_bytes(good + b"\n" + bad_metadata_lines()[kind] + b"\n")
        with pytest.raises(MaskVLDataError, match=rf"single-{kind}/metadata\.jsonl line 2 ?{messages[kind]}"):
            load_image_text_dataset(train_dir=single)


@pytest.mark.parametrize("streaming", [False, True])
def test_skip_mode_keeps_every_row_and_marks_exactly_the_bad_ones(dirty_folder, streaming):
    folder, expected = dirty_folder
    ds = load_image_text_dataset(train_dir=folder, on_error="skip", streaming=streaming)
    rows = list(ds)
    assert len(rows) == len(expected)  # kept + skipped = rows
    for row in rows:
        line = int(row[SOURCE_COLUMN].rsplit(" ", 1)[1])
        assert row[SOURCE_COLUMN] == f"{folder / 'metadata.jsonl'} line {line}"
        assert bool(row[PROBLEM_COLUMN]) == bool(expected[line]), row
        if expected[line]:
            assert row["image"] is None and row["caption"] is None
        else:
            assert row["caption"].startswith("caption number")


def test_gold_word_columns_are_kept_and_type_changes_named(tmp_path):
    folder = tmp_path / "gold"
    folder.mkdir()
    rows = [{"file_name": "a.png", "caption": "a dog", "objects": ["dog"], "attributes": []},
            {"file_name": "b.png", "caption": "a cat", "objects": ["cat"], "attributes": ["black"]}]
    for row in rows:
        (folder / row["file_name"]).write_bytes(_png(0))
    (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    ds = load_image_text_dataset(train_dir=folder)
    assert ds["objects"] == [["dog"], ["cat"]] and ds["attributes"] == [[], ["black"]]
    rows.append({"file_name": "b.png", "caption": "a cat", "objects": "cat"})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(MaskVLDataError, match=r"line 3 \(field 'objects'\): is a string here but a list in .*line 1"):
        load_image_text_dataset(train_dir=folder)


def test_split_named_image_files_do_not_hide_the_metadata(tmp_path, caplog):
    folder = tmp_path / "named"
    folder.mkdir()
    with open(folder / "metadata.jsonl", "w") as f:
        for i in range(4):
            for split in ("train", "test"):
                (folder / f"{split}_{i}.png").write_bytes(_png(i))
                f.write(json.dumps({"file_name": f"{split}_{i}.png", "caption": f"{split} caption {i}"}) + "\n")
    with caplog.at_level("WARNING"):
        ds = load_image_text_dataset(train_dir=folder)
    assert len(ds) == 8 and sorted(ds["caption"])[0] == "test caption 0"  # every line, not datasets' "train_*" split
    assert "read the image file names as split names" in caplog.text


def test_webdataset_bad_samples_are_named_by_shard_key_and_field(tmp_path):
    path = tmp_path / "dirty-000.tar"
    kinds = write_dirty_webdataset(path)
    first = min(key for key, kind in kinds.items() if kind)
    with pytest.raises(MaskVLDataError, match=rf"dirty-000\.tar sample '{first}' \(field 'caption'\): no caption"):
        load_image_text_dataset(webdataset=str(path))
    ds = load_image_text_dataset(webdataset=str(path), on_error="skip")
    assert len(ds) == len(kinds)  # kept + skipped = rows
    problems = dict(zip(ds["__key__"], ds[PROBLEM_COLUMN]))
    assert {key for key, problem in problems.items() if problem} == {key for key, kind in kinds.items() if kind}
    by_kind = {kinds[key]: problem for key, problem in problems.items() if problem}
    assert set(by_kind) == set(WEBDATASET_BAD_SAMPLES)
    assert "no caption" in by_kind["no_caption_member"] and "no caption" in by_kind["json_without_field"]
    assert "not UTF-8 text" in by_kind["latin1_txt"] and "is a number, not a string" in by_kind["json_number_caption"]
    assert "(field 'image'): no image member" in by_kind["no_image_member"]
    good = [row for row in ds if not row[PROBLEM_COLUMN]]
    assert all(row["caption"] and row["image"].size == (16, 16) for row in good)


@pytest.mark.parametrize("streaming", [False, True])
def test_truncated_shard_is_reported_not_silently_shortened(shards, streaming):
    path = shards[0]  # 3 good samples
    truncate_shard(path, 0.6)
    with pytest.raises(MaskVLDataError, match=r"shard-000\.tar sample '\d+': truncated"):
        list(load_image_text_dataset(webdataset=str(path), streaming=streaming))
    rows = list(load_image_text_dataset(webdataset=str(path), on_error="skip", streaming=streaming))
    assert "truncated shard" in rows[-1][PROBLEM_COLUMN] and not any(row[PROBLEM_COLUMN] for row in rows[:-2])
