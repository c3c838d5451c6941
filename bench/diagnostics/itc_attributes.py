"""Diagnostic (docs/pretraining.md, "Does the model use the image?", item 9): which attributes do a checkpoint's ITC
embeddings match on, and which ones does its vision tower carry at all?

Scenes are single objects in the middle of the canvas (no layout randomness), rendered by the embedded generator.

* **ITC match.** For one attribute type at a time (colour, size, texture, shape), a base object is drawn and
  rendered once per value of that type, everything else fixed; each variant gets the caption "a picture of a
  <value> <shape>." (shape: "a picture of a <shape>."). An image counts as matched when its ITC embedding is closest
  to its own variant's caption among the type's captions. Chance = 1 / number of values. Also reported: the mean
  cosine between the image embeddings of different variants (how far apart the type's values sit in ITC space).
* **Linear probe.** Ridge regression (closed form, one-hot targets) from the vision tower's frozen states of
  random single-object scenes to each attribute, fitted on `--num_train` scenes and scored on `--num_test` fresh
  ones, once from the CLS state (what ITC's projection reads) and once from the mean of the patch states. A tower
  that carries colour but an ITC head that ignores it shows up as a high probe score beside a low ITC match. The
  control is the same probe on a freshly initialised model of the checkpoint's config ("at init"): random
  convolutions already separate colours linearly, so only the gain over it is learnt.

    python bench/diagnostics/itc_attributes.py outputs/pretrain [more checkpoints]
"""
import argparse
import json

import numpy as np
import torch
from maskvl_processing.synthetic_scenes import COLORS, SHAPES, SIZES, TEXTURES, Scene, SceneObject, render_scene
from transformers import AutoConfig, AutoModel, AutoProcessor

TYPES = {"colour": ("color", list(COLORS)), "size": ("size", list(SIZES)), "texture": ("texture", list(TEXTURES)),
         "shape": ("shape", list(SHAPES))}


def random_object(rng: np.random.Generator, image_size: int, **fixed) -> SceneObject:
    values = {key: values[rng.integers(len(values))] for key, values in TYPES.values()}
    values.update(fixed)
    lo, hi = SIZES[values["size"]]
    return SceneObject(**values, x=image_size / 2, y=image_size / 2, radius=0.5 * image_size * (lo + hi) / 2)


def caption(type_name: str, obj: SceneObject) -> str:
    if type_name == "shape":
        return f"a picture of a {obj.shape}."
    return f"a picture of a {getattr(obj, TYPES[type_name][0])} {obj.shape}."


class Encoder:
    def __init__(self, checkpoint: str, at_init: bool = False):
        if at_init:  # the same architecture, freshly initialised (the probe's control)
            config = AutoConfig.from_pretrained(checkpoint, trust_remote_code=True)
            torch.manual_seed(0)
            self.model = AutoModel.from_config(config, trust_remote_code=True).eval()
        else:
            self.model = AutoModel.from_pretrained(checkpoint, trust_remote_code=True).eval()
        self.processor = AutoProcessor.from_pretrained(checkpoint, trust_remote_code=True)
        self.image_size = self.processor.image_processor.size["height"]

    def pixels(self, objects: list[SceneObject]) -> torch.Tensor:
        images = [render_scene(Scene([obj], [], self.image_size)) for obj in objects]
        return self.processor.image_processor(images=images, return_tensors="pt")["pixel_values"]

    @torch.no_grad()
    def image(self, objects: list[SceneObject]):
        """(ITC embeddings or None, CLS states, mean patch states) of single-object scenes."""
        out = self.model.get_image_features(pixel_values=self.pixels(objects))
        states = out.last_hidden_state
        return out.pooler_output, states[:, 0], states[:, 1:].mean(1)

    @torch.no_grad()
    def text(self, captions: list[str]) -> torch.Tensor:
        batch = self.processor.tokenizer(captions, padding=True, return_tensors="pt")
        return self.model.get_text_features(input_ids=batch["input_ids"],
                                            attention_mask=batch["attention_mask"]).pooler_output


