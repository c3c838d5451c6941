"""Image necessity (train_scripts/evaluate_image_necessity.py -> maskvl_train.image_necessity): evaluation masks, Δ of an image-blind model, end-to-end run."""

import json
import math
import os
from types import SimpleNamespace

import pytest
import torch
from maskvl_processing import OBJECT, STOP_OR_PUNCT, MaskVLDataCollator
from maskvl_processing.synthetic_scenes import make_synthetic_dataset
from maskvl_train import image_necessity as necessity
from maskvl_train.arguments import DataArguments, merge_repeated_flag
from maskvl_train.data import tag_dataset
from PIL import Image
from test_eval_checkpoints import IMAGE_SIZE, pretrained_checkpoint, tiny_checkpoint, tiny_tokenizer


@pytest.fixture(scope="module")
def features():
    tokenizer = tiny_tokenizer()
    tagged = tag_dataset(make_synthetic_dataset(40, seed=3, image_size=IMAGE_SIZE), tokenizer,
                                   DataArguments())
    columns = ("input_ids", "word_ids", "token_word_class", "token_concreteness")
    pixel_values = torch.randn(len(tagged), 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    rows = [{**{c: row[c] for c in columns}, "pixel_values": pixel_values[i]} for i, row in enumerate(tagged)]
    return rows, pixel_values


def collate(mask: str, rows, seed=0):
    collator = MaskVLDataCollator(tiny_tokenizer(), text_policy=necessity.build_eval_mask(mask, 0.15),
                                  image_size=IMAGE_SIZE, patch_size=8, seed=seed)
    return collator(rows), collator


@pytest.mark.parametrize("mask", necessity.EVAL_MASKS)
def test_eval_masks_put_mask_on_every_masked_position_and_are_seeded(mask, features):
    rows, _ = features
    batch, _ = collate(mask, rows)
    masked = batch["labels"] != -100
    assert masked.any(), f"{mask}: nothing masked in 40 captions"
    mask_id = tiny_tokenizer().mask_token_id
    assert (batch["input_ids"][masked] == mask_id).all(), "evaluation masks use [MASK] for every masked position"
    original = torch.nn.utils.rnn.pad_sequence([torch.tensor(r["input_ids"]) for r in rows], batch_first=True)
    assert torch.equal(batch["input_ids"][~masked], original[~masked])
    again, _ = collate(mask, rows)
    assert torch.equal(again["labels"], batch["labels"])


def _token_feature(rows, name, shape):
    out = torch.zeros(shape)
    for i, row in enumerate(rows):
        out[i, : len(row[name])] = torch.tensor(row[name], dtype=torch.float32)
    return out


def test_class_and_concreteness_masks_only_mask_words_of_their_class(features):
    rows, _ = features
    batch, _ = collate("objects", rows)
    classes = _token_feature(rows, "token_word_class", batch["labels"].shape).long()
    masked = batch["labels"] != -100
    assert ((classes[masked] & OBJECT) != 0).all()
    assert masked.any(dim=1).all(), "every synthetic caption names an object"
    batch, _ = collate("stop_words", rows)
    masked = batch["labels"] != -100
    assert ((classes[masked] & STOP_OR_PUNCT) != 0).all()
    for mask, threshold in necessity.CONCRETENESS_BINS.items():
        batch, _ = collate(mask, rows)
        concreteness = _token_feature(rows, "token_concreteness", batch["labels"].shape)
        masked = batch["labels"] != -100
        assert masked.any() and (concreteness[masked] > threshold).all(), mask


class TextOnlyLM(torch.nn.Module):
    """A fill-mask model that never looks at the image (logits from the token embedding only)."""

    def __init__(self, vocab_size, use_image=False):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab_size, vocab_size)
        self.use_image = use_image

    def forward(self, input_ids, attention_mask, pixel_values):
        logits = self.embed(input_ids)  # (B, T, V)
        if self.use_image:
            logits = logits + 3.0 * pixel_values.mean(dim=(1, 2, 3))[:, None, None] * self.embed.weight[0]
        return SimpleNamespace(logits=logits)


