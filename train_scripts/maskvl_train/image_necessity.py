"""Image necessity (Bitton et al. 2021): how much does a checkpoint use the image to fill in masked words?

For every evaluation mask, the same masked positions are scored three times with the checkpoint's
fill-mask model (`AutoModelForMaskedLM`): with the real image, with a blank image (all-zero
`pixel_values`, i.e. mid-grey after normalisation) and with a mismatched image (the image of
another pair, a fixed derangement of the evaluation set). Reported per mask and variant: mean
cross-entropy over the masked tokens (`loss`) and its exp (`exp_loss`), Acc@1 and Acc@5, and
Δ = without − with. Every masked position is replaced by [MASK] (no 80/10/10 corruption) and the
masks come from the collator's text policies with a fixed seed.

Evaluation masks (`--eval_masks`, default all):

* `random` — `RandomTokenMasking(rate)`, the baseline: 15% of the tokens;
* `stop_words`, `content_words` — `StopWordMasking` / `ContentWordMasking` with `mode="rate"`:
  15% of the class's words (at least one);
* `objects`, `attributes`, `relationships` — the class policies with `mode="rate"`: one word of the
  class per caption (no fallback to other classes);
* `concrete>3`, `concrete>4`, `concrete>4.5` — 15% (at least one) of the words whose concreteness
  rating (Brysbaert et al.) is above the bin.

Captions with no word of a mask's class are not scored for that mask.

Also: prompt-based object detection — "A photo of a [MASK]." and "A [MASK] in the photo." with each
image; precision@1/5/10 of the top predicted whole words against the image's gold objects (data set
column `objects`; skipped when the data set has none). With several checkpoints, the per-class
accuracy matrix (rows: evaluation mask, columns: checkpoint / pre-training policy) as in the
paper's "hierarchy of masked semantic classes".

Launch commands and output files: `train_scripts/evaluate_image_necessity.py`
(console script `maskvl-evaluate-image-necessity`).
"""

import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field, replace

import torch
from maskvl_processing import TEXT_MASKING_POLICIES, MaskVLDataCollator, MaskVLProcessor, WordClassMasking
from maskvl_processing.masking_primitives import (
    IGNORE_INDEX,
    derangement,
    whole_word_rate_mask,
    word_level_features,
)
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForMaskedLM

import modeling_maskvl  # noqa: F401  (registers the Auto classes)

from .arguments import DataArguments, merge_repeated_flag, parse_args
from .data import load_eval_dataset, tag_dataset, tagger_backend
from .metrics import (
    add_sums,
    image_necessity_deltas,
    json_safe,
    masked_token_sums,
    model_index_results,
    prompt_precision_at_k,
    summarise_masked_tokens,
)
from .statistics import paired_bootstrap_interval

logger = logging.getLogger(__name__)

CONCRETENESS_BINS = {"concrete>3": 3.0, "concrete>4": 4.0, "concrete>4.5": 4.5}
CLASS_MASKS = ("stop_words", "content_words", "objects", "attributes", "relationships")
EVAL_MASKS = ("random",) + CLASS_MASKS + tuple(CONCRETENESS_BINS)
VARIANTS = ("blank", "mismatched")
PAPER_PROMPTS = ("A photo of a [MASK].", "A [MASK] in the photo.")


