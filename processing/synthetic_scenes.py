"""Procedural image–caption scenes: the embedded default data set (no download).

Each example is a small picture of one to three shapes with attributes (colour,
size, texture) and at most one spatial relation, and a caption describing it in
ordinary English with ordinary stop-words::

    >>> ds = make_synthetic_dataset(4, seed=0)
    >>> ds[0]["caption"]            # e.g. 'a small red circle is to the left of a blue square.'

Design rules (see ``docs/synthetic_data.md``):

* **Nothing can be guessed from the text alone.** Shape, colour, size, texture and
  relation are each drawn uniformly and independently of one another and of the
  template; no vocabulary word starts with a vowel, so the article ("a"/"an")
  never gives a word away. The only structural cue is the frame of a relation:
  "to the ___ of" is always "left" or "right" (50/50), a bare "___" is always
  "above", "below" or "near" (1/3 each).
* **The caption is true of the image.** Every mentioned attribute is rendered
  (fill colour, two clearly different sizes, solid / hollow / striped / dotted
  fill) and every relation holds geometrically (placement is sampled until it
  does). Every drawn object is mentioned, so ``objects`` is exactly the shape
  nouns of the caption.
* **Caption statistics resemble COCO**: 6–24 tokens, about half of them
  stop-words or punctuation, some captions with a single grounded word
  ("a picture of a circle."). :func:`caption_statistics` measures this.
* **Deterministic**: everything comes from ``numpy.random.default_rng(seed)``;
  no global random state.

Word classes (column ``word_classes``, aligned with ``words``):

``stop``          stop-words (:data:`STOP_WORDS`) and punctuation
``object``        shape nouns (:data:`SHAPES`)
``attribute``     colour, size and texture adjectives
``relationship``  the spatial-relation word that is not a stop-word
                  ("left" in "to the left of"; "above", "below", "near")
``content``       every other word ("picture", "image", "shows", "shapes", "two")
"""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

import datasets

__all__ = [
    "SHAPES",
    "COLORS",
    "SIZES",
    "TEXTURES",
    "RELATIONS",
    "STOP_WORDS",
    "WORD_CLASSES",
    "GROUNDED_CLASSES",
    "SceneObject",
    "Scene",
    "sample_scene",
    "render_scene",
    "object_masks",
    "texture_pattern",
    "relation_holds",
    "tokenize_caption",
    "detokenize",
    "make_synthetic_dataset",
    "synthetic_split_seed",
    "caption_statistics",
    "synthetic_features",
]

# --------------------------------------------------------------------------------------
# Vocabularies. All words start with a consonant so that "a"/"an" leaks nothing.
# --------------------------------------------------------------------------------------

SHAPES: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "diamond",
    "hexagon", "pentagon", "cross", "heart", "crescent",
)
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "green": (34, 150, 34),
    "blue": (31, 90, 220),
    "yellow": (235, 190, 0),
    "purple": (140, 50, 190),
    "pink": (245, 110, 185),
    "brown": (135, 80, 35),
    "black": (20, 20, 20),
}
# Diameter as a fraction of the image side: (min, max). The two ranges are far
# apart (about 2x) so "small" and "large" are visible at every image size.
SIZES: dict[str, tuple[float, float]] = {"small": (0.20, 0.23), "large": (0.34, 0.38)}
TEXTURES: tuple[str, ...] = ("solid", "hollow", "striped", "dotted")
# Relation -> its words. The relationship word is the one not in STOP_WORDS.
RELATIONS: dict[str, tuple[str, ...]] = {
    "left": ("to", "the", "left", "of"),
    "right": ("to", "the", "right", "of"),
    "above": ("above",),
    "below": ("below",),
    "near": ("near",),
}
BACKGROUND: tuple[int, int, int] = (250, 250, 250)
SIZES_LIST, COLOR_LIST, RELATION_LIST = tuple(SIZES), tuple(COLORS), tuple(RELATIONS)

