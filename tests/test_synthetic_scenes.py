"""The embedded synthetic data set: schema, truthfulness of captions, statistics, no text leaks."""
import math
from collections import Counter, defaultdict

import numpy as np
import pytest

import datasets
from maskvl_processing import synthetic_scenes as ss

N = 600  # examples in the shared fixture (64x64)


@pytest.fixture(scope="module")
def ds():
    return ss.make_synthetic_dataset(N, seed=123)


@pytest.fixture(scope="module")
def rows(ds):
    return list(ds)


def _pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def _scene_object(entry) -> ss.SceneObject:
    return ss.SceneObject(**entry)


def test_schema_and_alignment(ds, rows):
    assert set(ds.column_names) == set(ss.synthetic_features())
    assert isinstance(ds.features["image"], datasets.Image)
    vocab = {
        "object": set(ss.SHAPES),
        "attribute": set(ss.COLORS) | set(ss.SIZES) | set(ss.TEXTURES),
        "relationship": {w for words in ss.RELATIONS.values() for w in words if w not in ss.STOP_WORDS},
    }
    for row in rows:
        words, classes, owners = row["words"], row["word_classes"], row["word_object_ids"]
        assert len(words) == len(classes) == len(owners)
        assert ss.detokenize(words) == row["caption"]
        assert ss.tokenize_caption(row["caption"]) == words
        for word, cls in zip(words, classes):
            assert cls in ss.WORD_CLASSES
            if cls == "stop":
                assert word in ss.PUNCTUATION or word in ss.STOP_WORDS, word
            elif cls == "content":
                assert word not in ss.STOP_WORDS and all(word not in v for v in vocab.values()), word
            else:
                assert word in vocab[cls], (word, cls)
        object_words = [w for w, c in zip(words, classes) if c == "object"]
        assert row["objects"] == object_words == [o["shape"] for o in row["layout"]]
        assert len(row["layout"]) in (1, 2, 3)


def test_relation_phrase_classes():
    # "to the left of": only "left" is the relationship word; above/below/near are relationship words.
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(400):
        _, _, words, classes, _ = ss.sample_scene(rng)
        for k, word in enumerate(words):
            if word in ("left", "right"):
                assert words[k - 2 : k + 2] == ["to", "the", word, "of"]
                assert classes[k - 2 : k + 2] == ["stop", "stop", "relationship", "stop"]
            if word in ("above", "below", "near"):
                assert classes[k] == "relationship"
            if classes[k] == "relationship":
                seen.add(word)
    assert seen == {"left", "right", "above", "below", "near"}


def test_attribute_words_match_drawn_objects(rows):
    kind_of = {**{c: "color" for c in ss.COLORS}, **{s: "size" for s in ss.SIZES}, **{t: "texture" for t in ss.TEXTURES}}
    checked = 0
    for row in rows:
        for word, cls, owner in zip(row["words"], row["word_classes"], row["word_object_ids"]):
            if cls in ("attribute", "object"):
                assert owner >= 0
                obj = row["layout"][owner]
                if cls == "object":
                    assert obj["shape"] == word
                else:
                    assert obj[kind_of[word]] == word
                    checked += 1
    assert checked > N  # captions do mention attributes


def test_render_matches_layout(rows):
    """Each object is painted in its colour with its texture and size; nothing else is drawn."""
    size = 64
    interior_fill = defaultdict(list)
    for row in rows[:300]:
        pixels = _pixels(row["image"])
        explained = np.zeros((size, size), dtype=bool)
        for entry in row["layout"]:
            obj = _scene_object(entry)
            lo, hi = ss.SIZES[obj.size]
            assert lo * size / 2 <= obj.radius <= hi * size / 2
            assert obj.radius <= obj.x <= size - obj.radius and obj.radius <= obj.y <= size - obj.radius
            silhouette, painted, (top, left) = ss.object_masks(obj, size)
            h, w = painted.shape
            box = pixels[top : top + h, left : left + w]
            colour_match = np.all(box == ss.COLORS[obj.color], axis=-1)
            assert np.array_equal(colour_match & silhouette, painted)  # painted exactly, in its colour
            explained[top : top + h, left : left + w] |= painted
            interior = ss._erode(silhouette, max(1, round(size / 40)))
            if interior.sum() >= 9:
                interior_fill[obj.texture].append(colour_match[interior].mean())
        background = np.all(pixels == ss.BACKGROUND, axis=-1)
        assert np.array_equal(~background, explained)  # no stray pixels, no overlaps hidden
    means = {t: float(np.mean(v)) for t, v in interior_fill.items()}
    assert means["solid"] == 1.0 and means["hollow"] == 0.0
    assert 0.0 < means["dotted"] < means["striped"] < 1.0
    # Sizes differ clearly: every large object is wider than every small one.
    radii = defaultdict(list)
    for row in rows:
        for entry in row["layout"]:
            radii[entry["size"]].append(entry["radius"])
    assert min(radii["large"]) > 1.4 * max(radii["small"])


