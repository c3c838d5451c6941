"""`MaskVLDataCollator`: the forward-argument contract, every named policy, seeding, ITM, bad input."""

import inspect
import io
import time
from pathlib import Path

import PIL.Image
import pytest
import torch

from maskvl_processing import (
    IMAGE_MASKING_POLICIES,
    JOINT_MASKING_POLICIES,
    TEXT_MASKING_POLICIES,
    CaptionTagger,
    MaskVLDataCollator,
    MaskVLDataError,
    MaskVLImageProcessor,
    RandomTokenMasking,
    train_wordpiece_tokenizer,
)
from maskvl_processing.synthetic_scenes import make_synthetic_dataset

FORWARD_KEYS = {"input_ids", "attention_mask", "pixel_values", "bool_masked_pos", "labels"}


@pytest.fixture(scope="module")
def data():
    return make_synthetic_dataset(96, seed=3, image_size=64)


@pytest.fixture(scope="module")
def tokenizer(data):
    return train_wordpiece_tokenizer(data["caption"], vocab_size=1000)  # fits the tiny presets' 1024 vocab


@pytest.fixture(scope="module")
def image_processor():
    return MaskVLImageProcessor(size={"height": 64, "width": 64}, patch_size=8)


@pytest.fixture(scope="module")
def features(data, tokenizer):
    tagged = data.map(CaptionTagger(tokenizer, backend="dataset", max_length=32), batched=True)
    return [tagged[i] for i in range(len(tagged))]


def collator(tokenizer, image_processor, **kwargs):
    kwargs.setdefault("seed", 0)
    return MaskVLDataCollator(tokenizer, image_processor, **kwargs)


