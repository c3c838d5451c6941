"""Diagnostic (docs/pretraining.md, "Does the model use the image?"): train a MaskVL preset on the embedded scenes
with a plain loop and report held-out Acc@1 on masked attribute / object words with the image and with a blank one.

    python bench/diagnostics/image_use_probe.py --steps 600                        # maskvlm-tiny, random 15%
    python bench/diagnostics/image_use_probe.py --steps 2000 --text_policy content_words --patch 16 \\
        --embedder conv --overrides '{"initializer_range": 0.1, "text_config": {"initializer_range": 0.1}, ...}'
"""
import argparse
import json
import time

import torch
from maskvl_processing import MaskVLDataCollator
from scenes import image_use, scene_features, train

from modeling_maskvl import MaskVLConfig, MaskVLForPreTraining


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="maskvlm-tiny")
    p.add_argument("--hidden", type=int, default=None, help="width of every tower (heads = width / 32)")
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--embedder", default=None, help="linear | conv | conv_stem")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--bs", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--n_train", type=int, default=4000)
    p.add_argument("--text_policy", default="random")
    p.add_argument("--overrides", default="{}", help="JSON of MaskVLConfig.from_preset overrides")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    tokenizer, pool, held_out = scene_features(args.n_train, args.seed, args.image_size, args.patch)
    overrides = json.loads(args.overrides)
    sub = {k: overrides.pop(k, {}) for k in ("text_config", "vision_config", "cross_modal_config")}
    sub["vision_config"].update(image_size=args.image_size, patch_size=args.patch)
    if args.embedder:
        sub["vision_config"]["patch_embedder"] = args.embedder
    if args.hidden:
        for part in sub.values():
            part.update(hidden_size=args.hidden, intermediate_size=4 * args.hidden,
                        num_attention_heads=max(2, args.hidden // 32))
    sub["text_config"]["vocab_size"] = len(tokenizer)
    model = MaskVLForPreTraining(MaskVLConfig.from_preset(args.preset, **sub, **overrides))
    collator = MaskVLDataCollator(tokenizer, image_size=args.image_size, patch_size=args.patch,
                                  text_policy=args.text_policy, seed=args.seed)
    start = time.time()
    train(model, lambda batch: model(**batch).loss, collator, pool, args.steps, args.bs, args.lr, args.seed,
          on_step=lambda s, loss: s % 100 == 0 and print(f"step {s} loss {loss:.3f} {time.time() - start:.0f}s"))
    def logits(ids, attention, pixels):  # without labels the pre-training model scores every position: (B, T, V)
        return model(input_ids=ids, attention_mask=attention, pixel_values=pixels).mlm_logits

    print("FINAL", json.dumps({"args": vars(args), "res": image_use(logits, held_out, tokenizer),
                               "sec": round(time.time() - start)}))


if __name__ == "__main__":
    main()