@dataclass
class ImageNecessityArguments:
    """What to evaluate and how."""

    checkpoint: list[str] = field(
        default_factory=list, metadata={"help": "Checkpoint folders: --checkpoint A B C (or the flag repeated)."}
    )
    output_dir: str = field(default="outputs/image_necessity", metadata={"help": "Where the outputs go."})
    checkpoint_names: list[str] | None = field(
        default=None, metadata={"help": "Names of the checkpoints (default: pre-training policy, else folder name)."}
    )
    eval_masks: list[str] = field(
        default_factory=lambda: list(EVAL_MASKS), metadata={"help": f"Subset of {EVAL_MASKS}."}
    )
    mask_rate: float = field(default=0.15, metadata={"help": "Rate of the random and class-rate masks."})
    seed: int = field(default=1234, metadata={"help": "Seed of the masks and of the mismatched-image derangement."})
    batch_size: int = field(default=64)
    prompts: list[str] = field(default_factory=lambda: list(PAPER_PROMPTS), metadata={"help": "Use [MASK] once."})
    prompt_top_k: list[int] = field(default_factory=lambda: [1, 5, 10])
    matrix_metric: str = field(default="acc@5", metadata={"help": "Metric of the accuracy matrix: acc@1 or acc@5."})
    data_seed: int = field(
        default=42, metadata={"help": "Seed of the evaluation data: the pre-training run's --seed (its default, 42)."}
    )

    def __post_init__(self):
        if not self.checkpoint:
            raise ValueError("give at least one --checkpoint")
        for path in self.checkpoint:
            if not os.path.isdir(path):
                raise FileNotFoundError(f"checkpoint {path!r} is not a directory")
        unknown = [m for m in self.eval_masks if m not in EVAL_MASKS]
        if unknown:
            raise ValueError(f"unknown eval masks {unknown}; choose from {list(EVAL_MASKS)}")
        if self.checkpoint_names is not None and len(self.checkpoint_names) != len(self.checkpoint):
            raise ValueError(f"{len(self.checkpoint_names)} checkpoint_names for {len(self.checkpoint)} checkpoints")
        if self.matrix_metric not in ("acc@1", "acc@5"):
            raise ValueError(f"matrix_metric must be acc@1 or acc@5, got {self.matrix_metric!r}")
        bad = [p for p in self.prompts if p.count("[MASK]") != 1]
        if bad:
            raise ValueError(f"every prompt needs exactly one [MASK], got {bad}")


class ConcretenessBinMasking(WordClassMasking):
    """Evaluation mask: `rate` of the words whose concreteness is above `threshold` (at least one)."""

    def __init__(self, threshold: float, rate: float = 0.15, **kwargs):
        super().__init__(word_class=0, mode="rate", rate=rate, **kwargs)
        self.threshold = threshold

    def _repr_args(self) -> str:
        return f"threshold={self.threshold}, rate={self.rate}"

    def select(self, batch, generator, rate=None):
        batch.require("concreteness")
        num_words = batch.num_words
        scores = word_level_features(batch.word_ids, batch.concreteness.float(), num_words, fill=0.0)  # (B, W)
        exists = word_level_features(batch.word_ids, batch.word_ids >= 0, num_words, fill=False)
        rate = self.rate if rate is None else rate  # the collator's per-row rates
        words = whole_word_rate_mask(batch.word_ids, exists & (scores > self.threshold), rate, generator)
        return words.gather(1, batch.word_ids.clamp(min=0)) & (batch.word_ids >= 0)  # (B, T)


def build_eval_mask(name: str, rate: float):
    """The text policy of one evaluation mask, replacing every masked position by [MASK]."""
    split = dict(mask_replace_prob=1.0, random_replace_prob=0.0)
    if name == "random":
        return TEXT_MASKING_POLICIES["random"](rate=rate, **split)
    if name in CONCRETENESS_BINS:
        return ConcretenessBinMasking(CONCRETENESS_BINS[name], rate=rate, **split)
    return TEXT_MASKING_POLICIES[name](mode="rate", rate=rate, **split)


def pretraining_policy(checkpoint: str) -> str | None:
    """The masking recorded by the pre-training script (`training_args.json`), e.g. `objects`,
    `random@0.4`, `random+maskvlm`; None when the folder has no such file."""
    path = os.path.join(checkpoint, "training_args.json")
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        recorded = json.load(handle)
    name = recorded.get("text_masking")
    if name is None:
        return None
    if recorded.get("text_mask_rate") is not None:
        name += f"@{recorded['text_mask_rate']:g}"
    if recorded.get("joint_masking") not in (None, "independent"):
        name += f"+{recorded['joint_masking']}"
    return name


def process_images(dataset, image_processor, batch_size: int) -> torch.Tensor:
    """(N, 3, H, W) pixel values of every image of the data set, in order."""
    chunks = []
    for start in tqdm(range(0, len(dataset), batch_size), desc="images"):
        images = dataset[start : start + batch_size]["image"]
        chunks.append(image_processor(images, return_tensors="pt")["pixel_values"])
    return torch.cat(chunks)