def test_relations_hold_geometrically(rows):
    counts = Counter()
    for row in rows:
        for rel in row["relations"]:
            a, b = (_scene_object(row["layout"][rel[k]]) for k in ("subject", "object"))
            name = rel["relation"]
            counts[name] += 1
            assert name in ss.RELATIONS
            assert name in row["words"]  # the caption states the relation
            if name == "left":
                assert a.x + a.radius < b.x - b.radius
            elif name == "right":
                assert a.x - a.radius > b.x + b.radius
            elif name == "above":
                assert a.y + a.radius < b.y - b.radius
            elif name == "below":
                assert a.y - a.radius > b.y + b.radius
            else:
                assert math.hypot(a.x - b.x, a.y - b.y) - a.radius - b.radius <= 0.1 * 64
            # The subject precedes the object in the caption, so "A rel B" reads correctly.
            owners = row["word_object_ids"]
            assert owners.index(rel["subject"]) < owners.index(rel["object"])
    assert set(counts) == set(ss.RELATIONS)


def test_relation_holds_on_pixels():
    """For left/right/above/below every painted pixel of A is on that side of every pixel of B."""
    rng = np.random.default_rng(7)
    seen = set()
    for _ in range(300):
        scene, *_ = ss.sample_scene(rng, 64)
        for s, rel, o in scene.relations:
            if rel == "near":
                continue
            axis = 0 if rel in ("left", "right") else 1  # 0: columns (x), 1: rows (y)
            extents = []
            for obj in (scene.objects[s], scene.objects[o]):
                _, painted, (top, left) = ss.object_masks(obj, 64)
                coords = np.nonzero(painted.any(axis=axis))[0] + (left if axis == 0 else top)
                extents.append((coords.min(), coords.max()))
            (a_min, a_max), (b_min, b_max) = extents
            assert a_max < b_min if rel in ("left", "above") else a_min > b_max
            seen.add(rel)
    assert seen == {"left", "right", "above", "below"}


def test_statistics_in_documented_ranges(ds):
    stats = ss.caption_statistics(ds)
    assert stats["num_captions"] == N
    assert 10 <= stats["tokens_mean"] <= 20
    assert 0.40 <= stats["stop_fraction"] <= 0.60
    assert stats["tokens_min"] <= 8  # short captions with a single grounded word exist
    assert 0.05 <= stats["grounded_le2_fraction"] <= 0.5
    # Exact expectation vs a Monte-Carlo estimate of Bernoulli(0.15) masking.
    rng = np.random.default_rng(0)
    lengths = np.array([len(w) for w in ds["words"]])
    draws = rng.random((200, len(lengths), lengths.max())) < 0.15
    valid = np.arange(lengths.max())[None, None, :] < lengths[None, :, None]
    none_masked = ~(draws & valid).any(axis=-1)
    assert abs(none_masked.mean() - stats["no_mask_fraction"]) < 0.01
    stop = np.zeros((len(lengths), lengths.max()), dtype=bool)
    for i, classes in enumerate(ds["word_classes"]):
        stop[i, : len(classes)] = [c == "stop" for c in classes]
    masked = draws & valid
    assert abs((masked & stop[None]).sum() / masked.sum() - stats["masked_stop_fraction"]) < 0.01