def test_contract_exact_keys_shapes_dtypes(tokenizer, image_processor, features):
    batch = collator(tokenizer, image_processor, text_policy="objects", image_policy="block")(features[:16])
    assert set(batch) == FORWARD_KEYS
    B, T = batch["input_ids"].shape
    assert B == 16 and batch["input_ids"].dtype == torch.long and batch["attention_mask"].dtype == torch.long
    assert (
        batch["attention_mask"].shape == (B, T)
        and batch["labels"].shape == (B, T)
        and batch["labels"].dtype == torch.long
    )
    assert batch["pixel_values"].shape == (B, 3, 64, 64) and batch["pixel_values"].dtype == torch.float32
    assert batch["bool_masked_pos"].shape == (B, (64 // 8) ** 2) and batch["bool_masked_pos"].dtype == torch.bool
    original = torch.full((B, T), tokenizer.pad_token_id)
    for row, feature in enumerate(features[:16]):
        original[row, : len(feature["input_ids"])] = torch.tensor(feature["input_ids"])
        assert batch["attention_mask"][row].sum() == len(feature["input_ids"])
    masked = batch["labels"] != -100
    assert masked.any(dim=1).all()
    assert torch.equal(batch["labels"][masked], original[masked])
    assert torch.equal(batch["input_ids"][~masked], original[~masked])
    assert not masked[batch["attention_mask"] == 0].any()
    expected = image_processor([f["image"] for f in features[:16]], return_tensors="pt")["pixel_values"]
    assert torch.equal(batch["pixel_values"], expected), "pixel_values must be unmasked"


def test_keys_are_the_model_forward_arguments(tokenizer, image_processor, features):
    modeling = pytest.importorskip("modeling_maskvl")
    parameters = set(inspect.signature(modeling.MaskVLForPreTraining.forward).parameters)
    batch = collator(tokenizer, image_processor, itm_negatives=True)(features[:8])
    assert set(batch) == FORWARD_KEYS | {"itm_labels"} and set(batch) <= parameters


@pytest.mark.parametrize(
    "preset,joint,image_policy,itm",
    [("maskvlm-tiny", "maskvlm", "block", True), ("mlim-tiny", "mlim", "random", False)],
)
def test_batch_runs_through_the_model(tokenizer, image_processor, features, preset, joint, image_policy, itm):
    modeling = pytest.importorskip("modeling_maskvl")
    torch.manual_seed(0)
    model = modeling.MaskVLForPreTraining(modeling.MaskVLConfig.from_preset(preset)).eval()
    batch = collator(
        tokenizer,
        image_processor,
        text_policy="top_concrete",
        image_policy=image_policy,
        joint_policy=joint,
        itm_negatives=itm,
        image_policy_kwargs={"block_pixels": 16} if image_policy == "block" else None,
    )(features[:8])
    with torch.no_grad():
        out = model(**batch)
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize("text_policy", list(TEXT_MASKING_POLICIES))
def test_every_text_policy_with_every_image_and_joint_policy(tokenizer, image_processor, features, text_policy):
    for image_policy in IMAGE_MASKING_POLICIES:
        for joint_policy in JOINT_MASKING_POLICIES:
            c = collator(
                tokenizer,
                image_processor,
                text_policy=text_policy,
                image_policy=image_policy,
                joint_policy=joint_policy,
            )
            batch = c(features[:12])
            assert set(batch) == FORWARD_KEYS
            text_rows = (batch["labels"] != -100).any(dim=1)
            if joint_policy == "maskvlm":  # one modality per pair
                assert not (text_rows & batch["bool_masked_pos"].any(dim=1)).any()
            if image_policy == "none":
                assert not batch["bool_masked_pos"].any()


def test_policy_instances_and_names(tokenizer, image_processor, features):
    by_instance = collator(tokenizer, image_processor, text_policy=RandomTokenMasking(rate=0.5))(features[:16])
    by_name = collator(tokenizer, image_processor, text_policy="random", text_policy_kwargs={"rate": 0.5})(
        features[:16]
    )
    assert torch.equal(by_instance["labels"], by_name["labels"])
    with pytest.raises(ValueError, match="unknown text masking policy"):
        collator(tokenizer, image_processor, text_policy="nouns")


def test_same_seed_same_masks(tokenizer, image_processor, features):
    kwargs = dict(text_policy="content_words", image_policy="block", joint_policy="mlim", itm_negatives=True)
    a = collator(tokenizer, image_processor, seed=5, **kwargs)
    b = collator(tokenizer, image_processor, seed=5, **kwargs)
    c = collator(tokenizer, image_processor, seed=6, **kwargs)
    first_a, first_b, first_c = a(features[:32]), b(features[:32]), c(features[:32])
    assert all(torch.equal(first_a[k], first_b[k]) for k in first_a)
    assert not torch.equal(first_a["bool_masked_pos"], first_c["bool_masked_pos"])
    second = a(features[:32])
    assert not torch.equal(second["bool_masked_pos"], first_a["bool_masked_pos"]), "every batch needs fresh masks"
    a.reset_generator()
    assert torch.equal(a(features[:32])["labels"], first_a["labels"])


def test_one_generator_per_worker(tokenizer, image_processor, features, monkeypatch):
    class Worker:
        def __init__(self, id):
            self.id = id

    c = collator(tokenizer, image_processor, seed=10, image_policy="random")
    main = c(features[:16])["bool_masked_pos"]
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: Worker(1))
    worker1 = c(features[:16])["bool_masked_pos"]
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: None)
    reference = collator(tokenizer, image_processor, seed=11, image_policy="random")(features[:16])["bool_masked_pos"]
    assert torch.equal(worker1, reference), "worker 1 must use seed + 1"
    assert not torch.equal(worker1, main)


def test_dataloader_workers_draw_different_masks(tokenizer, image_processor, features):
    same = [features[0]] * 4  # identical items: only the generator can make masks differ
    c = collator(tokenizer, image_processor, seed=0, image_policy="random")
    loader = torch.utils.data.DataLoader(same * 4, batch_size=4, num_workers=2, collate_fn=c)
    masks = [batch["bool_masked_pos"] for batch in loader]
    assert len(masks) == 4
    assert not torch.equal(masks[0], masks[1]), "two workers produced identical masks"


