"""Image-text retrieval of a MaskVL checkpoint: R@1/5/10 with ITC scores and with ITM re-ranking.

`MaskVLForImageTextRetrieval.from_pretrained(checkpoint)` (needs the ITC projections of a
`maskvlm*` checkpoint) embeds every held-out image and caption; image→text and text→image
candidates are ranked by cosine similarity (ITC), then the top `--rerank_k` of every query are
re-ranked by the ITM head's match probability (the rest keep their ITC order). A query counts as
found at k when any of its true partners is among its first k candidates.

Data: the same flags and held-out pairs as the image-necessity evaluation (the pre-training script's
`DataArguments`; default the embedded synthetic `test` stream). Several captions per image
(Flickr30k / COCO style) go through the same code: either the caption column holds a list of
captions per image, or rows that share `--image_id_column` are one image with several captions.

Launch commands and output files: `train_scripts/evaluate_retrieval.py`
(console script `maskvl-evaluate-retrieval`).
"""

import json
import logging
import os
from dataclasses import dataclass, field

import torch
from maskvl_processing import MaskVLDataError, MaskVLProcessor
from tqdm.auto import tqdm
from transformers import AutoConfig

from modeling_maskvl import MaskVLForImageTextRetrieval

from .arguments import DataArguments, parse_args
from .checkpoints import check_checkpoint_argument
from .data import load_eval_dataset
from .metrics import model_index_results, rerank_top_k, retrieval_recall_at_k

logger = logging.getLogger(__name__)
KS = (1, 5, 10)


@dataclass
class RetrievalArguments:
    """Checkpoint and retrieval settings."""

    checkpoint: str = field(default=None, metadata={"help": "Pre-training checkpoint folder (model + processor)."})
    output_dir: str = field(default="outputs/retrieval")
    rerank_k: int = field(default=16, metadata={"help": "Re-rank this many ITC candidates with ITM (0 = off)."})
    image_id_column: str | None = field(
        default=None, metadata={"help": "Rows sharing this id are one image with several captions (COCO style)."}
    )
    batch_size: int = field(default=128)
    data_seed: int = field(default=42, metadata={"help": "Seed of the evaluation data (pre-training's --seed)."})

    def __post_init__(self):
        check_checkpoint_argument(self.checkpoint)
        if self.rerank_k < 0:
            raise ValueError(f"--rerank_k must be >= 0, got {self.rerank_k}")


def group_pairs(dataset, image_id_column: str | None) -> tuple[list[int], list[str], list[int]]:
    """(row of each image, captions, image index of each caption) — one image may have several captions.

    A caption column of lists gives each row's captions; with `image_id_column` rows sharing an id
    are one image; otherwise every row is its own image.
    """
    if image_id_column is not None and image_id_column not in dataset.column_names:
        raise ValueError(f"image id column {image_id_column!r} not found; available columns: {dataset.column_names}")
    image_rows, texts, text_image = [], [], []
    seen: dict = {}
    ids = dataset[image_id_column] if image_id_column else range(len(dataset))
    for row, (key, captions) in enumerate(zip(ids, dataset["caption"])):
        captions = [captions] if isinstance(captions, str) else list(captions)
        if not captions or not all(isinstance(c, str) and c.strip() for c in captions):
            raise MaskVLDataError(f"row {row} (field 'caption'): empty or non-text caption {captions!r}")
        if key not in seen:
            seen[key] = len(image_rows)
            image_rows.append(row)
        texts += captions
        text_image += [seen[key]] * len(captions)
    return image_rows, texts, text_image


@torch.no_grad()
def embed(model, processor, dataset, image_rows, texts, batch_size):
    """Normalised ITC embeddings: texts (Nt, D), images (Ni, D); and the tokenised texts."""
    text_inputs = processor.tokenizer(texts, padding=True, truncation=True, return_tensors="pt",
                                      return_token_type_ids=False)
    text_embeds = torch.cat([
        model.maskvl.get_text_features(text_inputs["input_ids"][i : i + batch_size],
                                       text_inputs["attention_mask"][i : i + batch_size]).pooler_output
        for i in tqdm(range(0, len(texts), batch_size), desc="texts")])
    pixel_values = torch.cat([
        processor.image_processor(list(dataset.select(image_rows[i : i + batch_size])["image"]),
                                 return_tensors="pt")["pixel_values"]
        for i in tqdm(range(0, len(image_rows), batch_size), desc="images")])  # (Ni, 3, H, W)
    image_embeds = torch.cat([model.maskvl.get_image_features(pixel_values[i : i + batch_size]).pooler_output
                              for i in range(0, len(pixel_values), batch_size)])
    return text_embeds, image_embeds, text_inputs, pixel_values