def test_statistics_on_plain_captions():
    plain = datasets.Dataset.from_dict({"caption": ["a picture of a circle.", "two red squares near the sea"]})
    stats = ss.caption_statistics(plain)
    # tokens: [a picture of a circle .] -> 6 (4 stop); [two red squares near the sea] -> 6 (1 stop)
    assert stats["tokens_mean"] == 6 and stats["tokens_min"] == 6
    assert stats["stop_fraction"] == pytest.approx(5 / 12)
    assert stats["no_mask_fraction"] == pytest.approx(0.85**6)
    assert math.isnan(stats["grounded_le2_fraction"])


def test_determinism_by_seed():
    a = ss.make_synthetic_dataset(40, seed=5)
    b = ss.make_synthetic_dataset(40, seed=5)
    c = ss.make_synthetic_dataset(40, seed=6)
    assert a["caption"] == b["caption"] and a["layout"] == b["layout"]
    assert all(np.array_equal(_pixels(x), _pixels(y)) for x, y in zip(a["image"], b["image"]))
    assert a["caption"] != c["caption"]
    assert not all(np.array_equal(_pixels(x), _pixels(y)) for x, y in zip(a["image"], c["image"]))


def make_synthetic_splits(train_size: int, eval_size: int, seed: int = 0, image_size: int = 64) -> datasets.DatasetDict:
    """Train and validation splits from their independent streams (`synthetic_split_seed`), as the loaders make them."""
    return datasets.DatasetDict(
        train=ss.make_synthetic_dataset(train_size, ss.synthetic_split_seed(seed, "train"), image_size),
        validation=ss.make_synthetic_dataset(eval_size, ss.synthetic_split_seed(seed, "validation"), image_size),
    )


def test_splits_do_not_overlap():
    splits = make_synthetic_splits(300, 100, seed=0)
    assert len(splits["train"]) == 300 and len(splits["validation"]) == 100
    key = lambda row: (row["caption"], _pixels(row["image"]).tobytes())  # noqa: E731
    train = {key(r) for r in splits["train"]}
    assert not any(key(r) in train for r in splits["validation"])
    # The train split does not depend on the size of the eval split.
    assert make_synthetic_splits(20, 5, seed=0)["train"]["caption"] == splits["train"]["caption"][:20]


def test_small_images_keep_every_relation_and_scene_size():
    """At 16 px the redraw of unplaceable scenes still yields every relation and 1-3 objects."""
    ds = ss.make_synthetic_dataset(300, seed=2, image_size=16)
    assert {rel["relation"] for row in ds for rel in row["relations"]} == set(ss.RELATIONS)
    assert {len(row["layout"]) for row in ds} == {1, 2, 3}


def test_too_small_image_size_is_refused():
    with pytest.raises(ValueError, match="image_size must be >= 16"):
        ss.make_synthetic_dataset(3, image_size=12)


@pytest.mark.parametrize("image_size", [16, 20, 32, 96, 224])
def test_other_image_sizes(image_size):
    """Every size from the documented minimum (16 px) works; small ones used to fail to place some scenes."""
    ds = ss.make_synthetic_dataset(200 if image_size <= 20 else 30, seed=1, image_size=image_size)
    for row in ds:
        assert row["image"].size == (image_size, image_size) and row["image"].mode == "RGB"
        for entry in row["layout"]:
            obj = _scene_object(entry)
            assert obj.radius <= obj.x <= image_size - obj.radius
            assert obj.radius <= obj.y <= image_size - obj.radius
            for rel in row["relations"]:
                a, b = (_scene_object(row["layout"][rel[k]]) for k in ("subject", "object"))
                assert ss.relation_holds(a, b, rel["relation"], image_size)


def _naive_bayes_accuracy(examples, alpha=1.0):
    """Text-only predictor: P(label | every other word of the caption and the two neighbours).

    ``examples`` are (label, context features). Trained on the first half, scored on the rest.
    """
    half = len(examples) // 2
    labels = Counter(label for label, _ in examples[:half])
    feature_counts = defaultdict(Counter)
    vocab = set()
    for label, feats in examples[:half]:
        feature_counts[label].update(feats)
        vocab.update(feats)
    totals = {label: sum(c.values()) for label, c in feature_counts.items()}
    correct = 0
    for label, feats in examples[half:]:
        def score(y):
            s = math.log(labels[y])
            for f in feats:
                s += math.log((feature_counts[y][f] + alpha) / (totals[y] + alpha * len(vocab)))
            return s
        correct += max(labels, key=score) == label
    return correct / (len(examples) - half)


