"""Diagnostic (docs/pretraining.md, "Does the model use the image?"): which attribute words does a pre-trained
checkpoint read off the image? The image-use check of `pretrain.py` pools colour, size and texture words; this
splits them. For each held-out scene (a fresh synthetic stream) it masks the first colour (size, texture) word of
the caption as one [MASK] and asks the checkpoint's `image-fill-mask` pipeline for its top word, with the scene
and with an empty scene (the background colour only). Object words (the first shape noun) are scored the same way.
Each answer with the scene is also sorted by kind: right, a word of the type that another object of the scene has
(a binding error: the model sees the colour but gives it to the wrong object), a word of the type that no object of
the scene has, or not a word of the type at all. The last is common because a slot such as "a [MASK] circle" can
be a size, a texture or a colour (captions mention each attribute at random), so a model that reads sizes but not
colours rightly bets on a size word there. "Among the type's words" scores the best of the type's own words only (the
argmax over the 8 colours, say): that separates reading the attribute from guessing which attribute the slot holds.

    python bench/diagnostics/attribute_types.py outputs/pretrain [more checkpoints] --num_scenes 300
"""
import argparse
import json

from maskvl_processing.pipelines_maskvl import ImageFillMaskPipeline
from maskvl_processing.synthetic_scenes import BACKGROUND, COLORS, SHAPES, SIZES, TEXTURES, make_synthetic_dataset
from PIL import Image
from tqdm.auto import tqdm
from transformers import AutoModelForMaskedLM, AutoProcessor

WORD_TYPES = {"colour": set(COLORS), "size": set(SIZES), "texture": set(TEXTURES), "object": set(SHAPES)}
LAYOUT_KEYS = {"colour": "color", "size": "size", "texture": "texture", "object": "shape"}
ANSWER_KINDS = ("right", "other_object", "not_in_scene", "wrong_type")


def answer_kind(answer: str, gold: str, vocabulary: set, in_scene: set) -> str:
    """Sort one answer with the scene (see the module docstring); `in_scene` = the type's words of all objects."""
    if answer == gold:
        return "right"
    if answer not in vocabulary:
        return "wrong_type"
    return "other_object" if answer in in_scene else "not_in_scene"


def score(checkpoint: str, num_scenes: int, seed: int) -> dict:
    model = AutoModelForMaskedLM.from_pretrained(checkpoint, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(checkpoint, trust_remote_code=True)
    pipe = ImageFillMaskPipeline(model=model, processor=processor, tokenizer=processor.tokenizer,
                                 image_processor=processor.image_processor)
    size = processor.image_processor.size["height"]
    scenes = make_synthetic_dataset(num_scenes, seed=seed, image_size=size)
    empty = Image.new("RGB", (size, size), BACKGROUND)
    vocabulary_size = len(processor.tokenizer)
    result = {}
    for kind, vocabulary in WORD_TYPES.items():
        hits, count = {"with_image": 0, "empty_scene": 0, "with_image_among_type": 0, "empty_scene_among_type": 0}, 0
        kinds = dict.fromkeys(ANSWER_KINDS, 0)
        for scene in tqdm(scenes, desc=f"{kind} words", leave=False):
            words = list(scene["words"])
            wanted = "object" if kind == "object" else "attribute"
            positions = [i for i, w in enumerate(words) if w in vocabulary and scene["word_classes"][i] == wanted]
            if not positions:
                continue
            gold, words[positions[0]] = words[positions[0]], "[MASK]"
            count += 1
            in_scene = {obj[LAYOUT_KEYS[kind]] for obj in scene["layout"]}
            for name, image in (("with_image", scene["image"]), ("empty_scene", empty)):
                ranked = [a["token_str"].strip() for a in pipe(image, " ".join(words), top_k=vocabulary_size)]
                answer = ranked[0]
                hits[name] += answer == gold
                # None when no word of the type is one token of this tokenizer (it then never scores)
                hits[f"{name}_among_type"] += next((a for a in ranked if a in vocabulary), None) == gold
                if name == "with_image":
                    kinds[answer_kind(answer, gold, vocabulary, in_scene)] += 1
        result[kind] = {"num_words": count, **{k: v / max(count, 1) for k, v in hits.items()},
                        "chance": 1 / len(vocabulary),
                        "answers_with_image": {k: v / max(count, 1) for k, v in kinds.items()}}
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--num_scenes", type=int, default=300)
    p.add_argument("--seed", type=int, default=999, help="seed of the scenes (not a pre-training stream)")
    args = p.parse_args()
    print("| checkpoint | word type | words | Acc@1 with the image | empty scene | among the type's words: with the "
          "image / empty scene | chance | answers with the image: other object's / not in the scene / wrong type |")
    print("|---|---|---|---|---|---|---|---|")
    for checkpoint in args.checkpoints:
        result = score(checkpoint, args.num_scenes, args.seed)
        for kind, row in result.items():
            print(f"| {checkpoint} | {kind} | {row['num_words']} | {row['with_image']:.3f} | {row['empty_scene']:.3f} "
                  f"| {row['with_image_among_type']:.3f} / {row['empty_scene_among_type']:.3f} | {row['chance']:.3f} | "
                  + " / ".join(f"{row['answers_with_image'][k]:.3f}" for k in ANSWER_KINDS[1:])
                  + " |", flush=True)
        print("JSON", json.dumps({"checkpoint": checkpoint, **result}), flush=True)


if __name__ == "__main__":
    main()