def test_itm_negatives(tokenizer, image_processor, features):
    c = collator(tokenizer, image_processor, itm_negatives=0.5, text_policy="random", text_policy_kwargs={"rate": 0.5})
    processed = image_processor([f["image"] for f in features[:32]], return_tensors="pt")["pixel_values"]
    negatives = total = 0
    for _ in range(10):
        batch = c(features[:32])
        labels = batch["itm_labels"]
        assert labels.dtype == torch.long and labels.shape == (32,)
        same = (batch["pixel_values"] == processed).flatten(1).all(dim=1)
        assert torch.equal(same[labels == 1], torch.ones(int(labels.sum()), dtype=torch.bool))
        for row in (labels == 0).nonzero().squeeze(1).tolist():
            source = [j for j in range(32) if torch.equal(batch["pixel_values"][row], processed[j])]
            assert source and row not in source, f"row {row} kept its own image but is labelled a negative"
        assert (batch["labels"][labels == 0] == -100).all(), "no MLM targets on swapped pairs"
        negatives += int((labels == 0).sum())
        total += 32
    assert 0.35 < negatives / total < 0.65
    keep = collator(
        tokenizer, image_processor, itm_negatives=1.0, mlm_on_negatives=True, text_policy_kwargs={"rate": 0.5}
    )
    assert (keep(features[:8])["labels"] != -100).any()
    assert "itm_labels" not in collator(tokenizer, image_processor)(features[:4])


def test_precomputed_pixel_values_paths_and_bytes(tokenizer, image_processor, features, tmp_path):
    path = tmp_path / "scene.png"
    features[0]["image"].save(path)
    buffer = io.BytesIO()
    features[1]["image"].save(buffer, format="PNG")
    pixel_values = image_processor(features[2]["image"], return_tensors="np")["pixel_values"][0]
    items = [
        {**features[0], "image": str(path)},
        {**features[1], "image": {"bytes": buffer.getvalue(), "path": None}},
        {k: v for k, v in features[2].items() if k != "image"} | {"pixel_values": pixel_values},
    ]
    batch = collator(tokenizer, image_processor)(items)
    expected = image_processor([f["image"] for f in features[:3]], return_tensors="pt")["pixel_values"]
    assert torch.allclose(batch["pixel_values"], expected)


def test_truncation_and_padding(tokenizer, image_processor, features):
    long_feature = dict(features[0])
    long_feature["input_ids"] = long_feature["input_ids"] * 4
    for key in ("word_ids", "token_word_class", "token_concreteness"):
        long_feature[key] = long_feature[key] * 4
    c = collator(tokenizer, image_processor, max_length=20, pad_to_multiple_of=8)
    batch = c([long_feature, features[1]])
    assert batch["input_ids"].shape[1] == 24 and batch["attention_mask"][0].sum() == 20
    assert c.stats["truncated"] == 1