# NLTK's English stop-word list (without contractions) plus "also" (spaCy's list has it).
# "above" and "below" are removed: here they are the relationship words, as in
# Bitton et al.'s Relationships class (ADP in a relation vocabulary).
STOP_WORDS: frozenset[str] = frozenset(
    """
    i me my myself we our ours ourselves you your yours yourself yourselves he him his
    himself she her hers herself it its itself they them their theirs themselves what
    which who whom this that these those am is are was were be been being have has had
    having do does did doing a an the and but if or because as until while of at by for
    with about against between into through during before after to from up down in out
    on off over under again further then once here there when where why how all any both
    each few more most other some such no nor not only own same so than too very s t can
    will just don should now also
    """.split()
)
PUNCTUATION: frozenset[str] = frozenset(".,:;!?")
WORD_CLASSES: tuple[str, ...] = ("stop", "content", "object", "attribute", "relationship")
# Classes whose words are fixed by the image (used for "grounded words" statistics).
GROUNDED_CLASSES: frozenset[str] = frozenset({"object", "attribute", "relationship"})

# Probability that a caption mentions each attribute of an object (independently).
MENTION_PROBS: dict[str, float] = {"size": 0.35, "texture": 0.35, "color": 0.6}
NUM_OBJECTS_PROBS: dict[int, float] = {1: 0.3, 2: 0.45, 3: 0.25}
RELATION_PROB: float = 0.7  # for scenes with two or more objects

# Templates: {A} {B} {C} are noun phrases in mention order, {R} the relation phrase
# (always between A and B). Fixed words are tagged stop/content automatically.
TEMPLATES: dict[tuple[int, bool], tuple[str, ...]] = {
    (1, False): (
        "a picture of {A}.",
        "there is {A} in the picture.",
        "this image shows {A}.",
        "{A} on a plain background.",
        "an image with {A} in it.",
        "a simple drawing of {A}.",
    ),
    (2, False): (
        "two shapes: {A} and {B}.",
        "a picture of {A} and {B}.",
        "there are two shapes in the image, {A} and {B}.",
    ),
    (2, True): (
        "{A} is {R} {B}.",
        "there is {A} {R} {B}.",
        "in this picture, {A} is {R} {B}.",
        "this image shows {A} {R} {B}.",
        "{A} {R} {B}.",
        "a picture of {A} that is {R} {B}.",
        "you can see {A} {R} {B} in the image.",
    ),
    (3, False): (
        "three shapes: {A}, {B} and {C}.",
        "a picture of {A}, {B} and {C}.",
        "this image shows {A}, {B} and {C}.",
    ),
    (3, True): (
        "{A} is {R} {B}, and {C} is also in the picture.",
        "in this image, {A} is {R} {B}. there is also {C}.",
        "{A} is {R} {B}, and there is {C} too.",
    ),
}

_TOKEN_RE = re.compile(r"[A-Za-z0-9']+|[^\sA-Za-z0-9']")


# --------------------------------------------------------------------------------------
# Scene specification
# --------------------------------------------------------------------------------------


@dataclass
class SceneObject:
    """One drawn shape. ``x``, ``y`` (centre) and ``radius`` are in pixels; the
    shape lies entirely inside the circle of that radius."""

    shape: str
    color: str
    size: str
    texture: str
    x: float = 0.0
    y: float = 0.0
    radius: float = 0.0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("shape", "color", "size", "texture", "x", "y", "radius")}


@dataclass
class Scene:
    objects: list[SceneObject]
    relations: list[tuple[int, str, int]]  # (subject index, relation, object index)
    image_size: int


def relation_holds(a: SceneObject, b: SceneObject, relation: str, image_size: int) -> bool:
    """Whether "a is <relation> b" is true of the drawn shapes.

    left/right/above/below: the bounding circles do not overlap along that axis
    (so every pixel of ``a`` is left of every pixel of ``b``) and the displacement
    is mostly along that axis (|off-axis| <= |on-axis|), with a one-pixel margin.
    near: the gap between the bounding circles is at most 10% of the image side (the minimal gap + 1 px
    in images of 20 px or less, where 10% leaves no room).
    """
    dx, dy = b.x - a.x, b.y - a.y  # image y grows downwards
    if relation in ("left", "right"):
        along, across = (dx if relation == "left" else -dx), abs(dy)
    elif relation in ("above", "below"):
        along, across = (dy if relation == "above" else -dy), abs(dx)
    elif relation == "near":
        gap = math.hypot(dx, dy) - a.radius - b.radius
        return 0 < gap <= _near_max_gap(image_size)
    else:
        raise ValueError(f"unknown relation {relation!r}; expected one of {sorted(RELATIONS)}")
    return along >= a.radius + b.radius + 1.0 and across <= along  # +1 px: pixel rounding


