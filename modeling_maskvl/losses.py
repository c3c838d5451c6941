"""Pre-training and fine-tuning losses as small pure functions.

Argument names match the fields of the model outputs, so a step can be written ``loss(**outputs)``-style.
Every function returns a scalar tensor that stays connected to its inputs (a batch with nothing to score
gives ``0 * logits.sum()``, not NaN), which keeps distributed training and gradient accumulation sane.
"""

import torch
import torch.nn.functional as F

# Label of a position that is not scored. `maskvl_processing.masking_primitives.IGNORE_INDEX` is the data side's
# copy: this package is Hub remote code and imports nothing of the processing package (a test checks they agree).
IGNORE_INDEX = -100


def _empty_loss(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.sum() * 0.0


def masked_lm_loss(mlm_logits: torch.Tensor, mlm_labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over masked tokens. mlm_logits (M, V) or (B, T, V); mlm_labels (M,) or (B, T), -100 ignored."""
    logits = mlm_logits.reshape(-1, mlm_logits.shape[-1])
    labels = mlm_labels.reshape(-1)
    if not (labels != IGNORE_INDEX).any():
        return _empty_loss(logits)
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)


def mlm_accuracy(mlm_logits: torch.Tensor, mlm_labels: torch.Tensor, top_k: int = 1) -> torch.Tensor:
    """Fraction of scored tokens whose label is among the top-k logits (NaN when nothing is scored)."""
    logits = mlm_logits.reshape(-1, mlm_logits.shape[-1])
    labels = mlm_labels.reshape(-1)
    keep = labels != IGNORE_INDEX
    if not keep.any():
        return logits.new_tensor(float("nan"))
    top = logits[keep].topk(min(top_k, logits.shape[-1]), dim=-1).indices  # (M, k)
    return (top == labels[keep, None]).any(dim=-1).float().mean()


def masked_image_loss(mim_logits: torch.Tensor, mim_labels: torch.Tensor, loss_type: str = "l1") -> torch.Tensor:
    """Pixel reconstruction of masked patches. mim_logits, mim_labels: (M, P * P * C); mean over patches and pixels."""
    if mim_logits.numel() == 0:
        return _empty_loss(mim_logits)
    if loss_type == "l1":
        return F.l1_loss(mim_logits.float(), mim_labels.float())
    if loss_type == "l2":
        return F.mse_loss(mim_logits.float(), mim_labels.float())
    raise ValueError(f"loss_type must be 'l1' or 'l2', got {loss_type!r}")


def contrastive_loss(logits_per_text: torch.Tensor, logits_per_image: torch.Tensor,
                     itc_labels: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE. logits_per_text (M, K): local texts vs all (gathered) images; logits_per_image (M, K):
    local images vs all texts; itc_labels (M,): column of each row's true partner."""
    if logits_per_text.shape[0] == 0:
        return _empty_loss(logits_per_text)
    text_loss = F.cross_entropy(logits_per_text.float(), itc_labels)
    image_loss = F.cross_entropy(logits_per_image.float(), itc_labels)
    return (text_loss + image_loss) / 2


def itm_loss(itm_logits: torch.Tensor, itm_labels: torch.Tensor) -> torch.Tensor:
    """Binary image-text matching as 2-way cross-entropy. itm_logits (B, 2); itm_labels (B,), 1 = matched."""
    return F.cross_entropy(itm_logits.float(), itm_labels.long())


def vqa_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Answer classification. Integer labels (B,) -> cross-entropy (one answer per question, -100 ignored);
    float labels (B, A) -> soft-score binary cross-entropy scaled by A (VQAv2 convention)."""
    if labels.dtype.is_floating_point:
        if labels.shape != logits.shape:
            raise ValueError(f"soft-score labels must have the logits' shape {tuple(logits.shape)}, "
                             f"got {tuple(labels.shape)}")
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float()) * labels.shape[1]
    return F.cross_entropy(logits.float(), labels.long(), ignore_index=IGNORE_INDEX)


def weighted_total(parts: dict, weights: dict) -> torch.Tensor | None:
    """Sum of ``weights[name] * parts[name]`` over the parts present (not None)."""
    present = [weights[name] * value for name, value in parts.items() if value is not None]
    return torch.stack(present).sum() if present else None