def _masked_examples(captions, target_class, vocabulary):
    examples = []
    for words, classes in captions:
        for k, (word, cls) in enumerate(zip(words, classes)):
            if cls == target_class and word in vocabulary:
                context = [w for j, w in enumerate(words) if j != k]
                left = words[k - 1] if k else "<s>"
                right = words[k + 1] if k + 1 < len(words) else "</s>"
                examples.append((word, context + [f"L={left}", f"R={right}"]))
    return examples


def _max_feature_skew(examples, min_count=100):
    """Largest excess, in binomial standard deviations, of a label's share among the
    examples with one context feature (seen at least ``min_count`` times) over its
    overall share."""
    overall = Counter(label for label, _ in examples)
    by_feature = defaultdict(Counter)
    for label, feats in examples:
        for f in set(feats):
            by_feature[f][label] += 1
    worst = 0.0
    for counts in by_feature.values():
        n = sum(counts.values())
        if n < min_count:
            continue
        for label, k in counts.items():
            p = overall[label] / len(examples)
            worst = max(worst, (k / n - p) / math.sqrt(p * (1 - p) / n))
    return worst


def _assert_unguessable(examples, vocabulary, chance):
    assert _naive_bayes_accuracy(examples) < chance + 0.04, vocabulary
    # No single context word (template word, neighbour, other grounded word) shifts the label:
    # 5 sigma over ~100 features x 10 labels keeps false alarms rare.
    assert _max_feature_skew(examples) < 5.0, vocabulary


def _captions(n, seed):
    rng = np.random.default_rng(seed)
    return [ss.sample_scene(rng)[2:4] for _ in range(n)]


def test_grounded_words_cannot_be_guessed_from_text():
    captions = _captions(3000, seed=11)
    for vocabulary, target_class in (
        (ss.SHAPES, "object"),
        (tuple(ss.COLORS), "attribute"),
        (ss.TEXTURES, "attribute"),
        (tuple(ss.SIZES), "attribute"),
    ):
        examples = _masked_examples(captions, target_class, set(vocabulary))
        frequencies = Counter(label for label, _ in examples)
        chance = 1 / len(vocabulary)
        assert set(frequencies) == set(vocabulary)
        assert max(frequencies.values()) / len(examples) < chance + 0.03  # balanced vocabulary
        _assert_unguessable(examples, vocabulary, chance)
    # Relations: the frame "to the ___ of" tells left/right (50/50) from above/below/near (1/3 each),
    # but nothing in the text tells which one.
    examples = _masked_examples(captions, "relationship", set(ss.RELATIONS))
    in_frame = [(y, f) for y, f in examples if y in ("left", "right")]
    bare = [(y, f) for y, f in examples if y not in ("left", "right")]
    _assert_unguessable(in_frame, ("left", "right"), 1 / 2)
    _assert_unguessable(bare, ("above", "below", "near"), 1 / 3)


def _leaky(captions, rewrite):
    out = []
    for words, _ in captions:
        words = rewrite(list(words))
        out.append((words, ["object" if w in ss.SHAPES else "x" for w in words]))
    return out


def test_leak_checks_detect_leaks():
    """The checks above are strong enough to find real leaks (guards the test itself)."""
    captions = _captions(3000, seed=11)
    chance = 1 / len(ss.SHAPES)
    # A strong leak: circles always get the word "round" in front.
    strong = _leaky(captions, lambda ws: " ".join("round " + w if w == "circle" else w for w in ws).split())
    assert _naive_bayes_accuracy(_masked_examples(strong, "object", set(ss.SHAPES))) > chance + 0.05
    # A weak leak: single triangles are always captioned with one particular template.
    def triangle_template(words):
        if words.count("triangle") == 1 and sum(w in ss.SHAPES for w in words) == 1:
            return ["a", "simple", "drawing", "of", "a", "triangle", "."]
        return words
    weak = _masked_examples(_leaky(captions, triangle_template), "object", set(ss.SHAPES))
    assert _max_feature_skew(weak) > 5.0


def test_generation_speed_is_reasonable():
    import time

    start = time.perf_counter()
    ss.make_synthetic_dataset(500, seed=0)
    assert time.perf_counter() - start < 5.0  # ~0.4 s here; 2,000 take ~1.5 s