@torch.no_grad()
def score_masks(model, features: list, pixel_values: torch.Tensor, mismatch: torch.Tensor, collator,
                batch_size: int) -> dict:
    """Score one evaluation mask with the real, blank and mismatched images (same masked positions).

    Returns `{"num_captions_scored", "num_tokens", "with_image", "blank", "mismatched",
    "delta_blank", "delta_mismatched"}`.
    """
    collator.reset_generator()
    sums = dict.fromkeys(("with_image",) + VARIANTS)
    token_loss = {variant: [] for variant in ("with_image",) + VARIANTS}  # per masked token, for the intervals
    token_hit = {variant: [] for variant in ("with_image",) + VARIANTS}
    scored = 0
    for start in range(0, len(features), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(features)))
        batch = collator([features[i] for i in rows.tolist()])
        keep = (batch["labels"] != IGNORE_INDEX).any(dim=1)  # captions with at least one masked token
        if not keep.any():
            continue
        scored += int(keep.sum())
        rows = rows[keep]
        text = {"input_ids": batch["input_ids"][keep], "attention_mask": batch["attention_mask"][keep]}
        labels = batch["labels"][keep]
        images = {
            "with_image": pixel_values[rows],
            "blank": torch.zeros_like(pixel_values[rows]),
            "mismatched": pixel_values[mismatch[rows]],
        }
        for variant, pixels in images.items():
            logits = model(**text, pixel_values=pixels).logits  # (B, T, V)
            sums[variant] = add_sums(sums[variant], masked_token_sums(logits, labels))
            scored_logits, targets = logits[labels != IGNORE_INDEX].float(), labels[labels != IGNORE_INDEX]  # (M, V)
            token_loss[variant].append(torch.nn.functional.cross_entropy(scored_logits, targets, reduction="none"))
            token_hit[variant].append((scored_logits.argmax(-1) == targets).float())
    empty = {"count": 0, "loss_sum": 0.0, "correct@1": 0, "correct@5": 0}
    summaries = {variant: summarise_masked_tokens(total or empty) for variant, total in sums.items()}
    out = {"num_captions_scored": scored, "num_tokens": summaries["with_image"]["num_tokens"]}
    for variant in VARIANTS:
        out[f"delta_{variant}"] = image_necessity_deltas(summaries["with_image"], summaries[variant])
        if token_loss["with_image"]:  # paired bootstrap over masked tokens: Δ = without − with, per token
            loss_delta = torch.cat(token_loss[variant]) - torch.cat(token_loss["with_image"])
            hit_delta = torch.cat(token_hit[variant]) - torch.cat(token_hit["with_image"])
            out[f"delta_{variant}"]["loss_ci95"] = paired_bootstrap_interval(loss_delta.numpy(), seed=0)["ci95"]
            out[f"delta_{variant}"]["acc@1_ci95"] = paired_bootstrap_interval(hit_delta.numpy(), seed=0)["ci95"]
    for variant, summary in summaries.items():
        out[variant] = {key: value for key, value in summary.items() if key != "num_tokens"}
    return out


def candidate_words(tokenizer) -> tuple[torch.Tensor, list[str]]:
    """Vocabulary ids that are whole alphabetic words (no special tokens, no ## pieces)."""
    special = set(tokenizer.all_special_ids)
    ids, words = [], []
    for token, index in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]):
        if index not in special and token.isalpha():
            ids.append(index)
            words.append(token)
    return torch.tensor(ids, dtype=torch.long), words


