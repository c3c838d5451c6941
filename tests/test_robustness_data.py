"""Robustness, bad inputs end to end: the fuzz data set (tests/fuzz_data.py) through the image processor, the
processor, the caption tagger, the collator, the pre-training script and the evaluation scripts.

Every bad item gets either an error naming it (index, file, field) or, where skipping was asked for, a skip
that is counted; every valid item (odd image modes, 1x1 images, long and non-Latin captions) is kept.
"""

import json
import os
import time

import datasets
import numpy as np
import pytest
import torch
from fuzz_data import (
    BOMB_SIDE,
    bad_arrays,
    bad_captions,
    bad_image_bytes,
    odd_captions,
    odd_images,
    write_fuzz_imagefolder,
)
from maskvl_processing import (
    CaptionTagger,
    MaskVLDataCollator,
    MaskVLDataError,
    MaskVLImageProcessor,
    MaskVLProcessor,
    load_image,
    train_wordpiece_tokenizer,
)
from maskvl_processing.pretraining_data import load_image_text_dataset
from maskvl_processing.synthetic_scenes import make_synthetic_dataset
from maskvl_train import pretraining as pretrain
from maskvl_train.data import non_text_token_ids, screen_examples

SIZE = 32


@pytest.fixture(scope="module")
def tokenizer():
    return train_wordpiece_tokenizer(make_synthetic_dataset(60, seed=3)["caption"], vocab_size=200)


@pytest.fixture(scope="module")
def image_processor():
    return MaskVLImageProcessor(size={"height": SIZE, "width": SIZE}, patch_size=16)


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    return write_fuzz_imagefolder(tmp_path_factory.mktemp("fuzz") / "images", image_size=SIZE)


def text_tokens(ids, tokenizer) -> int:
    return sum(int(i) not in non_text_token_ids(tokenizer) for i in ids)  # [UNK] is text


# ---- image processor and processor ------------------------------------------------------------------------
def test_every_odd_image_mode_becomes_finite_rgb_pixels(image_processor):
    images = odd_images()
    pixels = image_processor(list(images.values()), return_tensors="pt")["pixel_values"]
    assert pixels.shape == (len(images), 3, SIZE, SIZE) and pixels.dtype == torch.float32
    assert torch.isfinite(pixels).all() and pixels.min() >= -1.0 and pixels.max() <= 1.0
    # not all collapsed to one colour: each image keeps its own content
    assert len({tuple(p.flatten()[:50].tolist()) for p in pixels}) == len(images)


@pytest.mark.parametrize("name", sorted(bad_arrays()))
def test_bad_pixel_array_is_named_by_its_index(image_processor, name):
    good = np.full((8, 8, 3), 0.5, dtype=np.float32)
    array = bad_arrays()[name]
    if array.ndim > 4:  # a 5-D array is not an image list at all: checked by load_image (the collator's loader)
        with pytest.raises(MaskVLDataError, match=r"item 2 .*invalid shape"):
            load_image(array, "item 2 (field 'image')")
        return
    with pytest.raises(MaskVLDataError, match=r"item 2\b.*(NaN or inf|zero size)"):
        image_processor([good, good, array], do_rescale=False, return_tensors="pt")
    with pytest.raises(MaskVLDataError, match=r"item 2 .*(NaN or inf|invalid shape)"):
        load_image(array, "item 2 (field 'image')")


def test_processor_refuses_different_numbers_of_images_and_texts(tokenizer, image_processor):
    processor = MaskVLProcessor(image_processor=image_processor, tokenizer=tokenizer)
    image = odd_images()["gray"]
    with pytest.raises(ValueError, match=r"2 image\(s\) but 1 text"):
        processor(images=[image, image], text=["a red circle"])
    with pytest.raises(ValueError, match=r"1 image\(s\) but 3 text"):
        processor(images=[image], text=["a", "b", "c"])
    batch = processor(images=[image, image], text=["a red circle", odd_captions()["chinese"]])
    assert batch["input_ids"].shape[0] == batch["pixel_values"].shape[0] == 2


# ---- image files ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(bad_image_bytes()))
def test_bad_image_file_is_named(tmp_path, name):
    ext, data = bad_image_bytes()[name]
    path = tmp_path / f"{name}.{ext}"
    path.write_bytes(data)
    start = time.perf_counter()
    for source in (str(path), {"bytes": None, "path": str(path)}):
        with pytest.raises(MaskVLDataError, match=rf"item 5 \(field 'image'\) \(file '.*{name}\.{ext}'\)"):
            load_image(source, "item 5 (field 'image')")
    assert time.perf_counter() - start < 2.0  # the bomb is refused from its header, nothing is decoded


