"""Pure metric functions shared by the evaluation scripts (no model, no I/O).

* Masked-token scoring: `masked_token_sums` (per batch) -> `summarise_masked_tokens` (mean loss, its
  exp, Acc@k) -> `image_necessity_deltas` (without-image minus with-image).
* `topk_accuracy` (Acc@k: the target is among the k highest logits).
* `prompt_precision_at_k` (prompt-based object detection: share of the top-k predicted words that
  are objects of the image).
* `retrieval_recall_at_k` / `rerank_top_k` (R@k for image<->text retrieval, ITM re-ranking).
* `mean_and_spread` (mean and spread over seeds). VQA accuracy is the local `evaluate` module
  `maskvl_train/vqa_accuracy`.
* `model_index_results` (the `model-index` entries a model card carries); `json_safe` (NaN -> null).

Conventions: logits are (M, V) float over the M scored positions and labels (M,) long; a label of
-100 is never scored. Every function returns plain Python numbers / dicts so results go straight to
JSON.
"""

import math
import statistics

import torch
from maskvl_processing.masking_primitives import IGNORE_INDEX

DEFAULT_KS = (1, 5)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Share of positions whose label is among the `k` highest logits (NaN when nothing is scored)."""
    keep = labels != IGNORE_INDEX
    if not keep.any():
        return float("nan")
    top = logits[keep].topk(min(k, logits.shape[-1]), dim=-1).indices  # (M, k)
    return (top == labels[keep, None]).any(dim=-1).float().mean().item()


def masked_token_sums(logits: torch.Tensor, labels: torch.Tensor, ks=DEFAULT_KS) -> dict:
    """Sums over the scored positions of one batch: `count`, `loss_sum` (cross-entropy, nats) and
    `correct@k` for each k. Add these over batches, then call `summarise_masked_tokens`."""
    keep = labels != IGNORE_INDEX
    logits, labels = logits[keep].float(), labels[keep]  # (M, V), (M,)
    loss_sum = torch.nn.functional.cross_entropy(logits, labels, reduction="sum") if labels.numel() else 0.0
    sums = {"count": int(labels.numel()), "loss_sum": float(loss_sum)}
    for k in ks:
        top = logits.topk(min(k, logits.shape[-1]), dim=-1).indices  # (M, k)
        sums[f"correct@{k}"] = int((top == labels[:, None]).any(dim=-1).sum())
    return sums


def add_sums(total: dict | None, sums: dict) -> dict:
    """Add two dicts of counters key by key (`total` may be None)."""
    if total is None:
        return dict(sums)
    return {key: total[key] + sums[key] for key in total}


def summarise_masked_tokens(sums: dict) -> dict:
    """Counters -> `{"num_tokens", "loss", "exp_loss", "acc@k"...}` (accuracies in [0, 1]; NaN if empty)."""
    count = sums["count"]
    out = {"num_tokens": count}
    out["loss"] = sums["loss_sum"] / count if count else float("nan")
    out["exp_loss"] = math.exp(out["loss"]) if count else float("nan")
    for key, value in sums.items():
        if key.startswith("correct@"):
            out["acc@" + key.split("@")[1]] = value / count if count else float("nan")
    return out


def image_necessity_deltas(with_image: dict, without_image: dict) -> dict:
    """Δ = without − with for every shared metric except `num_tokens` (Bitton et al.'s convention:
    a positive Δ loss / negative Δ Acc means the model needed the image)."""
    if with_image["num_tokens"] != without_image["num_tokens"]:
        raise ValueError(
            f"with and without the image must score the same tokens, got {with_image['num_tokens']} and "
            f"{without_image['num_tokens']}"
        )
    return {key: without_image[key] - with_image[key] for key in with_image if key != "num_tokens"}


def prompt_precision_at_k(predictions: list[list[str]], gold: list, ks=(1, 5, 10)) -> dict:
    """Precision@k of ranked word predictions against each image's gold objects.

    `predictions[i]` is image i's ranked words (at least max(ks) of them); `gold[i]` its objects
    (any iterable; images without gold objects are left out). precision@k = |top-k ∩ gold| / k,
    averaged over images. Returns `{"precision@k": float, ..., "num_images": int}`.
    """
    if len(predictions) != len(gold):
        raise ValueError(f"{len(predictions)} prediction lists but {len(gold)} gold object lists")
    out = {f"precision@{k}": 0.0 for k in ks}
    used = 0
    for index, (ranked, objects) in enumerate(zip(predictions, gold)):
        objects = {str(o).lower() for o in objects}
        if not objects:
            continue
        if len(ranked) < max(ks):
            raise ValueError(f"image {index}: {len(ranked)} predictions, need at least {max(ks)}")
        used += 1
        for k in ks:
            out[f"precision@{k}"] += sum(word.lower() in objects for word in ranked[:k]) / k
    for k in ks:
        out[f"precision@{k}"] = out[f"precision@{k}"] / used if used else float("nan")
    out["num_images"] = used
    return out


def retrieval_recall_at_k(ranking: torch.Tensor, positives: torch.Tensor, ks=(1, 5, 10)) -> dict:
    """R@k: share of queries with at least one positive among their first k ranked candidates.

    Args:
        ranking: (Q, C) long, candidate indices per query, best first (any prefix length C >= max k).
        positives: (Q, N) bool, `positives[q, c]` True when candidate c matches query q.
    """
    if ranking.shape[0] != positives.shape[0]:
        raise ValueError(f"{ranking.shape[0]} ranked queries but {positives.shape[0]} rows of positives")
    if not positives.any(dim=1).all():
        missing = (~positives.any(dim=1)).nonzero().squeeze(1)[:5].tolist()
        raise ValueError(f"queries {missing} have no positive candidate")
    hits = positives.gather(1, ranking)  # (Q, C) bool: is the candidate at rank r a positive?
    return {f"R@{k}": hits[:, :k].any(dim=1).float().mean().item() for k in ks}


def rerank_top_k(similarity: torch.Tensor, k: int, rerank_scores: torch.Tensor) -> torch.Tensor:
    """Full ranking (Q, C) by `similarity`, with the first k re-ordered by `rerank_scores` (Q, k),
    the scores of those k candidates in their ITC order. Ties keep the ITC order."""
    order = similarity.argsort(dim=1, descending=True, stable=True)  # (Q, C)
    k = min(k, similarity.shape[1])
    if rerank_scores.shape != (similarity.shape[0], k):
        raise ValueError(f"rerank_scores must have shape {(similarity.shape[0], k)}, got {tuple(rerank_scores.shape)}")
    inner = rerank_scores.argsort(dim=1, descending=True, stable=True)  # (Q, k)
    return torch.cat([order[:, :k].gather(1, inner), order[:, k:]], dim=1)


def json_safe(value):
    """NaN -> None, recursively (strict JSON)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def mean_and_spread(values) -> dict:
    """`{"mean", "std" (sample, 0 for one value), "min", "max", "n"}` of a list of numbers."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_and_spread needs at least one value")
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def model_index_results(task_type: str, task_name: str, dataset_name: str, dataset_type: str, metrics: list,
                        dataset_split: str | None = None) -> dict:
    """One `model-index` `results` entry (Hub model-card metadata).

    `metrics` is a list of `(type, value, name)`; values are rounded to 4 decimals.
    """
    dataset = {"name": dataset_name, "type": dataset_type}
    if dataset_split:
        dataset["split"] = dataset_split
    return {
        "task": {"type": task_type, "name": task_name},
        "dataset": dataset,
        "metrics": [{"type": t, "value": round(float(v), 4), "name": n} for t, v, n in metrics],
    }


__all__ = [
    "topk_accuracy",
    "masked_token_sums",
    "add_sums",
    "summarise_masked_tokens",
    "image_necessity_deltas",
    "prompt_precision_at_k",
    "retrieval_recall_at_k",
    "rerank_top_k",
    "json_safe",
    "mean_and_spread",
    "model_index_results",
]
