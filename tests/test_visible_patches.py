"""Visible-only encoding (MAE) and patch dropping (FLIP): the pure functions of modeling_maskvl/visible_patches.py."""

import ast
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, ViTConfig

from modeling_maskvl.patch_embedding import ConvPatchEmbeddings, ConvStemPatchEmbeddings
from modeling_maskvl.visible_patches import (
    MaskTokenScatter,
    gather_tokens,
    gather_visible,
    num_kept_patches,
    patch_drop_noise,
    patch_keep_indices,
    random_patch_drop,
    scatter_with_mask_token,
    visible_indices,
    vit_encode_subset,
)

MODULE = Path(__file__).resolve().parents[1] / "modeling_maskvl" / "visible_patches.py"


def random_masks(batch=6, num_patches=16, seed=0) -> torch.Tensor:
    """Masks with a different number of masked patches per row (0 and all-but-one included)."""
    generator = torch.Generator().manual_seed(seed)
    masks = torch.zeros(batch, num_patches, dtype=torch.bool)
    counts = [0, num_patches - 1] + torch.randint(1, num_patches, (batch - 2,), generator=generator).tolist()
    for row, count in enumerate(counts):
        masks[row, torch.randperm(num_patches, generator=generator)[:count]] = True
    return masks


def test_module_imports_only_torch_transformers_and_siblings():
    tree = ast.parse(MODULE.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add("." if node.level else node.module.split(".")[0])
    assert roots <= {"torch", "transformers", "."}, roots


def test_visible_indices_lists_each_rows_unmasked_patches_in_order():
    masks = random_masks()
    ids, valid = visible_indices(masks)
    counts = (~masks).sum(1)
    assert ids.shape == valid.shape == (masks.shape[0], int(counts.max()))
    for row in range(masks.shape[0]):
        expected = (~masks[row]).nonzero().squeeze(1)
        assert valid[row].sum() == counts[row]
        assert torch.equal(ids[row][valid[row]], expected)  # visible, ascending
        assert masks[row, ids[row][~valid[row]]].all()  # padding points at masked patches
        assert len(set(ids[row].tolist())) == ids.shape[1]  # distinct: scatter has no collisions


def test_gather_visible_equals_boolean_indexing_per_row():
    masks = random_masks()
    embeddings = torch.randn(masks.shape[0], masks.shape[1], 5)
    visible, ids, valid = gather_visible(embeddings, masks)
    for row in range(masks.shape[0]):
        torch.testing.assert_close(visible[row][valid[row]], embeddings[row][~masks[row]], rtol=0, atol=0)
    with pytest.raises(ValueError, match="disagree"):
        gather_visible(embeddings[:, :-1], masks)


def test_scatter_puts_states_back_and_mask_tokens_elsewhere():
    masks = random_masks()
    batch, num_patches = masks.shape
    embeddings = torch.randn(batch, num_patches, 4)
    visible, ids, valid = gather_visible(embeddings, masks)
    states = visible.clone().requires_grad_(True)
    token = torch.randn(4, requires_grad=True)
    full = scatter_with_mask_token(states, ids, valid, token, num_patches)
    assert full.shape == (batch, num_patches, 4)
    torch.testing.assert_close(full[~masks], embeddings[~masks], rtol=0, atol=0)
    torch.testing.assert_close(full[masks], token.detach().expand(int(masks.sum()), 4), rtol=0, atol=0)
    full.sum().backward()
    assert token.grad.tolist() == [float(masks.sum())] * 4  # one gradient per masked position
    assert torch.equal(states.grad[..., 0], valid.float())  # padding slots do not leak into the output


def test_patch_keep_indices_keeps_the_smallest_noise_in_order():
    noise = torch.tensor([[0.9, 0.1, 0.5, 0.3], [0.2, 0.8, 0.7, 0.1]])
    assert patch_keep_indices(noise, 2).tolist() == [[1, 3], [0, 3]]
    assert patch_keep_indices(noise, 4).tolist() == [[0, 1, 2, 3]] * 2
    with pytest.raises(ValueError, match="num_keep"):
        patch_keep_indices(noise, 0)
    with pytest.raises(ValueError, match="noise"):
        patch_keep_indices(noise[0], 1)


@pytest.mark.parametrize("num_patches, ratio, kept", [(64, 0.5, 32), (64, 0.75, 16), (196, 0.5, 98), (49, 0.5, 24),
                                                      (16, 0.99, 1), (16, 0.0, 16)])
def test_num_kept_patches_follows_open_clip(num_patches, ratio, kept):
    assert num_kept_patches(num_patches, ratio) == kept == max(1, int(num_patches * (1 - ratio)))


def test_num_kept_patches_rejects_bad_ratios():
    for ratio in (1.0, -0.1):
        with pytest.raises(ValueError, match="drop_ratio"):
            num_kept_patches(16, ratio)


def test_random_patch_drop_is_reproducible_and_needs_a_source_of_randomness():
    embeddings = torch.randn(3, 16, 4)
    kept_a, ids_a = random_patch_drop(embeddings, 0.5, generator=torch.Generator().manual_seed(7))
    kept_b, ids_b = random_patch_drop(embeddings, 0.5, generator=torch.Generator().manual_seed(7))
    _, ids_c = random_patch_drop(embeddings, 0.5, generator=torch.Generator().manual_seed(8))
    assert torch.equal(ids_a, ids_b) and not torch.equal(ids_a, ids_c)
    assert kept_a.shape == (3, 8, 4) and torch.equal(kept_a, gather_tokens(embeddings, ids_a))
    assert (ids_a.diff(dim=1) > 0).all()  # ascending, distinct
    noise = patch_drop_noise(3, 16, torch.Generator().manual_seed(7))
    assert torch.equal(random_patch_drop(embeddings, 0.5, noise=noise)[1], ids_a)  # noise in = same subset
    with pytest.raises(ValueError, match="noise.*generator"):
        random_patch_drop(embeddings, 0.5)
    with pytest.raises(ValueError, match=r"\(3, 16\)"):
        random_patch_drop(embeddings, 0.5, noise=noise[:, :8])


def tiny_vit(patch_embedder="linear", attn="sdpa", seed=0):
    torch.manual_seed(seed)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8, qkv_bias=True, attn_implementation=attn)
    model = AutoModel.from_config(config, add_pooling_layer=False, use_mask_token=True)
    if patch_embedder != "linear":
        embedder = {"conv": ConvPatchEmbeddings, "conv_stem": ConvStemPatchEmbeddings}[patch_embedder]
        model.embeddings.patch_embeddings = embedder(config)
    return model.eval()


