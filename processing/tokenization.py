"""Offline tokenizers for MaskVL: load one from a path / Hub id, or train a WordPiece vocab.

`train_wordpiece_tokenizer` trains a BERT-style WordPiece tokenizer (`tokenizers` library) on a
caption corpus and wraps it as a `PreTrainedTokenizerFast` with [CLS]/[SEP]/[PAD]/[MASK]/[UNK].
It is saved with the processor (`MaskVLProcessor.save_pretrained`).

Note: in transformers 5.x `BertTokenizerFast(vocab_file=...)` silently ignores the file; use
`load_tokenizer(path)` (AutoTokenizer on a folder) or `BertTokenizer(vocab=...)` instead.
"""

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

SPECIAL_TOKENS = {
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "mask_token": "[MASK]",
}


def train_wordpiece_tokenizer(
    captions: Iterable[str],
    vocab_size: int = 8000,
    lowercase: bool = True,
    min_frequency: int = 1,
    model_max_length: int = 512,
) -> PreTrainedTokenizerFast:
    """Train a BERT-style WordPiece tokenizer on `captions` (offline, a few seconds for 100k captions).

    The special tokens come first in the vocabulary: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4.
    Encoding adds `[CLS] ... [SEP]` (and `[SEP]` between pairs) like BERT.
    """
    tokenizer = Tokenizer(models.WordPiece(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS.values()),
    )
    tokenizer.train_from_iterator((caption for caption in captions), trainer=trainer)
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