class PlacementError(RuntimeError):
    """The objects of a scene do not fit in the image with their relations."""


_MAX_SCENE_DRAWS = 100


def _min_gap(image_size: int) -> float:
    return max(2.0, 0.03 * image_size)


def _near_max_gap(image_size: int) -> float:
    """"near": at most 10% of the side apart, and always room above the minimal gap (small images)."""
    near, gap = 0.10 * image_size, _min_gap(image_size)
    return near if near > gap else gap + 1.0


def _propose_subject(rng, b: SceneObject, ra: float, relation: str, size: int):
    """Sample a centre for the subject of ``relation`` relative to ``b`` (may be invalid)."""
    if relation == "near":
        angle = rng.uniform(0, 2 * math.pi)
        dist = ra + b.radius + rng.uniform(_min_gap(size), _near_max_gap(size))
        return b.x + dist * math.cos(angle), b.y + dist * math.sin(angle)
    lo = ra + b.radius + 1.0  # minimal on-axis distance
    along = rng.uniform(lo, lo + 0.7 * size)
    across = rng.uniform(-along, along)
    sign = -1.0 if relation in ("left", "above") else 1.0
    if relation in ("left", "right"):
        return b.x + sign * along, b.y + across
    return b.x + across, b.y + sign * along


def _place(objects: list[SceneObject], relations, rng, size: int, max_tries: int = 2000) -> None:
    """Give every object a position: inside the image, no overlaps, relations true."""
    gap = _min_gap(size)
    subjects = {s: (rel, o) for s, rel, o in relations}
    for _ in range(max_tries):
        placed: list[SceneObject] = []
        ok = True
        # Objects of relations first (the subject is proposed relative to them).
        order = sorted(range(len(objects)), key=lambda i: i in subjects)
        for i in order:
            obj = objects[i]
            r = obj.radius
            if i in subjects:
                rel, j = subjects[i]
                obj.x, obj.y = _propose_subject(rng, objects[j], r, rel, size)
            else:
                obj.x, obj.y = rng.uniform(r, size - r), rng.uniform(r, size - r)
            inside = r <= obj.x <= size - r and r <= obj.y <= size - r
            free = all(math.hypot(obj.x - p.x, obj.y - p.y) >= r + p.radius + gap for p in placed)
            if not (inside and free):
                ok = False
                break
            placed.append(obj)
        if ok and all(relation_holds(objects[s], objects[o], rel, size) for s, rel, o in relations):
            return
    raise PlacementError(f"could not place {objects} with {relations} in {size}x{size} pixels")


def sample_scene(rng: np.random.Generator, image_size: int = 64) -> tuple[Scene, str, list[str], list[str], list[int]]:
    """Sample one scene and its caption.

    Returns ``(scene, caption, words, word_classes, word_object_ids)`` where
    ``word_object_ids[k]`` is the index in ``scene.objects`` of the object whose noun
    phrase contains word ``k`` (-1 for words outside noun phrases).
    """
    # A draw that cannot be placed (only possible in images under 24 px: three large objects, or a relation
    # with no room) is redrawn; from 24 px up every draw places (measured on 2,000 scenes per size), so those data
    # sets are what they were before the redraw existed.
    for _draw in range(_MAX_SCENE_DRAWS):
        counts = list(NUM_OBJECTS_PROBS)
        n = counts[rng.choice(len(counts), p=list(NUM_OBJECTS_PROBS.values()))]
        objects = []
        for _ in range(n):
            size = SIZES_LIST[rng.integers(len(SIZES_LIST))]
            lo, hi = SIZES[size]
            objects.append(
                SceneObject(
                    shape=SHAPES[rng.integers(len(SHAPES))],
                    color=COLOR_LIST[rng.integers(len(COLOR_LIST))],
                    size=size,
                    texture=TEXTURES[rng.integers(len(TEXTURES))],
                    radius=0.5 * image_size * rng.uniform(lo, hi),
                )
            )
        has_relation = n >= 2 and rng.random() < RELATION_PROB
        relations = [(0, RELATION_LIST[rng.integers(len(RELATION_LIST))], 1)] if has_relation else []
        templates = TEMPLATES[(n, has_relation)]
        template = templates[rng.integers(len(templates))]
        # Which attributes each noun phrase mentions (independent of everything else).
        mentions = [{k: rng.random() < p for k, p in MENTION_PROBS.items()} for _ in objects]
        try:
            _place(objects, relations, rng, image_size)
            break
        except PlacementError:
            continue
    else:
        raise PlacementError(f"no scene of {image_size}x{image_size} pixels could be placed in {_MAX_SCENE_DRAWS} draws")

    words: list[str] = []
    classes: list[str] = []
    owners: list[int] = []

    def emit(word: str, cls: str, owner: int = -1) -> None:
        words.append(word)
        classes.append(cls)
        owners.append(owner)

    for piece in re.split(r"(\{[ABCR]\})", template):
        if piece in ("{A}", "{B}", "{C}"):
            i = "ABC".index(piece[1])
            obj, said = objects[i], mentions[i]
            emit("a", "stop", i)
            for key in ("size", "texture", "color"):  # English adjective order
                if said[key]:
                    emit(getattr(obj, key), "attribute", i)
            emit(obj.shape, "object", i)
        elif piece == "{R}":
            for word in RELATIONS[relations[0][1]]:
                emit(word, "stop" if word in STOP_WORDS else "relationship")
        else:
            for word in tokenize_caption(piece):
                emit(word, "stop" if _is_stop(word) else "content")
    caption = detokenize(words)
    return Scene(objects, relations, image_size), caption, words, classes, owners


