"""Diagnostic (docs/pretraining.md, "Does the model use the image?"): which attribute words does a pre-trained
checkpoint read off the image? The image-use check of `pretrain.py` pools colour, size and texture words; this
splits them. For each held-out scene (a fresh synthetic stream) it masks the first colour (size, texture) word of
the caption as one [MASK] and asks the checkpoint's `image-fill-mask` pipeline for its top word, with the scene
and with an empty scene (the background colour only). Object words (the first shape noun) are scored the same way.

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


def score(checkpoint: str, num_scenes: int, seed: int) -> dict:
    model = AutoModelForMaskedLM.from_pretrained(checkpoint, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(checkpoint, trust_remote_code=True)
    pipe = ImageFillMaskPipeline(model=model, processor=processor, tokenizer=processor.tokenizer,
                                 image_processor=processor.image_processor)
    size = processor.image_processor.size["height"]
    scenes = make_synthetic_dataset(num_scenes, seed=seed, image_size=size)
    empty = Image.new("RGB", (size, size), BACKGROUND)
    result = {}
    for kind, vocabulary in WORD_TYPES.items():
        hits, count = {"with_image": 0, "empty_scene": 0}, 0
        for scene in tqdm(scenes, desc=f"{kind} words", leave=False):
            words = list(scene["words"])
            wanted = "object" if kind == "object" else "attribute"
            positions = [i for i, w in enumerate(words) if w in vocabulary and scene["word_classes"][i] == wanted]
            if not positions:
                continue
            gold, words[positions[0]] = words[positions[0]], "[MASK]"
            count += 1
            for name, image in (("with_image", scene["image"]), ("empty_scene", empty)):
                hits[name] += pipe(image, " ".join(words), top_k=1)[0]["token_str"].strip() == gold
        result[kind] = {"num_words": count, **{k: v / max(count, 1) for k, v in hits.items()},
                        "chance": 1 / len(vocabulary)}
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--num_scenes", type=int, default=300)
    p.add_argument("--seed", type=int, default=999, help="seed of the scenes (not a pre-training stream)")
    args = p.parse_args()
    print("| checkpoint | word type | words | Acc@1 with the image | empty scene | chance |")
    print("|---|---|---|---|---|---|")
    for checkpoint in args.checkpoints:
        result = score(checkpoint, args.num_scenes, args.seed)
        for kind, row in result.items():
            print(f"| {checkpoint} | {kind} | {row['num_words']} | {row['with_image']:.3f} | {row['empty_scene']:.3f} "
                  f"| {row['chance']:.3f} |", flush=True)
        print("JSON", json.dumps({"checkpoint": checkpoint, **result}), flush=True)


if __name__ == "__main__":
    main()