@torch.no_grad()
def itm_scores_of_top_k(model, similarity, k, query_is_text, text_inputs, pixel_values, batch_size):
    """ITM match probability (Q, k) of each query's top-k ITC candidates, in ITC order."""
    top = similarity.topk(k, dim=1).indices  # (Q, k)
    queries = torch.arange(similarity.shape[0])[:, None].expand_as(top).reshape(-1)
    candidates = top.reshape(-1)
    texts, images = (queries, candidates) if query_is_text else (candidates, queries)
    scores = []
    for i in tqdm(range(0, len(texts), batch_size), desc="ITM re-ranking"):
        t, v = texts[i : i + batch_size], images[i : i + batch_size]
        scores.append(model.itm_scores(text_inputs["input_ids"][t], text_inputs["attention_mask"][t], pixel_values[v]))
    return torch.cat(scores).view_as(top)


def recalls(ranking_t2i, ranking_i2t, text_image: torch.Tensor, num_images: int) -> dict:
    """R@k both ways and their mean."""
    positives_t2i = torch.nn.functional.one_hot(text_image, num_images).bool()  # (Nt, Ni)
    out = {"image_to_text": retrieval_recall_at_k(ranking_i2t, positives_t2i.t(), KS),
           "text_to_image": retrieval_recall_at_k(ranking_t2i, positives_t2i, KS)}
    values = list(out["image_to_text"].values()) + list(out["text_to_image"].values())
    out["mean_recall"] = sum(values) / len(values)
    return out


def main(argv: list[str] | None = None) -> dict:
    args, data_args = parse_args((RetrievalArguments, DataArguments), argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    # data and model
    image_size = AutoConfig.from_pretrained(args.checkpoint).vision_config.image_size
    dataset, eval_data = load_eval_dataset(data_args, args.data_seed, image_size)
    image_rows, texts, text_image = group_pairs(dataset, args.image_id_column)
    processor = MaskVLProcessor.from_pretrained(args.checkpoint)
    model = MaskVLForImageTextRetrieval.from_pretrained(args.checkpoint).eval()

    # ITC ranking, then ITM re-ranking of the top k
    text_embeds, image_embeds, text_inputs, pixel_values = embed(model, processor, dataset, image_rows, texts,
                                                                 args.batch_size)
    similarity = text_embeds @ image_embeds.t()  # (Nt, Ni)
    text_image = torch.tensor(text_image)
    t2i = similarity.argsort(dim=1, descending=True, stable=True)
    i2t = similarity.t().argsort(dim=1, descending=True, stable=True)
    result_itc = recalls(t2i, i2t, text_image, len(image_rows))
    result_itm = None
    if model.itm_head is None or args.rerank_k == 0:
        reason = "the checkpoint has no ITM head" if model.itm_head is None else "rerank_k 0"
        logger.warning("no ITM re-ranking (%s)", reason)
    else:
        k_t2i, k_i2t = min(args.rerank_k, len(image_rows)), min(args.rerank_k, len(texts))
        t2i_itm = rerank_top_k(similarity, k_t2i, itm_scores_of_top_k(
            model, similarity, k_t2i, True, text_inputs, pixel_values, args.batch_size))
        i2t_itm = rerank_top_k(similarity.t(), k_i2t, itm_scores_of_top_k(
            model, similarity.t(), k_i2t, False, text_inputs, pixel_values, args.batch_size))
        result_itm = recalls(t2i_itm, i2t_itm, text_image, len(image_rows))

    # report
    best = result_itm or result_itc
    metrics = [("recall", best[direction][f"R@{k}"], f"{direction.replace('_', ' ')} R@{k}")
               for direction in ("image_to_text", "text_to_image") for k in KS]
    result = {
        "schema_version": 1, "task": "image_text_retrieval", "checkpoint": args.checkpoint, "eval_data": eval_data,
        "num_images": len(image_rows), "num_texts": len(texts), "settings": {"rerank_k": args.rerank_k, "ks": list(KS)},
        "itc": result_itc, "itm_rerank": result_itm,
        "model_index": [model_index_results("image-text-retrieval", "Image-text retrieval", eval_data["source"],
                                            eval_data["source"], metrics, eval_data["split"])],
    }
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "retrieval.json"), "w") as handle:
        json.dump(result, handle, indent=2)
    lines = [f"# Image-text retrieval: `{args.checkpoint}`", "",
             f"{len(image_rows)} images, {len(texts)} captions ({eval_data['source']}, split `{eval_data['split']}`).",
             "", "| scores | image→text R@1 | R@5 | R@10 | text→image R@1 | R@5 | R@10 |",
             "|---|---|---|---|---|---|---|"]
    for name, res in (("ITC", result_itc), (f"ITC + ITM re-rank top {args.rerank_k}", result_itm)):
        if res is not None:
            cells = [f"{100 * res[d][f'R@{k}']:.1f}" for d in ("image_to_text", "text_to_image") for k in KS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    with open(os.path.join(args.output_dir, "retrieval.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    logger.info("wrote %s", os.path.join(args.output_dir, "retrieval.json"))
    return result


if __name__ == "__main__":
    main()