def test_decompression_bomb_is_refused_from_its_header():
    data = bad_image_bytes()["decompression_bomb"][1]
    assert len(data) < 200  # the header claims 20,000 x 20,000 pixels
    with pytest.raises(MaskVLDataError, match=rf"{BOMB_SIDE * BOMB_SIDE} pixels"):
        load_image({"bytes": data, "path": "bomb.png"}, "item 0")


# ---- caption tagger ---------------------------------------------------------------------------------------
def test_tagger_keeps_odd_captions_and_names_bad_ones(tokenizer):
    odd = odd_captions()
    out = CaptionTagger(tokenizer, max_length=40)({"caption": list(odd.values())}, list(range(10, 10 + len(odd))))
    for name, ids in zip(odd, out["input_ids"]):
        assert 3 <= len(ids) <= 40 and text_tokens(ids, tokenizer) >= 1, name
        assert len(out["word_ids"][list(odd).index(name)]) == len(ids)
    assert len(out["input_ids"][list(odd).index("very_long")]) == 40  # truncated, not dropped

    for name, caption in bad_captions().items():
        with pytest.raises(MaskVLDataError, match=r"item 7 \(field 'caption'\)"):
            CaptionTagger(tokenizer)({"caption": ["a red circle", caption]}, [6, 7])
    with pytest.raises(MaskVLDataError, match=r"column 'caption' is missing \(available: \['text'\]\)"):
        CaptionTagger(tokenizer)({"text": ["a red circle"]}, [0])


def test_tagger_skip_mode_counts_exactly_the_bad_captions(tokenizer):
    bad = bad_captions()
    captions = list(odd_captions().values()) + list(bad.values())
    tagger = CaptionTagger(tokenizer, on_error="skip")
    out = tagger({"caption": captions}, list(range(len(captions))))
    kept = [len(ids) > 0 for ids in out["input_ids"]]
    assert kept == [True] * len(odd_captions()) + [False] * len(bad)
    assert tagger.stats["skipped"] == len(bad) and tagger.stats["tagged"] == len(odd_captions())


# ---- collator ---------------------------------------------------------------------------------------------
def tagged_features(fuzz, tokenizer, rows):
    tagger = CaptionTagger(tokenizer, on_error="skip")
    out = tagger({"caption": [row.caption for row in rows]}, list(range(len(rows))))
    return [
        {"image": {"bytes": None, "path": str(fuzz.root / row.file_name)},
         **{key: out[key][i] for key in CaptionTagger.output_columns}}
        for i, row in enumerate(rows)
    ]


def test_collator_names_a_bad_image_file_and_skips_exactly_the_bad_ones(fuzz, tokenizer, image_processor):
    image_rows = [row for row in fuzz.rows if not row.problem.startswith("caption")]
    features = tagged_features(fuzz, tokenizer, image_rows)
    bad_index = next(i for i, row in enumerate(image_rows) if not row.good)
    strict = MaskVLDataCollator(tokenizer, image_processor, seed=0)
    with pytest.raises(MaskVLDataError, match=rf"item {bad_index} \(field 'image'\) \(file '.*{image_rows[bad_index].file_name}'\)"):
        strict(features)

    lenient = MaskVLDataCollator(tokenizer, image_processor, seed=0, on_error="skip")
    batch = lenient(features)
    good = sum(row.good for row in image_rows)
    assert batch["input_ids"].shape[0] == batch["pixel_values"].shape[0] == good
    assert lenient.stats["skipped"] == len(image_rows) - good and lenient.stats["items"] == good
    assert torch.isfinite(batch["pixel_values"]).all()


