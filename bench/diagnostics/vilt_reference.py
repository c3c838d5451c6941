"""Reference learner (docs/pretraining.md): transformers' own ViltForMaskedLM on the same embedded scenes, masking
and held-out image-use evaluation as image_use_probe.py -- if it learns and a MaskVL preset does not, the preset is
at fault; if neither does, the data / budget are.

    python bench/diagnostics/vilt_reference.py --steps 600
"""
import argparse
import json
import time

import torch
from maskvl_processing import MaskVLDataCollator
from scenes import image_use, scene_features, train
from transformers import ViltConfig, ViltForMaskedLM


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--bs", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--text_policy", default="random")
    p.add_argument("--n_train", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    tokenizer, pool, held_out = scene_features(args.n_train, args.seed, args.image_size, args.patch)
    config = ViltConfig(vocab_size=len(tokenizer), hidden_size=args.hidden, num_hidden_layers=args.layers,
                        num_attention_heads=4, intermediate_size=4 * args.hidden, image_size=args.image_size,
                        patch_size=args.patch, max_image_length=-1, max_position_embeddings=64,
                        modality_type_vocab_size=2)  # max_image_length=-1: every patch, no sampling in forward
    model = ViltForMaskedLM(config)
    collator = MaskVLDataCollator(tokenizer, image_size=args.image_size, patch_size=args.patch,
                                  text_policy=args.text_policy, seed=args.seed)

    def run(ids, attention, pixels, labels=None):
        pixel_mask = torch.ones(pixels.shape[0], args.image_size, args.image_size, dtype=torch.long)
        return model(input_ids=ids, attention_mask=attention, pixel_values=pixels, pixel_mask=pixel_mask,
                     labels=labels)

    start = time.time()
    train(model, lambda b: run(b["input_ids"], b["attention_mask"], b["pixel_values"], b["labels"]).loss, collator,
          pool, args.steps, args.bs, args.lr, args.seed)
    result = image_use(lambda ids, attention, pixels: run(ids, attention, pixels).logits, held_out, tokenizer)
    print("FINAL", json.dumps({"args": vars(args), "res": result, "sec": round(time.time() - start)}))


if __name__ == "__main__":
    main()