@pytest.mark.parametrize("mask", ["random", "content_words", "objects"])
def test_a_model_that_ignores_the_image_gets_zero_delta_and_one_that_uses_it_does_not(mask, features):
    rows, pixel_values = features
    torch.manual_seed(0)
    mismatch = torch.roll(torch.arange(len(rows)), 1)
    _, collator = collate(mask, rows, seed=5)
    blind = necessity.score_masks(TextOnlyLM(len(tiny_tokenizer())), rows, pixel_values, mismatch, collator, 16)
    assert blind["num_tokens"] > 0 and blind["num_captions_scored"] > 0
    for variant in ("delta_blank", "delta_mismatched"):  # paired per-token Δs are all 0: so is their interval
        assert blind[variant] == {"loss": 0.0, "exp_loss": 0.0, "acc@1": 0.0, "acc@5": 0.0,
                                  "loss_ci95": [0.0, 0.0], "acc@1_ci95": [0.0, 0.0]}
    seeing = necessity.score_masks(TextOnlyLM(len(tiny_tokenizer()), use_image=True), rows, pixel_values, mismatch,
                                   collator, 16)
    assert seeing["num_tokens"] == blind["num_tokens"], "the same masked positions with and without the image"
    assert seeing["delta_blank"]["loss"] != 0.0 and seeing["delta_mismatched"]["loss"] != 0.0
    for variant in ("delta_blank", "delta_mismatched"):  # paired bootstrap 95% intervals over the masked tokens
        for metric in ("loss", "acc@1"):
            low, high = seeing[variant][f"{metric}_ci95"]
            assert low - 1e-6 <= seeing[variant][metric] <= high + 1e-6, (variant, metric, low, high)
        low, high = seeing[variant]["loss_ci95"]
        assert low < high, f"{variant}: the per-token loss changes differ, the interval has a width"


def test_colour_row_of_the_image_use_check_masks_colour_words_only():
    import datasets
    hand_made = datasets.Dataset.from_dict({
        "caption": ["a large red circle.", "a striped Gray star and a small square."],
        "words": [["a", "large", "red", "circle", "."], ["a", "striped", "Gray", "star", "and", "a", "small", "square", "."]],
        "word_classes": [["stop", "attribute", "attribute", "object", "stop"],
                         ["stop", "attribute", "attribute", "object", "stop", "stop", "attribute", "object", "stop"]],
    })
    relabelled, data_args = necessity.colour_words_only(hand_made, DataArguments())
    assert data_args.attribute_vocab is None  # the data set's own classes are relabelled instead
    assert relabelled["word_classes"] == [["stop", "content", "attribute", "object", "stop"],
                                          ["stop", "content", "attribute", "object", "stop", "stop", "content",
                                           "object", "stop"]]
    assert hand_made["word_classes"][0][1] == "attribute", "the input data set is left as it was"
    # a data set without word classes is tagged with the colour terms as the attribute vocabulary
    plain = hand_made.remove_columns(["words", "word_classes"])
    same, plain_args = necessity.colour_words_only(plain, DataArguments())
    assert same is plain and set(plain_args.attribute_vocab) == set(necessity.COLOUR_TERMS)

    # on the embedded scenes the attribute mask then hits colour words only, and a colour word in every caption with one
    scenes = make_synthetic_dataset(60, seed=4, image_size=IMAGE_SIZE)
    colours, colour_args = necessity.colour_words_only(scenes, DataArguments())
    tokenizer = tiny_tokenizer()
    tagged = tag_dataset(colours, tokenizer, colour_args)
    rows = [{**{c: row[c] for c in ("input_ids", "word_ids", "token_word_class", "token_concreteness")},
             "pixel_values": torch.zeros(3, IMAGE_SIZE, IMAGE_SIZE)} for row in tagged]
    batch, _ = collate("attributes", rows)
    masked_rows = (batch["labels"] != -100).any(dim=1)
    has_colour = torch.tensor([any(w in necessity.COLOUR_TERMS for w in words) for words in scenes["words"]])
    assert 0 < int(has_colour.sum()) < len(scenes)
    assert torch.equal(masked_rows, has_colour)
    for labels in batch["labels"]:
        pieces = labels[labels != -100].tolist()
        if pieces:
            assert tokenizer.decode(pieces).replace(" ", "") in necessity.COLOUR_TERMS


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown eval masks.*nouns"):
        necessity.ImageNecessityArguments(checkpoint=[tiny_checkpoint()], eval_masks=["nouns"])
    with pytest.raises(FileNotFoundError, match="missing-ckpt"):
        necessity.ImageNecessityArguments(checkpoint=[str(tmp_path / "missing-ckpt")])
    with pytest.raises(ValueError, match="exactly one \\[MASK\\]"):
        necessity.ImageNecessityArguments(checkpoint=[tiny_checkpoint()], prompts=["a photo"])


