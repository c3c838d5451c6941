"""Offline tokenizers for MaskVL: load one from a path / Hub id, or train a WordPiece vocab.

`train_wordpiece_tokenizer` trains a BERT-style WordPiece tokenizer (`tokenizers` library) on a
caption corpus and wraps it as a `PreTrainedTokenizerFast` with [CLS]/[SEP]/[PAD]/[MASK]/[UNK].
It is saved with the processor (`MaskVLProcessor.save_pretrained`).

Note: in transformers 5.x `BertTokenizerFast(vocab_file=...)` silently ignores the file; use
`load_tokenizer(path)` (AutoTokenizer on a folder) or `BertTokenizer(vocab=...)` instead.
"""

import logging
from collections import Counter
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from .errors import MaskVLDataError
from .word_classes import caption_problem

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}


_WORD_START = "\u2581"  # marks the first piece of a word while the merges are learned


def train_wordpiece_tokenizer(
    captions: Iterable[str],
    vocab_size: int = 8000,
    lowercase: bool = True,
    min_frequency: int = 1,
    model_max_length: int = 512,
    on_error: str = "raise",
) -> PreTrainedTokenizerFast:
    """Train a BERT-style WordPiece tokenizer on `captions` (offline, a few seconds for 100k captions).

    The special tokens come first in the vocabulary: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4.
    Encoding adds `[CLS] ... [SEP]` (and `[SEP]` between pairs) like BERT. Every character of the corpus is in
    the vocabulary both word-initially and as a `##` continuation (so no word made of seen characters becomes
    [UNK]); when `vocab_size` is smaller than that base the vocabulary is the base alone.

    Deterministic: the same captions and arguments give the same vocabulary, with the same ids, in every
    process. (`tokenizers`' own `WordPieceTrainer` is not: it numbers the `##` pieces in hash-map order,
    and merge ties are broken by those numbers, huggingface/tokenizers#1794.) The merges are therefore
    learned by `tokenizers`' `BpeTrainer` without a continuing-subword prefix, on words written with a
    word-start marker, which numbers every token deterministically; the learned pieces are then renamed
    to WordPiece form (word-initial pieces as they are, the others with `##`).

    Every caption is screened first (`word_classes.caption_problem`: not a string, blank, control characters
    only, lone surrogates): `on_error="raise"` (default) raises `MaskVLDataError` naming the first bad one by
    its position in `captions`; `"skip"` leaves the bad ones out (counted in the log).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()

    skipped = 0

    def words():
        nonlocal skipped
        for index, caption in enumerate(captions):
            problem = caption_problem(caption)
            if problem is not None:
                if on_error == "raise":
                    raise MaskVLDataError(f"caption {index} of the tokenizer training corpus: {problem}")
                skipped += 1
                continue
            for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(caption)):
                yield _WORD_START + word

    word_counts = Counter(words())
    if skipped:
        logger.warning("tokenizer training: skipped %d bad caption(s)", skipped)
    if not word_counts:
        raise MaskVLDataError("no usable caption to train the tokenizer on (all empty or bad)")
    alphabet = sorted({char for word in word_counts for char in word[1:]})
    specials = list(SPECIAL_TOKENS.values())
    # every character both as a word start and as a continuation, so no word of known characters is [UNK]
    base = [*specials, *alphabet, *("##" + char for char in alphabet)]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(
        # room for its alphabet, the marker and the word-start characters that duplicate `base`; cut below
        vocab_size=max(vocab_size - len(base), 0) + 2 * len(alphabet) + 1,
        min_frequency=min_frequency, show_progress=False,
    )
    bpe.train_from_iterator((" ".join([word] * count) for word, count in sorted(word_counts.items())), trainer)
    vocab = dict.fromkeys(base)
    for piece, _ in sorted(bpe.get_vocab().items(), key=lambda item: item[1]):
        if piece.startswith(_WORD_START):
            piece = piece[1:]
        elif len(piece) > 1:
            piece = "##" + piece
        if piece and len(vocab) < max(vocab_size, len(base)):
            vocab.setdefault(piece)
    tokenizer = Tokenizer(models.WordPiece({piece: i for i, piece in enumerate(vocab)},
                                           unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    tokenizer.add_special_tokens(specials)
    cls_id = tokenizer.token_to_id(SPECIAL_TOKENS["cls_token"])
    sep_id = tokenizer.token_to_id(SPECIAL_TOKENS["sep_token"])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_max_length=model_max_length,
        model_input_names=["input_ids", "attention_mask"],
        **SPECIAL_TOKENS,
    )


def load_tokenizer(name_or_path: str, **kwargs) -> PreTrainedTokenizerBase:
    """Load a tokenizer from a local folder (or a Hub id when online) and check its special tokens."""
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    missing = [
        name for name in ("pad_token", "mask_token", "cls_token", "sep_token") if getattr(tokenizer, name) is None
    ]
    if missing:
        raise ValueError(f"tokenizer {name_or_path!r} lacks special tokens {missing}; MaskVL needs them for masking.")
    return tokenizer


__all__ = ["train_wordpiece_tokenizer", "load_tokenizer", "SPECIAL_TOKENS"]