def itc_match(encoder: Encoder, num_bases: int, rng: np.random.Generator) -> dict:
    result = {}
    for type_name, (key, values) in TYPES.items():
        hits, count, cosines, text_cosines = 0, 0, [], []
        for _ in range(num_bases):
            base = random_object(rng, encoder.image_size)
            attributes = {k: getattr(base, k) for k, _ in TYPES.values()}
            variants = [random_object(rng, encoder.image_size, **{**attributes, key: v}) for v in values]
            image_embeds, _, _ = encoder.image(variants)
            text_embeds = encoder.text([caption(type_name, obj) for obj in variants])
            similarity = image_embeds @ text_embeds.T  # (K, K)
            hits += int((similarity.argmax(1) == torch.arange(len(values))).sum())
            count += len(values)
            image_cos = image_embeds @ image_embeds.T
            off_diagonal = ~torch.eye(len(values), dtype=torch.bool)
            cosines.append(float(image_cos[off_diagonal].mean()))
            text_cosines.append(float((text_embeds @ text_embeds.T)[off_diagonal].mean()))
        result[type_name] = {"itc_match": hits / count, "chance": 1 / len(values),
                             "image_cosine_between_values": float(np.mean(cosines)),
                             "text_cosine_between_values": float(np.mean(text_cosines))}
    return result


def ridge_accuracy(train_x, train_y, test_x, test_y, classes: int, alpha: float = 1.0) -> float:
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    x, xt = (train_x - mean) / std, (test_x - mean) / std
    x, xt = torch.cat([x, torch.ones(len(x), 1)], 1), torch.cat([xt, torch.ones(len(xt), 1)], 1)
    targets = torch.nn.functional.one_hot(train_y, classes).double()
    weights = torch.linalg.solve(x.T.double() @ x.double() + alpha * torch.eye(x.shape[1], dtype=torch.double),
                                 x.T.double() @ targets)
    return float(((xt.double() @ weights).argmax(1) == test_y).double().mean())


def linear_probe(encoder: Encoder, num_train: int, num_test: int, rng: np.random.Generator,
                 batch_size: int = 100) -> dict:
    objects = [random_object(rng, encoder.image_size) for _ in range(num_train + num_test)]
    cls, patches = [], []
    for start in range(0, len(objects), batch_size):
        _, c, p = encoder.image(objects[start:start + batch_size])
        cls.append(c)
        patches.append(p)
    features = {"cls": torch.cat(cls), "mean_patch": torch.cat(patches)}
    result = {}
    for type_name, (key, values) in TYPES.items():
        labels = torch.tensor([values.index(getattr(obj, key)) for obj in objects])
        result[type_name] = {name: ridge_accuracy(x[:num_train], labels[:num_train], x[num_train:],
                                                  labels[num_train:], len(values))
                             for name, x in features.items()}
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--num_bases", type=int, default=20, help="base objects per attribute type for the ITC match")
    p.add_argument("--num_train", type=int, default=1000, help="scenes to fit the linear probe on")
    p.add_argument("--num_test", type=int, default=500, help="fresh scenes to score the linear probe on")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print("| checkpoint | type | ITC match | chance | cosine between values: images / captions | probe from CLS "
          "(at init) | probe from mean patch (at init) |")
    print("|---|---|---|---|---|---|---|")
    for checkpoint in args.checkpoints:
        encoder = Encoder(checkpoint)
        has_itc = encoder.model.config.use_itc_head
        match = itc_match(encoder, args.num_bases, np.random.default_rng(args.seed)) if has_itc else {}
        probe = linear_probe(encoder, args.num_train, args.num_test, np.random.default_rng(args.seed + 1))
        control = linear_probe(Encoder(checkpoint, at_init=True), args.num_train, args.num_test,
                               np.random.default_rng(args.seed + 1))
        for type_name in TYPES:
            m = match.get(type_name, {})
            itc = (f"{m['itc_match']:.3f} | {m['chance']:.3f} | {m['image_cosine_between_values']:.3f} / "
                   f"{m['text_cosine_between_values']:.3f}" if m else f"– | {1 / len(TYPES[type_name][1]):.3f} | –")
            print(f"| {checkpoint} | {type_name} | {itc} | {probe[type_name]['cls']:.3f} "
                  f"({control[type_name]['cls']:.3f}) | {probe[type_name]['mean_patch']:.3f} "
                  f"({control[type_name]['mean_patch']:.3f}) |", flush=True)
        logit_scale = (float(encoder.model.logit_scale.detach().exp()) if has_itc else None)
        print("JSON", json.dumps({"checkpoint": checkpoint, "logit_scale": logit_scale, "itc": match, "probe": probe,
                                  "probe_at_init": control}), flush=True)


if __name__ == "__main__":
    main()