@torch.no_grad()
def prompt_object_detection(model, tokenizer, prompts, pixel_values, gold, top_k, batch_size) -> dict:
    """Precision@k of the top predicted words for each prompt against each image's gold objects."""
    ids, words = candidate_words(tokenizer)
    if len(words) < max(top_k):
        raise ValueError(f"the tokenizer has only {len(words)} whole-word tokens, fewer than top-k {max(top_k)}")
    results = {}
    for prompt in prompts:
        encoding = tokenizer(prompt.replace("[MASK]", tokenizer.mask_token), return_tensors="pt",
                             return_token_type_ids=False)
        position = (encoding["input_ids"][0] == tokenizer.mask_token_id).nonzero().item()
        ranked = []
        for start in range(0, len(pixel_values), batch_size):
            pixels = pixel_values[start : start + batch_size]
            n = len(pixels)
            logits = model(input_ids=encoding["input_ids"].expand(n, -1),
                           attention_mask=encoding["attention_mask"].expand(n, -1), pixel_values=pixels).logits
            scores = logits[:, position, ids]  # (n, |words|)
            ranked += [[words[j] for j in row] for row in scores.topk(max(top_k), dim=-1).indices.tolist()]
        results[prompt] = prompt_precision_at_k(ranked, gold, ks=top_k)
    return results


def checkpoint_model_index(result: dict, eval_data: dict) -> list[dict]:
    """model-index entries: Acc@5 with the image and Δ loss (blank image) per evaluation mask."""
    metrics = []
    for mask, row in result["masks"].items():
        metrics.append(("accuracy", row["with_image"]["acc@5"], f"Acc@5 with image ({mask} mask)"))
        metrics.append(("loss", row["delta_blank"]["loss"], f"Δ loss without image ({mask} mask)"))
    metrics = [m for m in metrics if not math.isnan(m[1])]
    return [model_index_results("fill-mask", "Masked language modelling with the image (image necessity)",
                                eval_data["source"], eval_data["source"], metrics, eval_data["split"])]


def evaluate_checkpoint(checkpoint: str, name: str, dataset, args: ImageNecessityArguments, data_args: DataArguments,
                        eval_data: dict) -> dict:
    """All image-necessity numbers of one checkpoint (one entry of the JSON's `checkpoints`)."""
    processor = MaskVLProcessor.from_pretrained(checkpoint)
    tokenizer, image_processor = processor.tokenizer, processor.image_processor
    model = AutoModelForMaskedLM.from_pretrained(checkpoint).eval()
    tagged = tag_dataset(dataset, tokenizer, data_args)
    pixel_values = process_images(tagged, image_processor, args.batch_size)  # (N, 3, H, W)
    mismatch = derangement(len(tagged), torch.Generator().manual_seed(args.seed))  # (N,)
    columns = ("input_ids", "word_ids", "token_word_class", "token_concreteness")
    features = [{**{c: row[c] for c in columns}, "pixel_values": pixel_values[i]}
                for i, row in enumerate(tagged.select_columns(list(columns)))]
    result = {"checkpoint": checkpoint, "name": name, "pretraining_policy": pretraining_policy(checkpoint), "masks": {}}
    for mask in tqdm(args.eval_masks, desc=f"eval masks ({name})"):
        collator = MaskVLDataCollator(tokenizer, image_processor, text_policy=build_eval_mask(mask, args.mask_rate),
                                      seed=args.seed, max_length=data_args.max_seq_length)
        result["masks"][mask] = score_masks(model, features, pixel_values, mismatch, collator, args.batch_size)
    result["object_detection"] = None
    if "objects" in tagged.column_names:
        result["object_detection"] = prompt_object_detection(
            model, tokenizer, args.prompts, pixel_values, tagged["objects"], args.prompt_top_k, args.batch_size)
    else:
        logger.warning("the evaluation data have no `objects` column: prompt-based object detection skipped")
    result["model_index"] = checkpoint_model_index(result, eval_data)
    return result


#: English's basic colour terms (Berlin & Kay, 1969; both spellings of grey): the colour words of the image-use check.
COLOUR_TERMS = ("black", "white", "red", "green", "yellow", "blue", "brown", "purple", "pink", "orange", "grey", "gray")


