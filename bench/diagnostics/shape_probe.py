"""Diagnostic (docs/pretraining.md, "Does the model use the image?"): can the vision tower of a preset learn to
see the embedded scenes' shapes at all, given direct supervision? Trains the vision tower (from scratch, or from a
pre-trained checkpoint) + a linear head to predict which of the 10 shape nouns a scene contains (multi-label BCE)
and reports held-out accuracy of the per-shape yes/no decisions and exact-set accuracy.

    python bench/diagnostics/shape_probe.py --steps 500                       # maskvlm-small's tower, from scratch
    python bench/diagnostics/shape_probe.py --checkpoint outputs/pretrain --freeze   # linear probe of a checkpoint
"""
import argparse
import json
import time

import numpy as np
import torch
from maskvl_processing import MaskVLImageProcessor
from maskvl_processing.synthetic_scenes import SHAPES, make_synthetic_dataset

from modeling_maskvl import MaskVLConfig, MaskVLModel


def shape_set(ds, size, patch):
    processor = MaskVLImageProcessor(size={"height": size, "width": size}, patch_size=patch)
    pixels = processor(images=list(ds["image"]), return_tensors="pt")["pixel_values"]
    labels = torch.zeros(len(ds), len(SHAPES))
    for row, layout in enumerate(ds["layout"]):
        for item in layout:
            labels[row, SHAPES.index(item["shape"])] = 1.0
    return pixels, labels


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="maskvlm-small")
    p.add_argument("--checkpoint", default=None, help="start the tower from this MaskVL checkpoint")
    p.add_argument("--freeze", action="store_true", help="train only the linear head (a linear probe)")
    p.add_argument("--overrides", default="{}", help="JSON of MaskVLConfig.from_preset overrides")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--bs", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--n_train", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    if args.checkpoint:
        model = MaskVLModel.from_pretrained(args.checkpoint)
    else:
        model = MaskVLModel(MaskVLConfig.from_preset(args.preset, **json.loads(args.overrides)))
    tower = model.vision_model
    size, patch = model.config.vision_config.image_size, model.config.vision_config.patch_size
    x_train, y_train = shape_set(make_synthetic_dataset(args.n_train, seed=args.seed, image_size=size), size, patch)
    x_test, y_test = shape_set(make_synthetic_dataset(500, seed=10_000 + args.seed, image_size=size), size, patch)
    head = torch.nn.Linear(model.config.vision_config.hidden_size, len(SHAPES))
    params = list(head.parameters()) + ([] if args.freeze else list(tower.parameters()))
    tower.train(not args.freeze)  # a frozen tower keeps its BatchNorm statistics too
    if args.freeze:
        tower.requires_grad_(False)
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    features = lambda x: tower(pixel_values=x).last_hidden_state.mean(1)  # (B, D)
    rng, start = np.random.default_rng(args.seed), time.time()
    for step in range(args.steps):
        idx = torch.as_tensor(rng.integers(0, len(x_train), args.bs))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(features(x_train[idx])), y_train[idx])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.3f} {time.time() - start:.0f}s", flush=True)
    tower.eval()  # BatchNorm stems score with their running statistics
    with torch.no_grad():
        pred = torch.cat([head(features(x_test[i:i + 100])) for i in range(0, len(x_test), 100)]) > 0
    result = {"per_shape_accuracy": float((pred == y_test.bool()).float().mean()),
              "exact_set_accuracy": float((pred == y_test.bool()).all(1).float().mean()),
              "all_absent_baseline": float((~y_test.bool()).float().mean())}
    print("FINAL", json.dumps({"args": vars(args), "result": result, "sec": round(time.time() - start)}))


if __name__ == "__main__":
    main()