def _is_stop(word: str) -> bool:
    return word in PUNCTUATION or word.lower() in STOP_WORDS


def tokenize_caption(text: str) -> list[str]:
    """Split text into words and punctuation marks (the ``words`` convention)."""
    return _TOKEN_RE.findall(text)


def detokenize(words: list[str]) -> str:
    """Inverse of :func:`tokenize_caption` for our captions: punctuation attaches left."""
    out = ""
    for word in words:
        out += word if (not out or word in PUNCTUATION) else " " + word
    return out


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


def _shape_mask(shape: str, diameter: int) -> np.ndarray:
    """Boolean (diameter, diameter) mask of a filled shape centred in its box."""
    d = diameter
    mask = Image.new("L", (d, d), 0)
    draw = ImageDraw.Draw(mask)
    c = (d - 1) / 2.0
    r = (d - 1) / 2.0

    def regular(k: int, rot: float, radii=(1.0,)) -> list[tuple[float, float]]:
        pts = []
        for j in range(k * len(radii)):
            rr = r * radii[j % len(radii)]
            ang = rot + 2 * math.pi * j / (k * len(radii))
            pts.append((c + rr * math.cos(ang), c + rr * math.sin(ang)))
        return pts

    up = -math.pi / 2
    if shape == "circle":
        draw.ellipse((0, 0, d - 1, d - 1), fill=255)
    elif shape == "square":
        s = r / math.sqrt(2)
        draw.rectangle((c - s, c - s, c + s, c + s), fill=255)
    elif shape == "triangle":
        draw.polygon(regular(3, up), fill=255)
    elif shape == "star":
        draw.polygon(regular(5, up, radii=(1.0, 0.45)), fill=255)
    elif shape == "diamond":
        draw.polygon([(c, 0), (c + 0.65 * r, c), (c, d - 1), (c - 0.65 * r, c)], fill=255)
    elif shape == "hexagon":
        draw.polygon(regular(6, 0.0), fill=255)
    elif shape == "pentagon":
        draw.polygon(regular(5, up), fill=255)
    elif shape == "cross":
        w = 0.36 * r
        draw.rectangle((c - w, c - 0.85 * r, c + w, c + 0.85 * r), fill=255)
        draw.rectangle((c - 0.85 * r, c - w, c + 0.85 * r, c + w), fill=255)
    elif shape == "heart":
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        hx = 16 * np.sin(t) ** 3
        hy = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        scale = r / 17.0
        draw.polygon(list(zip(c + scale * hx, c + scale * (hy + 1.5))), fill=255)
    elif shape == "crescent":
        draw.ellipse((0, 0, d - 1, d - 1), fill=255)
        off = 0.45 * d
        draw.ellipse((off, -0.1 * d, off + 0.95 * d, 0.85 * d), fill=0)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    return np.asarray(mask) > 127