def _bad_files(tmp_path: Path) -> dict:
    good = tmp_path / "good.png"
    PIL.Image.new("RGB", (16, 16), (1, 2, 3)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("this is not an image")
    return {"good": good, "truncated": truncated, "not_image": not_image, "missing": tmp_path / "missing.png"}


@pytest.mark.parametrize("which", ["truncated", "not_image", "missing"])
def test_unreadable_image_file_names_item_and_file(tokenizer, image_processor, features, tmp_path, which):
    files = _bad_files(tmp_path)
    items = [{**features[0], "image": str(files["good"])}, {**features[1], "image": str(files[which])}]
    with pytest.raises(MaskVLDataError, match=rf"item 1 .*{files[which].name}"):
        collator(tokenizer, image_processor)(items)


def test_other_bad_items_name_the_item(tokenizer, image_processor, features):
    c = collator(tokenizer, image_processor)
    with pytest.raises(MaskVLDataError, match=r"item 1 .*zero size"):
        c([features[0], {**features[1], "image": PIL.Image.new("RGB", (0, 0))}])
    with pytest.raises(MaskVLDataError, match=r"item 0 \(field 'input_ids'\): empty"):
        c([{**features[0], "input_ids": [], "word_ids": [], "token_word_class": [], "token_concreteness": []}])
    with pytest.raises(MaskVLDataError, match=r"item 1 \(field 'image'\): missing"):
        c([features[0], {k: v for k, v in features[1].items() if k != "image"}])
    with pytest.raises(MaskVLDataError, match=r"item 0 \(field 'input_ids'\): missing.*CaptionTagger"):
        c([{"image": features[0]["image"], "caption": "a dog"}])
    with pytest.raises(MaskVLDataError, match="item 0: token feature lengths differ"):
        c([{**features[0], "word_ids": features[0]["word_ids"][:-1]}])


def test_skip_mode_counts_and_reports(tokenizer, image_processor, features, tmp_path):
    files = _bad_files(tmp_path)
    c = collator(tokenizer, image_processor, on_error="skip")
    items = [
        features[0],
        {**features[1], "image": str(files["truncated"])},
        features[2],
        {**features[3], "input_ids": []},
    ]
    batch = c(items)
    assert batch["input_ids"].shape[0] == 2 and c.stats["skipped"] == 2
    assert c.report()["collator"]["skipped"] == 2
    with pytest.raises(MaskVLDataError, match="no usable item"):
        c([{**features[1], "image": str(files["not_image"])}])


def test_collator_is_fast(tokenizer, image_processor, features):
    """Not the bottleneck: a batch of 32 at 64x64 well under 50 ms with any policy (2 busy cores)."""
    rates = {}
    for text_policy in ("random", "top_concrete"):
        c = collator(
            tokenizer,
            image_processor,
            text_policy=text_policy,
            image_policy="block",
            joint_policy="maskvlm",
            itm_negatives=True,
        )
        c(features[:32])
        start = time.perf_counter()
        for _ in range(5):
            c(features[:32])
        rates[text_policy] = 5 * 32 / (time.perf_counter() - start)
    assert min(rates.values()) > 640, rates


def test_untagged_features_work_with_random_only(tokenizer, image_processor, features):
    plain = [{"input_ids": f["input_ids"], "image": f["image"]} for f in features[:16]]
    batch = collator(tokenizer, image_processor, text_policy="random", text_policy_kwargs={"rate": 0.5})(plain)
    masked = batch["labels"] != -100
    special = torch.isin(torch.where(masked, batch["labels"], 0), torch.tensor(tokenizer.all_special_ids))
    assert masked.any() and not (masked & special).any(), "special tokens must never be masked"
    with pytest.raises(ValueError, match="CaptionTagger"):
        collator(tokenizer, image_processor, text_policy="objects")(plain)


# ---- issue 16: dynamic text length, patch-drop noise ------------------------------------------------------------
def test_text_is_padded_to_each_batchs_longest_caption(tokenizer, image_processor, features):
    c = collator(tokenizer, image_processor, max_length=40)
    by_length = sorted(features, key=lambda f: len(f["input_ids"]))
    short, long = by_length[:8], by_length[-8:]
    assert len(short[-1]["input_ids"]) < len(long[-1]["input_ids"]) < 40
    for batch_features in (short, long, short[:4] + long[:1]):
        batch = c(batch_features)
        longest = max(len(f["input_ids"]) for f in batch_features)
        assert batch["input_ids"].shape[1] == batch["labels"].shape[1] == longest  # not max_length
        assert batch["attention_mask"].sum(1).tolist() == [len(f["input_ids"]) for f in batch_features]


def test_patch_drop_noise_is_seeded_and_changes_no_mask(tokenizer, image_processor, features):
    kwargs = dict(text_policy="random", image_policy="block", joint_policy="maskvlm", itm_negatives=0.5)
    plain = collator(tokenizer, image_processor, **kwargs)(features[:16])
    noisy = collator(tokenizer, image_processor, patch_drop_noise=True, **kwargs)(features[:16])
    again = collator(tokenizer, image_processor, patch_drop_noise=True, **kwargs)(features[:16])
    other = collator(tokenizer, image_processor, patch_drop_noise=True, **{**kwargs, "seed": 1})(features[:16])
    assert set(noisy) == set(plain) | {"patch_drop_noise"}
    for key, value in plain.items():
        assert torch.equal(noisy[key], value), key
    noise = noisy["patch_drop_noise"]
    assert noise.shape == (16, 64) and noise.dtype == torch.float32 and 0 <= noise.min() and noise.max() < 1
    assert torch.equal(noise, again["patch_drop_noise"]) and not torch.equal(noise, other["patch_drop_noise"])