@pytest.mark.parametrize(
    ("feature", "message"),
    [
        ("not a dict", r"item 1: a feature must be a dict"),
        ({"image": np.zeros((8, 8, 3), np.uint8)}, r"item 1 \(field 'input_ids'\): missing"),
        ({"input_ids": [2, 5, 3], "word_ids": [-1, 0]}, r"item 1: token feature lengths differ"),
        ({"input_ids": [2, 5, 3]}, r"item 1 \(field 'image'\): missing"),
        ({"input_ids": [], "image": np.zeros((8, 8, 3), np.uint8)}, r"item 1 \(field 'input_ids'\): empty"),
        ({"input_ids": [2, 5, 3], "image": bad_arrays()["nan_pixels"]}, r"item 1 \(field 'image'\): .*NaN or inf"),
        ({"input_ids": [2, 5, 3], "image": 42}, r"item 1 \(field 'image'\): unsupported image type int"),
    ],
)
def test_collator_names_malformed_features(tokenizer, image_processor, feature, message):
    good = {"input_ids": [2, 5, 6, 3], "image": np.zeros((8, 8, 3), np.uint8)}
    with pytest.raises(MaskVLDataError, match=message):
        MaskVLDataCollator(tokenizer, image_processor, seed=0)([good, feature])


# ---- screening data sets ------------------------------------------------------------------------------------
def test_screen_examples_drops_exactly_the_bad_rows_and_keeps_decoding(fuzz):
    ds = load_image_text_dataset(train_dir=fuzz.root, on_error="skip")  # unreadable lines kept as problem rows
    with pytest.raises(MaskVLDataError, match=rf"{len(fuzz.bad)} bad example\(s\) in train") as raised:
        screen_examples(ds, caption_column="caption", on_error="raise")
    for row in fuzz.bad:  # every bad row is listed (10 at most): by index and file or field
        if row.problem.startswith("image"):
            index = next(i for i, r in enumerate(fuzz.rows) if r is row)
            assert f"example {index}" in str(raised.value) or len(fuzz.bad) > 10

    kept, report = screen_examples(ds, caption_column="caption", on_error="skip")
    assert report.skipped == len(fuzz.bad) and report.kept == len(fuzz.good) == len(kept)
    assert report.by_reason == {"image": sum(r.problem.startswith("image") for r in fuzz.bad),
                                "caption": sum(r.problem.startswith("caption") for r in fuzz.bad),
                                "other": sum(r.problem.startswith("line") for r in fuzz.bad)}
    assert isinstance(kept.features["image"], datasets.Image) and kept.features["image"].decode
    names = sorted(os.path.basename(image.filename) for image in kept["image"])
    assert names == sorted(row.file_name for row in fuzz.good)


def test_screen_examples_on_a_stream_counts_while_reading(fuzz):
    stream = load_image_text_dataset(train_dir=fuzz.root, on_error="skip").to_iterable_dataset()
    kept, report = screen_examples(stream, caption_column="caption", on_error="skip")
    captions = [example["caption"] for example in kept]
    assert len(captions) == len(fuzz.good) and report.skipped == len(fuzz.bad) and report.total is None


def test_control_and_format_character_captions_are_refused_by_the_tagger(tokenizer):
    for caption in ("\x00\x01\x02", "\u200b\u200b", "\x7f \x1b"):
        with pytest.raises(MaskVLDataError, match=r"item 3 \(field 'caption'\): caption has no visible characters"):
            CaptionTagger(tokenizer)({"caption": ["a red circle", caption]}, [2, 3])


def test_tagged_row_without_text_tokens_is_screened_out(fuzz, tokenizer):
    """Second line of defence, for tagged data made elsewhere (e.g. an old cache): no text token -> dropped."""
    ds = datasets.Dataset.from_dict({"caption": ["a red circle", "a blue square"],
                                     "image": [str(fuzz.root / fuzz.good[0].file_name)] * 2})
    ds = ds.cast_column("image", datasets.Image())
    tagged = ds.map(CaptionTagger(tokenizer), batched=True, with_indices=True)
    only_specials = [tokenizer.cls_token_id, tokenizer.sep_token_id]
    tagged = tagged.map(lambda row, i: {"input_ids": only_specials} if i == 1 else {}, with_indices=True)
    kept, report = screen_examples(tagged, special_token_ids=non_text_token_ids(tokenizer))
    assert len(kept) == 1 and report.first[0].startswith("example 1 (field 'caption'): no text token")