def _erode(mask: np.ndarray, steps: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(steps):
        shrunk = out.copy()
        shrunk[1:, :] &= out[:-1, :]
        shrunk[:-1, :] &= out[1:, :]
        shrunk[:, 1:] &= out[:, :-1]
        shrunk[:, :-1] &= out[:, 1:]
        shrunk[0, :] = shrunk[-1, :] = shrunk[:, 0] = shrunk[:, -1] = False
        out = shrunk
    return out


def texture_pattern(texture: str, height: int, width: int, image_size: int) -> np.ndarray:
    """Boolean pattern (True = paint) of a texture over a box, in box coordinates."""
    if texture in ("solid", "hollow"):
        return np.full((height, width), texture == "solid")
    yy, xx = np.mgrid[0:height, 0:width]
    period = max(4, round(image_size / 12))
    if texture == "striped":  # diagonal stripes
        return ((xx + yy) % period) < (period + 1) // 2
    if texture == "dotted":  # square dots on a grid
        dot = max(1, period // 2)
        return ((xx % period) < dot) & ((yy % period) < dot)
    raise ValueError(f"unknown texture {texture!r}; expected one of {TEXTURES}")


def object_masks(obj: SceneObject, image_size: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Return ``(silhouette, painted, (top, left))`` for one object: the filled shape
    and the pixels actually painted in its colour (outline + texture), as boolean
    arrays over the object's box whose top-left pixel is ``(top, left)``."""
    d = max(3, int(round(2 * obj.radius)))
    top, left = int(round(obj.y - d / 2)), int(round(obj.x - d / 2))
    silhouette = _shape_mask(obj.shape, d)
    outline_width = max(1, round(image_size / 40))
    interior = _erode(silhouette, outline_width)
    outline = silhouette & ~interior
    painted = outline | (interior & texture_pattern(obj.texture, d, d, image_size))
    return silhouette, painted, (top, left)


def render_scene(scene: Scene, background: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """Draw a scene as an RGB image of ``scene.image_size`` pixels square."""
    size = scene.image_size
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    canvas[:] = background
    for obj in scene.objects:
        _, painted, (top, left) = object_masks(obj, size)
        h, w = painted.shape
        # Clip the box to the canvas (objects are placed inside, rounding may touch the edge).
        t0, l0 = max(top, 0), max(left, 0)
        t1, l1 = min(top + h, size), min(left + w, size)
        region = painted[t0 - top : t1 - top, l0 - left : l1 - left]
        canvas[t0:t1, l0:l1][region] = COLORS[obj.color]
    return Image.fromarray(canvas, mode="RGB")


# --------------------------------------------------------------------------------------
# Data sets
# --------------------------------------------------------------------------------------


def synthetic_features() -> datasets.Features:
    """The column schema of :func:`make_synthetic_dataset`."""
    return datasets.Features(
        {
            "image": datasets.Image(),
            "caption": datasets.Value("string"),
            "words": datasets.List(datasets.Value("string")),
            "word_classes": datasets.List(datasets.Value("string")),
            "word_object_ids": datasets.List(datasets.Value("int32")),
            "objects": datasets.List(datasets.Value("string")),
            "layout": datasets.List(
                {
                    "shape": datasets.Value("string"),
                    "color": datasets.Value("string"),
                    "size": datasets.Value("string"),
                    "texture": datasets.Value("string"),
                    "x": datasets.Value("float32"),
                    "y": datasets.Value("float32"),
                    "radius": datasets.Value("float32"),
                }
            ),
            "relations": datasets.List(
                {"subject": datasets.Value("int32"), "relation": datasets.Value("string"), "object": datasets.Value("int32")}
            ),
        }
    )


def _png_bytes(image: Image.Image) -> bytes:
    # Lossless; compress_level=1 is the fastest PNG setting and still ~30x smaller than raw.
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def make_synthetic_dataset(num_examples: int, seed: int = 0, image_size: int = 64) -> datasets.Dataset:
    """Generate ``num_examples`` image–caption pairs, identical for identical arguments.

    Columns (see :func:`synthetic_features`):

    * ``image`` — RGB ``image_size``² picture (``datasets.Image``)
    * ``caption`` — the caption; equals ``detokenize(words)``
    * ``words`` — words and punctuation of the caption, in order
    * ``word_classes`` — one of :data:`WORD_CLASSES` per word
    * ``word_object_ids`` — per word, the index into ``layout`` of the object whose
      noun phrase contains it, else -1
    * ``objects`` — shape nouns drawn, in mention order (each appears in ``words``)
    * ``layout`` — per object: shape, color, size, texture, centre ``x``/``y`` and
      bounding ``radius`` in pixels
    * ``relations`` — ``{subject, relation, object}`` (indices into ``layout``)
      stated by the caption; each holds in the image (:func:`relation_holds`)
    """
    if num_examples < 0:
        raise ValueError(f"num_examples must be >= 0, got {num_examples}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16 pixels, got {image_size}")
    rng = np.random.default_rng(seed)
    columns: dict[str, list] = {name: [] for name in synthetic_features()}
    for _ in range(num_examples):
        scene, caption, words, classes, owners = sample_scene(rng, image_size)
        columns["image"].append({"bytes": _png_bytes(render_scene(scene)), "path": None})
        columns["caption"].append(caption)
        columns["words"].append(words)
        columns["word_classes"].append(classes)
        columns["word_object_ids"].append(owners)
        columns["objects"].append([o.shape for o in scene.objects])
        columns["layout"].append([o.as_dict() for o in scene.objects])
        columns["relations"].append([{"subject": s, "relation": r, "object": o} for s, r, o in scene.relations])
    return datasets.Dataset.from_dict(columns, features=synthetic_features())


SPLITS: tuple[str, ...] = ("train", "validation", "test")


def synthetic_split_seed(seed: int, split: str) -> int:
    """Seed of one split: child ``SPLITS.index(split)`` of ``numpy.random.SeedSequence(seed)``,
    so splits are independent random streams and do not depend on each other's size."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    child = np.random.SeedSequence(seed, spawn_key=(SPLITS.index(split),))
    return int(child.generate_state(1)[0])


# --------------------------------------------------------------------------------------
# Caption statistics
# --------------------------------------------------------------------------------------


def caption_statistics(dataset, mask_prob: float = 0.15, max_examples: int | None = None) -> dict[str, float]:
    """Token statistics of a caption corpus, as used to motivate Bitton et al.'s policies.

    Tokens are words and punctuation (:func:`tokenize_caption`), not word-pieces.
    Uses the ``words``/``word_classes`` columns when present; otherwise tokenises
    ``caption`` and tags stop-words with :data:`STOP_WORDS` (grounded-word
    statistics are then ``nan``, since they need word classes).

    Returns:
        ``num_captions``; ``tokens_mean/median/min/max``; ``stop_fraction`` (share of
        tokens that are stop-words or punctuation); ``grounded_le2_fraction``
        (captions with at most two object/attribute/relationship words);
        ``no_mask_fraction`` (expected share of captions in which Bernoulli
        (``mask_prob``) masking of every token masks nothing, i.e. mean of
        ``(1 - mask_prob) ** n``, exact); ``masked_stop_fraction`` (expected share of
        masked tokens that are stop-words: E[#masked stop] / E[#masked], which for
        independent masking equals the token-level stop fraction).
    """
    if max_examples is not None:
        dataset = dataset.select(range(min(max_examples, len(dataset))))
    has_classes = "word_classes" in dataset.column_names
    if has_classes:
        classes_per_caption = dataset["word_classes"]
    else:
        classes_per_caption = [
            ["stop" if _is_stop(w) else "content" for w in tokenize_caption(c)] for c in dataset["caption"]
        ]
    lengths = np.array([len(c) for c in classes_per_caption], dtype=np.float64)
    if len(lengths) == 0:
        raise ValueError("caption_statistics needs at least one caption")
    stops = np.array([sum(k == "stop" for k in c) for c in classes_per_caption], dtype=np.float64)
    grounded = np.array([sum(k in GROUNDED_CLASSES for k in c) for c in classes_per_caption])
    return {
        "num_captions": int(len(lengths)),
        "tokens_mean": float(lengths.mean()),
        "tokens_median": float(np.median(lengths)),
        "tokens_min": int(lengths.min()),
        "tokens_max": int(lengths.max()),
        "stop_fraction": float(stops.sum() / lengths.sum()),
        "grounded_le2_fraction": float((grounded <= 2).mean()) if has_classes else float("nan"),
        "no_mask_fraction": float(np.mean((1.0 - mask_prob) ** lengths)),
        "masked_stop_fraction": float((mask_prob * stops).sum() / (mask_prob * lengths).sum()),
    }


if __name__ == "__main__":  # python -m maskvl_processing.synthetic_scenes [N]
    import json
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    print(json.dumps(caption_statistics(make_synthetic_dataset(n, seed=0)), indent=2))
