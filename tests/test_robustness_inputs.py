"""Hostile captions and collator inputs (issue 14), processing side only: every bad caption is screened by one rule
(`caption_problem`) in the tokenizer training and the tagger, before anything reads it; the collator names bad ids
and refuses settings it cannot honour."""

import numpy as np
import pytest
from fuzz_data import bad_captions, odd_captions
from maskvl_processing import (
    CaptionTagger,
    MaskVLDataCollator,
    MaskVLDataError,
    MaskVLImageProcessor,
    train_wordpiece_tokenizer,
)
from maskvl_processing.synthetic_scenes import make_synthetic_dataset
from maskvl_processing.word_classes import ATTRIBUTE, CONTENT, OBJECT

UNTOKENISABLE = ("replacement_chars_only", "combining_marks_only")  # pass the string checks, give no word-piece


@pytest.fixture(scope="module")
def tokenizer():
    return train_wordpiece_tokenizer(make_synthetic_dataset(60, seed=3)["caption"], vocab_size=200)


@pytest.fixture(scope="module")
def image_processor():
    return MaskVLImageProcessor(size={"height": 16, "width": 16}, patch_size=8)


# ---- tokenizer training: screened before it reads a caption --------------------------------------------------
@pytest.mark.parametrize("name", sorted(set(bad_captions()) - set(UNTOKENISABLE)))
def test_tokenizer_training_names_a_bad_caption(name):
    captions = ["a red circle", "a blue square", bad_captions()[name], "a green star"]
    with pytest.raises(MaskVLDataError, match=r"caption 2 of the tokenizer training corpus: "):
        train_wordpiece_tokenizer(captions, vocab_size=100)


def test_tokenizer_training_skip_mode_leaves_bad_captions_out():
    good = ["a red circle", "a blue square"]
    reference = train_wordpiece_tokenizer(good, vocab_size=100)
    skipped = train_wordpiece_tokenizer(good[:1] + list(bad_captions().values()) + good[1:], vocab_size=100,
                                        on_error="skip")
    assert skipped.get_vocab() == reference.get_vocab()
    with pytest.raises(MaskVLDataError, match="no usable caption"):
        train_wordpiece_tokenizer([None, ""], vocab_size=100, on_error="skip")


# ---- the tagger ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(bad_captions()))
def test_tagger_names_every_bad_caption(tokenizer, name):
    with pytest.raises(MaskVLDataError, match=r"item 7 \(field 'caption'\): "):
        CaptionTagger(tokenizer)({"caption": ["a red circle", bad_captions()[name]]}, [6, 7])


def test_tagger_skips_untokenisable_captions_and_counts_them(tokenizer):
    captions = [bad_captions()[name] for name in UNTOKENISABLE] + list(odd_captions().values())
    tagger = CaptionTagger(tokenizer, on_error="skip")
    out = tagger({"caption": captions}, list(range(len(captions))))
    assert [len(ids) > 0 for ids in out["input_ids"]] == [False] * len(UNTOKENISABLE) + [True] * len(odd_captions())
    assert tagger.stats["skipped"] == len(UNTOKENISABLE) and tagger.stats["tagged"] == len(odd_captions())


def test_untokenisable_caption_never_reaches_a_word_class_batch(tokenizer, image_processor):
    """Today's failure: a U+FFFD caption tagged elsewhere ([CLS] [SEP] only) crashed the objects policy with a bare
    RuntimeError; the collator now names it (or skips it)."""
    specials = {"input_ids": [tokenizer.cls_token_id, tokenizer.sep_token_id], "word_ids": [-1, -1],
                "token_word_class": [0, 0], "token_concreteness": [0.0, 0.0], "image": np.zeros((16, 16, 3), np.uint8)}
    collator = MaskVLDataCollator(tokenizer, image_processor, text_policy="objects", seed=0)
    with pytest.raises(MaskVLDataError, match=r"item 0 \(field 'input_ids'\): no text token"):
        collator([specials, specials])
    good = CaptionTagger(tokenizer)({"caption": ["a red circle"]}, [0])
    good = {**{k: good[k][0] for k in CaptionTagger.output_columns}, "image": np.zeros((16, 16, 3), np.uint8)}
    lenient = MaskVLDataCollator(tokenizer, image_processor, text_policy="objects", seed=0, on_error="skip")
    assert lenient([specials, good])["input_ids"].shape[0] == 1 and lenient.stats["skipped"] == 1


def test_gold_object_and_attribute_lists_set_the_word_classes(tokenizer):
    batch = {"caption": ["a red circle near a blue square", "a red circle near a blue square"],
             "objects": [["square"], None], "attributes": [["blue"], None]}
    out = CaptionTagger(tokenizer)(batch, [0, 1])
    guessed, gold = out["token_word_class"][1], out["token_word_class"][0]
    tokens = tokenizer.convert_ids_to_tokens(out["input_ids"][0])
    flags = {token: flag for token, flag in zip(tokens, gold)}
    assert flags["square"] & OBJECT and not flags["circle"] & OBJECT  # only the listed object
    assert flags["blue"] & ATTRIBUTE and not flags["red"] & ATTRIBUTE
    assert flags["square"] & CONTENT
    guessed_flags = {token: flag for token, flag in zip(tokens, guessed)}
    assert guessed_flags["circle"] & OBJECT  # a row without a list keeps the tagger's guess
    with pytest.raises(MaskVLDataError, match=r"item 4 \(field 'objects'\): must be a list of words"):
        CaptionTagger(tokenizer)({"caption": ["a red circle"], "objects": ["circle"]}, [4])
    assert CaptionTagger(tokenizer, object_column=None)({"caption": ["a red circle"], "objects": ["circle"]}, [4])


# ---- the collator ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("ids", "message"), [
    ([2, 10**6, 3], "token id 1000000 is outside the vocabulary"),
    ([2, -5, 3], "token id -5 is outside the vocabulary"),
    ([2, 1.5, 3], "token ids must be a flat list of integers"),
    ([2, "x", 3], "token ids must be a flat list of integers"),
    ([2, None, 3], "token ids must be a flat list of integers"),
])
def test_collator_names_bad_token_ids(tokenizer, image_processor, ids, message):
    image = np.zeros((16, 16, 3), np.uint8)
    good = {"input_ids": [2, 7, 3], "image": image}
    with pytest.raises(MaskVLDataError, match=rf"item 1 \(field 'input_ids'\): {message}"):
        MaskVLDataCollator(tokenizer, image_processor, seed=0)([good, {"input_ids": ids, "image": image}])


@pytest.mark.parametrize("max_length", [0, 1, -3, 2.5])
def test_collator_refuses_a_max_length_without_room_for_text(tokenizer, image_processor, max_length):
    with pytest.raises(ValueError, match=r"max_length must be an int >= 2"):
        MaskVLDataCollator(tokenizer, image_processor, max_length=max_length)
    assert MaskVLDataCollator(tokenizer, image_processor, max_length=2, seed=0)(
        [{"input_ids": [2, 7, 8, 3], "image": np.zeros((16, 16, 3), np.uint8)}])["input_ids"].shape == (1, 2)