def colour_words_only(dataset, data_args: DataArguments):
    """(dataset, data_args) whose attribute class holds only the basic colour terms, the other attributes becoming
    plain content words: the image-use check's colour row scores the `attributes` mask on it. Data sets that carry
    their own word classes (`words` / `word_classes`, the `dataset` tagger) are relabelled; for the other taggers
    the attribute vocabulary is set to the colour terms."""
    if tagger_backend(data_args.tagger, dataset.column_names) != "dataset":
        return dataset, replace(data_args, attribute_vocab=list(COLOUR_TERMS))

    def relabel(words, classes):
        return {"word_classes": [[c if c != "attribute" or str(w).lower() in COLOUR_TERMS else "content"
                                  for w, c in zip(row_words, row_classes)]
                                 for row_words, row_classes in zip(words, classes)]}

    return dataset.map(relabel, batched=True, input_columns=["words", "word_classes"],
                       desc="colour words"), data_args


def _use_row(row: dict) -> dict:
    return {"acc1_with": row["with_image"]["acc@1"], "acc1_blank": row["blank"]["acc@1"],
            "gap": row["with_image"]["acc@1"] - row["blank"]["acc@1"],
            "delta_loss": row["delta_blank"]["loss"], "delta_loss_ci95": row["delta_blank"].get("loss_ci95"),
            "num_tokens": row["num_tokens"]}


def image_use_check(checkpoint: str, dataset, data_args: DataArguments, batch_size: int = 64) -> dict:
    """Does the model read attributes and objects off the image? Held-out Acc@1 on masked attribute / object
    words with the image and with a blank image (same masks), and Δ loss with its bootstrap interval. The colour
    words among the attributes (`COLOUR_TERMS`) are scored once more on their own: an attribute gap can come from
    size words alone (docs/pretraining.md, item 8).

    Returns {"attribute": {"acc1_with", "acc1_blank", "gap", "delta_loss", "delta_loss_ci95", "num_tokens"},
    "colour": {...}, "object": {...}}; classes with no masked token are left out."""
    args = ImageNecessityArguments(checkpoint=[checkpoint], eval_masks=["attributes", "objects"], prompts=[],
                                   batch_size=batch_size)
    eval_data = {"source": "held-out", "split": "validation"}
    masks = evaluate_checkpoint(checkpoint, "final", dataset, args, data_args, eval_data)["masks"]
    colours, colour_args = colour_words_only(dataset, data_args)
    colour_masks = evaluate_checkpoint(checkpoint, "final, colour words", colours,
                                       replace(args, eval_masks=["attributes"]), colour_args, eval_data)["masks"]
    rows = {"attribute": masks["attributes"], "colour": colour_masks["attributes"], "object": masks["objects"]}
    return {name: _use_row(row) for name, row in rows.items() if row["num_tokens"]}


def accuracy_matrix(results: list[dict], masks: list[str], metric: str) -> dict:
    """Rows: evaluation masks; columns: checkpoints; values: `metric` with the image."""
    return {
        "metric": metric,
        "variant": "with_image",
        "rows": list(masks),
        "columns": [r["name"] for r in results],
        "values": [[r["masks"][m]["with_image"][metric] for r in results] for m in masks],
    }


def _fmt(value: float, percent: bool = False) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{100 * value:.1f}" if percent else f"{value:.2f}"


