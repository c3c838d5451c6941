"""Encode only what is seen: visible-patch selection (MAE / M3AE) and patch dropping (FLIP), as pure functions.

Conventions (as in the rest of the package): ``bool_masked_pos`` (B, N) is True for a masked (hidden) patch,
N = number of patches, row-major. Index tensors ``ids`` (B, K) hold patch indices in [0, N), ascending in each
row, so a kept subset keeps the image's reading order. ``valid`` (B, K) is True where ``ids`` names a patch
that is really kept (rows with fewer visible patches than the widest row are padded; see
:func:`visible_indices`).

* :func:`visible_indices` / :func:`gather_visible` -- MAE: the encoder sees only the unmasked patches (with
  their own position embeddings, added before the gather).
* :func:`scatter_with_mask_token` -- the decoder's full sequence: encoder states back at their positions, a
  (learned) mask token at every masked position.
* :func:`patch_keep_indices` / :func:`random_patch_drop` -- FLIP / open_clip ``patch_dropout``: keep a random
  ``1 - drop_ratio`` share of the patches. The randomness arrives as a tensor (``noise``, e.g. drawn by the
  data collator) or from a caller's seeded ``torch.Generator``; nothing here draws from global RNG state.
* :func:`vit_encode_subset` -- runs a transformers ``ViTModel`` (linear or conv patch embedder) on a subset of
  its patches: patch + position embeddings of all patches, gather, [CLS], the encoder layers, final LayerNorm.
* :class:`MaskTokenScatter` -- the thin module around :func:`scatter_with_mask_token` that owns the decoder's
  mask token and position embeddings (mask tokens must know where they are).
"""

import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask


# ----------------------------------------------------------------------------------------------- indices
def visible_indices(bool_masked_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the unmasked patches of each row.

    Args:
        bool_masked_pos (B, N) bool: True = masked.

    Returns:
        ids (B, V) long: the visible patch indices of each row in ascending order, V = the largest visible count
            of the batch. A row with fewer visible patches is padded with its *masked* patch indices (ascending),
            so every row of ``ids`` holds distinct indices.
        valid (B, V) bool: True where ``ids`` is a visible patch, False on the padding.
    """
    if bool_masked_pos.dim() != 2:
        raise ValueError(f"bool_masked_pos must be (batch, num_patches); got shape {tuple(bool_masked_pos.shape)}")
    masked = bool_masked_pos.bool()
    counts = (~masked).sum(dim=1)  # (B,) visible patches per row
    width = int(counts.max()) if counts.numel() else 0
    # a stable sort on the masked flag puts the visible patches first, each group in ascending order
    order = torch.sort(masked.to(torch.uint8), dim=1, stable=True).indices  # (B, N)
    ids = order[:, :width]  # (B, V)
    valid = torch.arange(width, device=masked.device)[None, :] < counts[:, None]  # (B, V)
    return ids, valid


def patch_keep_indices(noise: torch.Tensor, num_keep: int) -> torch.Tensor:
    """FLIP / MAE random subset: the ``num_keep`` patches with the smallest ``noise`` of each row, ascending.

    noise (B, N) float -> ids (B, num_keep) long.
    """
    if noise.dim() != 2:
        raise ValueError(f"noise must be (batch, num_patches); got shape {tuple(noise.shape)}")
    if not 0 < num_keep <= noise.shape[1]:
        raise ValueError(f"num_keep must be in [1, {noise.shape[1]}] (the number of patches); got {num_keep}")
    keep = torch.argsort(noise, dim=1)[:, :num_keep]  # (B, K)
    return torch.sort(keep, dim=1).values


def num_kept_patches(num_patches: int, drop_ratio: float) -> int:
    """Patches kept when a ``drop_ratio`` share is dropped (open_clip's rule: int(N * (1 - ratio)), at least 1)."""
    if not 0.0 <= drop_ratio < 1.0:
        raise ValueError(f"drop_ratio must be in [0, 1); got {drop_ratio}")
    return max(1, int(num_patches * (1.0 - drop_ratio)))


def patch_drop_noise(batch_size: int, num_patches: int, generator: torch.Generator,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Uniform noise (B, N) for :func:`patch_keep_indices`, drawn from a caller's (seeded) generator."""
    noise = torch.rand(batch_size, num_patches, generator=generator, device=generator.device)
    return noise if device is None else noise.to(device)


# ------------------------------------------------------------------------------------------ gather / scatter
def gather_tokens(tokens: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """tokens (B, N, D), ids (B, K) -> (B, K, D): row b holds tokens[b, ids[b]]."""
    return torch.gather(tokens, 1, ids[..., None].expand(-1, -1, tokens.shape[-1]))


def gather_visible(embeddings: torch.Tensor, bool_masked_pos: torch.Tensor):
    """MAE: keep the unmasked patch embeddings.

    embeddings (B, N, D) (position embeddings already added), bool_masked_pos (B, N) ->
    (visible (B, V, D), ids (B, V), valid (B, V)); see :func:`visible_indices` for the padding.
    """
    if embeddings.shape[:2] != bool_masked_pos.shape:
        raise ValueError(f"embeddings {tuple(embeddings.shape)} and bool_masked_pos {tuple(bool_masked_pos.shape)} "
                         "disagree on (batch, num_patches)")
    ids, valid = visible_indices(bool_masked_pos)
    return gather_tokens(embeddings, ids), ids, valid


def random_patch_drop(embeddings: torch.Tensor, drop_ratio: float, noise: torch.Tensor | None = None,
                      generator: torch.Generator | None = None):
    """FLIP: keep a random ``1 - drop_ratio`` share of the patches of each row (the same count in every row).

    embeddings (B, N, D); ``noise`` (B, N) or a seeded ``generator`` to draw it -> (kept (B, K, D), ids (B, K)).
    """
    batch, num_patches, _ = embeddings.shape
    if noise is None:
        if generator is None:
            raise ValueError("random_patch_drop needs `noise` (B, N) or a seeded `generator`")
        noise = patch_drop_noise(batch, num_patches, generator, embeddings.device)
    if tuple(noise.shape) != (batch, num_patches):
        raise ValueError(f"noise must be (batch, num_patches) = ({batch}, {num_patches}); got {tuple(noise.shape)}")
    ids = patch_keep_indices(noise, num_kept_patches(num_patches, drop_ratio))
    return gather_tokens(embeddings, ids), ids


def scatter_with_mask_token(states: torch.Tensor, ids: torch.Tensor, valid: torch.Tensor | None,
                            mask_token: torch.Tensor, num_patches: int) -> torch.Tensor:
    """The decoder's full sequence: ``states`` at their patch positions, ``mask_token`` everywhere else.

    states (B, K, D) at patch positions ids (B, K) (distinct per row); valid (B, K) or None (= all kept);
    mask_token broadcastable to (D,) -> (B, N, D). Differentiable in ``states`` and ``mask_token``.
    """
    batch, _, dim = states.shape
    token = mask_token.reshape(1, 1, dim).to(states.dtype)
    full = token.expand(batch, num_patches, dim)
    if valid is not None:  # padding slots point at masked positions: they receive the mask token too
        states = torch.where(valid[..., None], states, token)
    return full.scatter(1, ids[..., None].expand(-1, -1, dim), states)


# ------------------------------------------------------------------------------------------- ViT on a subset
def vit_encode_subset(vision_model: nn.Module, pixel_values: torch.Tensor, ids: torch.Tensor,
                      valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run a transformers ``ViTModel`` on the patches ``ids`` only (plus [CLS]).

    The same embeddings as ``ViTEmbeddings`` (patch embedding, + position embedding, [CLS] + its position
    embedding, dropout) restricted to the kept patches, then the encoder layers and the final LayerNorm.

    Args:
        vision_model: a ``ViTModel`` (attributes ``embeddings``, ``layers``, ``layernorm``, ``config``).
        pixel_values (B, C, H, W) at the model's image size.
        ids (B, K) long: kept patch indices; valid (B, K) bool or None: False marks padding slots, which no
            token attends to.

    Returns:
        states (B, 1 + K, D) ([CLS] first) and the key-padding mask (B, 1 + K) long (1 = real token), or None
        when every slot is real.
    """
    emb = vision_model.embeddings
    weight_dtype = emb.patch_embeddings.projection.weight.dtype
    patches = emb.patch_embeddings(pixel_values.to(weight_dtype))  # (B, N, D)
    positions = emb.position_embeddings  # (1, 1 + N, D)
    if positions.shape[1] != patches.shape[1] + 1:
        raise ValueError(f"the vision tower has {positions.shape[1] - 1} position embeddings for "
                         f"{patches.shape[1]} patches (visible-only encoding does not interpolate positions)")
    patches = gather_tokens(patches + positions[:, 1:], ids)  # (B, K, D)
    cls = (emb.cls_token + positions[:, :1]).expand(patches.shape[0], -1, -1)  # (B, 1, D)
    hidden = emb.dropout(torch.cat([cls, patches], dim=1))  # (B, 1 + K, D)
    key_mask = None
    if valid is not None and not bool(valid.all()):
        key_mask = torch.cat([valid.new_ones(valid.shape[0], 1), valid], dim=1).long()  # (B, 1 + K)
    attention_mask = create_bidirectional_mask(config=vision_model.config, inputs_embeds=hidden,
                                               attention_mask=key_mask)
    for layer in vision_model.layers:
        hidden = layer(hidden, attention_mask)
    return vision_model.layernorm(hidden), key_mask


class MaskTokenScatter(nn.Module):
    """Decoder input of visible-only MIM: fused states of the kept tokens -> (B, 1 + N, D) with a learned mask
    token at every masked patch and learned position embeddings added to every token ([CLS] first)."""

    def __init__(self, hidden_size: int, num_patches: int, initializer_range: float = 0.02):
        super().__init__()
        self.num_patches = num_patches
        self.initializer_range = initializer_range
        self.mask_token = nn.Parameter(torch.zeros(1, 1, hidden_size))
        self.position_embeddings = nn.Parameter(torch.zeros(1, 1 + num_patches, hidden_size))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.normal_(self.mask_token, std=self.initializer_range)
        nn.init.trunc_normal_(self.position_embeddings, std=self.initializer_range)

    def forward(self, states: torch.Tensor, ids: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """states (B, 1 + K, D) ([CLS] first), ids / valid (B, K) -> (B, 1 + N, D)."""
        patches = scatter_with_mask_token(states[:, 1:], ids, valid, self.mask_token, self.num_patches)
        return torch.cat([states[:, :1], patches], dim=1) + self.position_embeddings.to(states.dtype)


__all__ = [
    "MaskTokenScatter",
    "gather_tokens",
    "gather_visible",
    "num_kept_patches",
    "patch_drop_noise",
    "patch_keep_indices",
    "random_patch_drop",
    "scatter_with_mask_token",
    "visible_indices",
    "vit_encode_subset",
]
