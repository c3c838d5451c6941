"""Diagnostic (docs/pretraining.md, "Does the model use the image?"): can the vision tower of a preset learn to
see the embedded scenes' shapes (or colours) at all, given direct supervision? Trains the vision tower (from
scratch, or from a pre-trained checkpoint) + a linear head to predict which of the 10 shape nouns (8 colours) a
scene contains (multi-label BCE) and reports held-out accuracy of the per-class yes/no decisions and exact-set
accuracy.

    python bench/diagnostics/shape_probe.py --steps 500                       # maskvlm-small's tower, from scratch
    python bench/diagnostics/shape_probe.py --checkpoint outputs/pretrain --freeze   # linear probe of a checkpoint
"""
import argparse
import json
import time

import numpy as np
import torch
from maskvl_processing import MaskVLImageProcessor
from maskvl_processing.synthetic_scenes import COLORS, SHAPES, make_synthetic_dataset

from maskvl_train.trainer import recompute_batch_norm_statistics

from modeling_maskvl import MaskVLConfig, MaskVLModel


TARGETS = {"shape": tuple(SHAPES), "color": tuple(COLORS)}


def label_set(ds, size, patch, target="shape"):
    """Pixel values and the multi-hot set of the scene's shapes (or colours)."""
    processor = MaskVLImageProcessor(size={"height": size, "width": size}, patch_size=patch)
    pixels = processor(images=list(ds["image"]), return_tensors="pt")["pixel_values"]
    names = TARGETS[target]
    labels = torch.zeros(len(ds), len(names))
    for row, layout in enumerate(ds["layout"]):
        for item in layout:
            labels[row, names.index(item[target])] = 1.0
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
    p.add_argument("--target", choices=tuple(TARGETS), default="shape", help="what the head predicts")
    p.add_argument("--pool", choices=("mean", "max"), default="mean",
                   help="how the head pools the tower's token states (max: a detector's pooling)")
    p.add_argument("--eval_every", type=int, default=0, help="also score the held-out set every this many steps")
    p.add_argument("--no_precise_bn", dest="precise_bn", action="store_false",
                   help="score with BatchNorm's running averages instead of statistics re-estimated on 512 "
                        "training scenes (pretrain.py's --precise_bn_examples)")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    if args.checkpoint:
        model = MaskVLModel.from_pretrained(args.checkpoint)
    else:
        model = MaskVLModel(MaskVLConfig.from_preset(args.preset, **json.loads(args.overrides)))
    tower = model.vision_model
    size, patch = model.config.vision_config.image_size, model.config.vision_config.patch_size
    train = make_synthetic_dataset(args.n_train, seed=args.seed, image_size=size)
    x_train, y_train = label_set(train, size, patch, args.target)
    x_test, y_test = label_set(make_synthetic_dataset(500, seed=10_000 + args.seed, image_size=size), size, patch,
                               args.target)
    head = torch.nn.Linear(model.config.vision_config.hidden_size, len(TARGETS[args.target]))
    params = list(head.parameters()) + ([] if args.freeze else list(tower.parameters()))
    tower.train(not args.freeze)  # a frozen tower keeps its BatchNorm statistics too
    if args.freeze:
        tower.requires_grad_(False)
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    def features(x):  # (B, D)
        states = tower(pixel_values=x).last_hidden_state
        return states.mean(1) if args.pool == "mean" else states.amax(1)

    def score():
        if args.precise_bn and not args.freeze:  # BatchNorm stems: statistics of the current weights
            recompute_batch_norm_statistics(tower, x_train[:512])
        tower.eval()  # BatchNorm stems score with their (re-estimated) running statistics
        with torch.no_grad():
            pred = torch.cat([head(features(x_test[i:i + 100])) for i in range(0, len(x_test), 100)]) > 0
        tower.train(not args.freeze)
        return {"per_shape_accuracy": float((pred == y_test.bool()).float().mean()),
                "exact_set_accuracy": float((pred == y_test.bool()).all(1).float().mean()),
                "all_absent_baseline": float((~y_test.bool()).float().mean())}

    rng, start = np.random.default_rng(args.seed), time.time()
    for step in range(args.steps):
        idx = torch.as_tensor(rng.integers(0, len(x_train), args.bs))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(features(x_train[idx])), y_train[idx])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.3f} {time.time() - start:.0f}s", flush=True)
        if args.eval_every and (step + 1) % args.eval_every == 0 and step + 1 < args.steps:
            print("EVAL", json.dumps({"step": step + 1, **score()}), flush=True)
    result = score()
    print("FINAL", json.dumps({"args": vars(args), "result": result, "sec": round(time.time() - start)}))


if __name__ == "__main__":
    main()