def markdown_report(report: dict) -> str:
    """The Markdown tables of `image_necessity.md`."""
    lines = ["# Image necessity", "",
             f"Evaluation data: {report['eval_data']['source']} (split `{report['eval_data']['split']}`, "
             f"{report['eval_data']['num_examples']} pairs). Masked positions are identical with and without the "
             "image; every masked token is replaced by [MASK]. Δ = without − with (blank image / mismatched image).",
             ""]
    for result in report["checkpoints"]:
        lines += [f"## {result['name']}", "", f"Checkpoint: `{result['checkpoint']}`", "",
                  "| eval mask | tokens | exp loss: with | blank | Δ | mismatched | Δ | Acc@5 %: with | blank | Δ | "
                  "mismatched | Δ | Acc@1 % with |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for mask, row in result["masks"].items():
            w, b, m = row["with_image"], row["blank"], row["mismatched"]
            lines.append(
                f"| {mask} | {row['num_tokens']} | {_fmt(w['exp_loss'])} | {_fmt(b['exp_loss'])} | "
                f"{_fmt(b['exp_loss'] - w['exp_loss'])} | {_fmt(m['exp_loss'])} | "
                f"{_fmt(m['exp_loss'] - w['exp_loss'])} | "
                f"{_fmt(w['acc@5'], True)} | {_fmt(b['acc@5'], True)} | {_fmt(b['acc@5'] - w['acc@5'], True)} | "
                f"{_fmt(m['acc@5'], True)} | {_fmt(m['acc@5'] - w['acc@5'], True)} | {_fmt(w['acc@1'], True)} |"
            )
        detection = result["object_detection"]
        if detection:
            ks = [key for key in next(iter(detection.values())) if key.startswith("precision@")]
            lines += ["", "Prompt-based object detection (precision of the top-k words against the objects, %):",
                      "", "| prompt | " + " | ".join(ks) + " |", "|---|" + "---|" * len(ks)]
            for prompt, row in detection.items():
                lines.append(f"| {prompt} | " + " | ".join(_fmt(row[k], True) for k in ks) + " |")
        lines.append("")
    matrix = report["accuracy_matrix"]
    lines += [f"## Accuracy by masked class ({matrix['metric']} with the image, %)", "",
              "| eval mask | " + " | ".join(matrix["columns"]) + " |", "|---|" + "---|" * len(matrix["columns"])]
    for mask, values in zip(matrix["rows"], matrix["values"]):
        lines.append(f"| {mask} | " + " | ".join(_fmt(v, True) for v in values) + " |")
    return "\n".join(lines) + "\n"


def plot_delta_loss(report: dict, path: str) -> None:
    """Grouped bars: Δ loss (blank and mismatched) per evaluation mask, one group of bars per checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report["checkpoints"]
    masks = list(results[0]["masks"])
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.1 * len(masks) * 2), 4), sharey=True)
    width = 0.8 / len(results)
    for ax, variant in zip(axes, VARIANTS):
        for j, result in enumerate(results):
            values = [result["masks"][m][f"delta_{variant}"]["loss"] for m in masks]
            ax.bar([i + j * width for i in range(len(masks))], [0 if math.isnan(v) else v for v in values],
                   width=width, label=result["name"])
        ax.set_xticks([i + width * (len(results) - 1) / 2 for i in range(len(masks))])
        ax.set_xticklabels(masks, rotation=45, ha="right")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title(f"Δ loss without the image ({variant} image)")
    axes[0].set_ylabel("loss without − loss with (nats)")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args: ImageNecessityArguments, data_args: DataArguments) -> dict:
    """Evaluate every checkpoint and write the JSON, Markdown and PNG; returns the report dict."""
    image_size = AutoConfig.from_pretrained(args.checkpoint[0]).vision_config.image_size
    dataset, eval_data = load_eval_dataset(data_args, args.data_seed, image_size)
    names = args.checkpoint_names or [pretraining_policy(c) or os.path.basename(os.path.normpath(c))
                                      for c in args.checkpoint]
    results = [evaluate_checkpoint(c, n, dataset, args, data_args, eval_data) for c, n in zip(args.checkpoint, names)]
    settings = {"eval_masks": args.eval_masks, "mask_rate": args.mask_rate, "seed": args.seed,
                "variants": list(VARIANTS), "prompts": args.prompts, "prompt_top_k": args.prompt_top_k}
    report = {"schema_version": 1, "task": "image_necessity", "eval_data": eval_data, "settings": settings,
              "checkpoints": results, "accuracy_matrix": accuracy_matrix(results, args.eval_masks, args.matrix_metric)}
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "image_necessity.json"), "w") as handle:
        json.dump(json_safe(report), handle, indent=2)
    with open(os.path.join(args.output_dir, "image_necessity.md"), "w") as handle:
        handle.write(markdown_report(report))
    plot_delta_loss(report, os.path.join(args.output_dir, "image_necessity_delta_loss.png"))
    return report


def main(argv: list[str] | None = None) -> dict:
    argv = merge_repeated_flag(list(sys.argv[1:] if argv is None else argv))
    args, data_args = parse_args((ImageNecessityArguments, DataArguments), argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = run(args, data_args)
    logger.info("wrote %s", os.path.join(args.output_dir, "image_necessity.json"))
    return report


if __name__ == "__main__":
    main()
