"""Shared pieces of the image-use diagnostics (docs/pretraining.md, "Does the model use the image?").

* `scene_features` -- embedded scenes (training pool + 400 held-out pairs), a WordPiece tokenizer trained on the
  captions, tagged features with precomputed pixel values;
* `image_use` -- held-out Acc@1 on masked attribute / object words (EVERY word of the class masked) with the image
  and with a blank (all-zero) image, for any `logits_fn(input_ids, attention_mask, pixel_values) -> (B, T, V)`;
* `train` -- a plain AdamW loop (linear warm-up, cosine decay, clip 1.0) over random batches of the pool.
"""
import math

import numpy as np
import torch
from maskvl_processing import CaptionTagger, MaskVLImageProcessor, train_wordpiece_tokenizer
from maskvl_processing.synthetic_scenes import make_synthetic_dataset
from maskvl_processing.word_classes import ATTRIBUTE, OBJECT

COLUMNS = ("input_ids", "word_ids", "token_word_class", "token_concreteness")


def scene_features(n_train: int, seed: int, image_size: int, patch: int):
    """(tokenizer, training features, held-out features); features carry `pixel_values`."""
    train = make_synthetic_dataset(n_train, seed=seed, image_size=image_size)
    held_out = make_synthetic_dataset(400, seed=10_000 + seed, image_size=image_size)
    tokenizer = train_wordpiece_tokenizer(train["caption"], vocab_size=1000)
    tagger = CaptionTagger(tokenizer, backend="dataset", max_length=40)
    processor = MaskVLImageProcessor(size={"height": image_size, "width": image_size}, patch_size=patch)

    def features(ds):
        tagged = ds.map(lambda b, i: tagger(b, i), batched=True, with_indices=True,
                        remove_columns=[c for c in ds.column_names if c != "image"])
        pixels = processor(images=list(ds["image"]), return_tensors="pt")["pixel_values"]  # (N, 3, H, W)
        return [{**{c: row[c] for c in COLUMNS}, "pixel_values": pixels[k]}
                for k, row in enumerate(tagged.select_columns(list(COLUMNS)))]

    return tokenizer, features(train), features(held_out)


@torch.no_grad()
def image_use(logits_fn, features: list, tokenizer, batch_size: int = 100) -> dict:
    """{"object": {"img", "blank"}, "attribute": {...}}: Acc@1 over every masked token of the class."""
    result = {}
    for name, flag in (("object", OBJECT), ("attribute", ATTRIBUTE)):
        hits, count = {"img": 0, "blank": 0}, 0
        for start in range(0, len(features), batch_size):
            rows = features[start:start + batch_size]
            width = max(len(f["input_ids"]) for f in rows)
            ids = torch.tensor([f["input_ids"] + [tokenizer.pad_token_id] * (width - len(f["input_ids"])) for f in rows])
            classes = torch.tensor([f["token_word_class"] + [0] * (width - len(f["input_ids"])) for f in rows])
            mask = (classes & flag) > 0  # (B, T)
            attention = (torch.arange(width)[None] < torch.tensor([len(f["input_ids"]) for f in rows])[:, None]).long()
            pixels = torch.stack([f["pixel_values"] for f in rows])
            for key, image in (("img", pixels), ("blank", torch.zeros_like(pixels))):
                logits = logits_fn(ids.masked_fill(mask, tokenizer.mask_token_id), attention, image)  # (B, T, V)
                hits[key] += int((logits.argmax(-1)[mask] == ids[mask]).sum())
            count += int(mask.sum())
        result[name] = {k: v / max(1, count) for k, v in hits.items()}
    return result


def train(model, loss_fn, collator, features: list, steps: int, batch_size: int, lr: float, seed: int,
          warmup: float = 0.05, on_step=None):
    """`loss_fn(batch) -> loss`; weight decay 0.01 on matrices only (nanoGPT's rule)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": other, "weight_decay": 0.0}], lr=lr)
    warm = int(warmup * steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: s / max(1, warm) if s < warm else
                                                 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))
    rng = np.random.default_rng(seed)
    model.train()
    for step in range(steps):
        loss = loss_fn(collator([features[i] for i in rng.integers(0, len(features), batch_size)]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if on_step is not None:
            on_step(step, float(loss))
    model.eval()