@pytest.mark.slow
def test_end_to_end_on_pretraining_output_and_a_hand_built_checkpoint(tmp_path):
    first, second = pretrained_checkpoint("objects"), tiny_checkpoint("random")
    out = tmp_path / "necessity"
    report = necessity.main([
        "--checkpoint", first, second, "--output_dir", str(out), "--eval_size", "24", "--batch_size", "32",
    ])
    saved = json.loads((out / "image_necessity.json").read_text())
    assert saved["schema_version"] == 1 and saved["eval_data"]["split"] == "test"
    assert saved["eval_data"]["num_examples"] == 24
    # column names: the pre-training policy recorded in training_args.json, else the folder name
    assert [c["name"] for c in saved["checkpoints"]] == ["objects", os.path.basename(second)]
    assert saved["checkpoints"][0]["pretraining_policy"] == "objects"
    for result in saved["checkpoints"]:
        assert list(result["masks"]) == list(necessity.EVAL_MASKS)
        for mask, row in result["masks"].items():
            for variant in ("with_image", "blank", "mismatched"):
                assert set(row[variant]) == {"loss", "exp_loss", "acc@1", "acc@5"}
            if row["num_tokens"]:
                assert row["delta_blank"]["loss"] == pytest.approx(row["blank"]["loss"] - row["with_image"]["loss"])
                assert math.isclose(row["with_image"]["exp_loss"], math.exp(row["with_image"]["loss"]), rel_tol=1e-9)
        detection = result["object_detection"]
        assert set(detection) == set(necessity.PAPER_PROMPTS)
        assert set(next(iter(detection.values()))) == {"precision@1", "precision@5", "precision@10", "num_images"}
        assert result["model_index"][0]["task"]["type"] == "fill-mask"
    # two differently initialised checkpoints give different numbers
    assert saved["checkpoints"][0]["masks"]["random"] != saved["checkpoints"][1]["masks"]["random"]
    matrix = saved["accuracy_matrix"]
    assert matrix["columns"] == [c["name"] for c in saved["checkpoints"]]
    assert matrix["rows"] == list(necessity.EVAL_MASKS)
    assert len(matrix["values"]) == len(necessity.EVAL_MASKS) and all(len(r) == 2 for r in matrix["values"])
    assert matrix["values"][0][1] == saved["checkpoints"][1]["masks"]["random"]["with_image"]["acc@5"]
    markdown = (out / "image_necessity.md").read_text()
    assert "| eval mask | tokens | exp loss: with |" in markdown and "A photo of a [MASK]." in markdown
    with Image.open(out / "image_necessity_delta_loss.png") as image:
        assert image.size[0] > 400
    assert report["checkpoints"][0]["checkpoint"] == first


def test_pretraining_policy_is_read_from_training_args(tmp_path):
    (tmp_path / "training_args.json").write_text(json.dumps(
        {"text_masking": "random", "text_mask_rate": 0.4, "joint_masking": "maskvlm"}))
    assert necessity.pretraining_policy(str(tmp_path)) == "random@0.4+maskvlm"
    (tmp_path / "training_args.json").write_text(json.dumps({"text_masking": "objects", "joint_masking": None}))
    assert necessity.pretraining_policy(str(tmp_path)) == "objects"
    assert necessity.pretraining_policy(str(tmp_path / "elsewhere")) is None


def test_checkpoint_flag_may_be_repeated():
    merged = merge_repeated_flag(["--checkpoint", "a", "--eval_size", "8", "--checkpoint", "b", "c"])
    assert merged == ["--eval_size", "8", "--checkpoint", "a", "b", "c"]
    assert merge_repeated_flag(["config.yaml", "--eval_size", "8"]) == ["config.yaml", "--eval_size", "8"]