@pytest.mark.parametrize("patch_embedder", ["linear", "conv", "conv_stem"])
def test_vit_on_every_patch_equals_the_vit_itself(patch_embedder):
    model = tiny_vit(patch_embedder)
    pixels = torch.randn(3, 3, 32, 32)
    ids = torch.arange(16).expand(3, -1)
    states, key_mask = vit_encode_subset(model, pixels, ids)
    assert key_mask is None
    torch.testing.assert_close(states, model(pixel_values=pixels).last_hidden_state, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_vit_on_visible_patches_equals_each_row_encoded_alone(attn):
    """Padded rows are masked out of attention: each row's states equal a ViT run on that row's visible patches
    only (reference: the embeddings of the whole image, boolean-indexed, then the layers, one row at a time)."""
    model = tiny_vit(attn=attn)
    masks = random_masks(batch=5, num_patches=16, seed=3)
    pixels = torch.randn(5, 3, 32, 32)
    ids, valid = visible_indices(masks)
    states, key_mask = vit_encode_subset(model, pixels, ids, valid)
    assert key_mask.shape == (5, 1 + ids.shape[1]) and key_mask[:, 0].all()
    with torch.no_grad():
        full = model.embeddings(pixels)  # (B, 1 + N, D), CLS first, positions added
        for row in range(5):
            keep = torch.cat([torch.tensor([True]), ~masks[row]])
            hidden = full[row:row + 1, keep]
            for layer in model.layers:
                hidden = layer(hidden, None)
            reference = model.layernorm(hidden)[0]
            real = key_mask[row].bool()
            torch.testing.assert_close(states[row][real], reference, rtol=1e-5, atol=1e-5)


def test_vit_subset_rejects_a_tower_of_another_size():
    model = tiny_vit()
    with pytest.raises(ValueError, match="position embeddings"):
        vit_encode_subset(model, torch.randn(1, 3, 64, 64), torch.arange(4)[None])


def test_mask_token_scatter_gives_masked_positions_their_own_position():
    torch.manual_seed(0)
    scatter = MaskTokenScatter(hidden_size=8, num_patches=16)
    masks = random_masks(batch=4, num_patches=16)
    ids, valid = visible_indices(masks)
    states = torch.randn(4, 1 + ids.shape[1], 8)
    out = scatter(states, ids, valid)
    assert out.shape == (4, 17, 8)
    position = scatter.position_embeddings.detach()[0]
    torch.testing.assert_close(out[:, 0], states[:, 0] + position[0])  # [CLS] stays first
    row = 1  # all but one patch masked
    masked = masks[row].nonzero().squeeze(1)
    expected = scatter.mask_token.detach()[0, 0] + position[1 + masked]
    torch.testing.assert_close(out[row, 1 + masked], expected)
    assert not torch.allclose(out[row, 1 + masked[0]], out[row, 1 + masked[1]])  # mask tokens know where they are