# ---- pre-training script ------------------------------------------------------------------------------------
def fuzz_args(output_dir, folder, *extra, steps=2):
    return [
        "--output_dir", str(output_dir), "--train_dir", str(folder), "--eval_size", "8", "--image_size", str(SIZE),
        "--baseline_examples", "64", "--max_steps", str(steps), "--per_device_train_batch_size", "8",
        "--per_device_eval_batch_size", "16", "--logging_steps", "1", "--eval_strategy", "no", "--save_strategy",
        "no", "--tokenizer_vocab_size", "200", "--disable_tqdm", "true", "--seed", "0", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def skipped_run(fuzz, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain-skip")
    trainer = pretrain.main(fuzz_args(out, fuzz.root, "--skip_bad_examples", "true", steps=3))
    return trainer, out


def test_pretraining_skips_exactly_the_bad_rows_and_reports_the_counts(fuzz, skipped_run):
    trainer, out = skipped_run
    assert trainer.state.global_step == 3
    results = json.loads((out / "train_results.json").read_text())
    skipped = results["skipped_examples_train"] + results["skipped_examples_validation"]
    assert skipped == len(fuzz.bad)
    kept = [os.path.basename(image["path"]) for split in (trainer.train_dataset, trainer.eval_dataset)
            for image in split["image"]]
    assert sorted(kept) == sorted(row.file_name for row in fuzz.good)  # nothing valid dropped, nothing bad kept
    assert trainer.data_collator.collator.stats["skipped"] == 0  # all caught before training


def test_pretraining_names_a_bad_caption_row(fuzz, tmp_path):
    """Strict mode: the first unreadable metadata line stops the run naming file, line and field, before the
    tokenizer is trained (issue 14: a null caption crashed tokenizer training with a bare TypeError)."""
    lines = (fuzz.root / "metadata.jsonl").read_bytes().splitlines()
    first = next(number for number, line in enumerate(lines, 1) if line in {r.line for r in fuzz.bad if r.line})
    with pytest.raises(MaskVLDataError, match=rf"metadata\.jsonl line {first} \(field 'caption'\)|metadata\.jsonl "
                                               rf"line {first}: not UTF-8"):
        pretrain.main(fuzz_args(tmp_path / "out", fuzz.root))


def test_pretraining_names_a_blank_caption_by_its_line_before_the_tokenizer(tmp_path):
    folder = write_fuzz_imagefolder(tmp_path / "images", num_good=16, image_size=SIZE, bad_lines=False)
    rows = [row for row in folder.rows if not row.problem.startswith("image")]
    (folder.root / "metadata.jsonl").write_text("".join(
        json.dumps({"file_name": row.file_name, "caption": row.caption}) + "\n" for row in rows))
    first = next(number for number, row in enumerate(rows, 1) if not row.good)
    with pytest.raises(MaskVLDataError, match=rf"metadata\.jsonl line {first} \(field 'caption'\): .*before training "
                                               "the tokenizer"):
        pretrain.main(fuzz_args(tmp_path / "out", folder.root))


def test_pretraining_names_a_bad_image_file(tmp_path):
    folder = write_fuzz_imagefolder(tmp_path / "images", num_good=16, image_size=SIZE, bad_lines=False)
    lines = [json.loads(line) for line in (folder.root / "metadata.jsonl").read_text().splitlines()]
    keep = [line for line in lines if not line["file_name"].startswith("bad_caption")]  # bad images only
    (folder.root / "metadata.jsonl").write_text("".join(json.dumps(line) + "\n" for line in keep))
    with pytest.raises(MaskVLDataError, match=r"item \d+ \(field 'image'\) \(file '.*bad_\w+\.(png|jpg)'\).*examples \["):
        pretrain.main(fuzz_args(tmp_path / "out", folder.root, "--per_device_train_batch_size", "32"))


# ---- evaluation scripts -------------------------------------------------------------------------------------
def test_evaluation_scripts_name_or_skip_bad_pairs(fuzz, skipped_run, tmp_path):
    from maskvl_train import image_necessity as evaluate_image_necessity
    from maskvl_train import retrieval as evaluate_retrieval

    _, checkpoint = skipped_run
    common = ["--checkpoint", str(checkpoint), "--train_dir", str(fuzz.root), "--eval_split", "train",
              "--eval_size", str(len(fuzz.rows))]
    necessity = common + ["--eval_masks", "random", "objects", "--prompt_top_k", "1", "--batch_size", "64"]
    lines = (fuzz.root / "metadata.jsonl").read_bytes().splitlines()
    first = next(number for number, line in enumerate(lines, 1) if line in {r.line for r in fuzz.bad if r.line})
    for script, extra in ((evaluate_image_necessity, necessity), (evaluate_retrieval, common)):
        with pytest.raises(MaskVLDataError, match=rf"metadata\.jsonl line {first}\b"):  # the first unreadable line
            script.main(extra + ["--output_dir", str(tmp_path / "strict")])
    clean = write_fuzz_imagefolder(tmp_path / "clean", image_size=SIZE, bad_lines=False)
    strict = [*common[:2], "--train_dir", str(clean.root), *common[4:6], "--eval_size", str(len(clean.rows))]
    for script, extra in ((evaluate_image_necessity, strict + necessity[len(common):]), (evaluate_retrieval, strict)):
        with pytest.raises(MaskVLDataError, match=rf"(?s){len(clean.bad)} bad example\(s\) in train.*example \d+ "
                                                   r"\(\S*metadata\.jsonl line \d+\) \(field 'image'\) \(file"):
            script.main(extra + ["--output_dir", str(tmp_path / "strict")])
    report = evaluate_image_necessity.main(necessity + ["--output_dir", str(tmp_path / "n"), "--skip_bad_examples", "true"])
    assert report["eval_data"]["num_examples"] == len(fuzz.good)
    assert report["eval_data"]["skipped_examples"] == len(fuzz.bad)
    result = evaluate_retrieval.main(common + ["--output_dir", str(tmp_path / "r"), "--skip_bad_examples", "true",
                                               "--rerank_k", "0"])
    assert result["num_images"] == len(fuzz.good)


def test_saved_tokenizer_truncates_to_the_text_tower(skipped_run):
    """A caption of ~3,600 words through the saved processor fits the model (the tokenizer's default 512 would
    overflow the tiny text tower's position embeddings)."""
    from modeling_maskvl import MaskVLModel

    _, out = skipped_run
    processor = MaskVLProcessor.from_pretrained(out)
    model = MaskVLModel.from_pretrained(out).eval()
    batch = processor(images=[odd_images()["rgba"]], text=[odd_captions()["very_long"]])
    assert batch["input_ids"].shape[1] == model.config.text_config.max_position_embeddings
    with torch.no_grad():
        assert torch.isfinite(model(**batch).pooler_output).all()


# ---- kept + skipped = rows on every kind of source (issue 14) ----------------------------------------------------
def run_counts(out) -> int:
    results = json.loads((out / "train_results.json").read_text())
    return results["skipped_examples_train"] + results["skipped_examples_validation"]


def source_args(out, flag: str, value, *extra):
    """`fuzz_args` with another data source flag than --train_dir (--webdataset, --dataset_name)."""
    args = fuzz_args(out, value, *extra)
    args[args.index("--train_dir")] = flag
    return args


def test_webdataset_bad_samples_are_counted_by_pretraining(tmp_path):
    from fuzz_data import write_dirty_webdataset

    shard = tmp_path / "dirty-000.tar"
    kinds = write_dirty_webdataset(shard, num_good=12, image_size=SIZE)
    with pytest.raises(MaskVLDataError, match=r"dirty-000\.tar sample '\d+' \(field '(caption|image)'\)"):
        pretrain.main(source_args(tmp_path / "strict", "--webdataset", shard))
    out = tmp_path / "skip"
    trainer = pretrain.main(source_args(out, "--webdataset", shard, "--skip_bad_examples", "true"))
    kept = len(trainer.train_dataset) + len(trainer.eval_dataset)
    assert run_counts(out) == sum(bool(kind) for kind in kinds.values()) and kept == sum(not k for k in kinds.values())


def test_hub_style_bad_rows_are_counted_by_pretraining(tmp_path):
    """A data set read by `datasets.load_dataset` (here a local parquet folder, as a Hub repository would be):
    null, blank and zero-token captions and an unreadable image, each counted once."""
    scenes = make_synthetic_dataset(20, seed=11, image_size=SIZE)
    captions = list(scenes["caption"])
    images = [{"bytes": _png_bytes(image), "path": f"img{i}.png"} for i, image in enumerate(scenes["image"])]
    captions[3], captions[7], captions[11] = None, "  ", "\ufffd"
    images[15] = {"bytes": b"not an image", "path": "broken.png"}
    folder = tmp_path / "hub"
    folder.mkdir()
    ds = datasets.Dataset.from_dict({"image": images, "caption": captions}).cast_column("image", datasets.Image())
    ds.to_parquet(str(folder / "train.parquet"))
    out = tmp_path / "run"
    trainer = pretrain.main(source_args(out, "--dataset_name", folder, "--skip_bad_examples", "true"))
    assert run_counts(out) == 4 and len(trainer.train_dataset) + len(trainer.eval_dataset) == 16


def _png_bytes(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
