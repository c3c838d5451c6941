"""Patch embedders: MLIM's conv stack (kernel == stride) and the early-convolution stem (overlapping 3x3)."""
import pytest
import torch
from transformers import ViTConfig

from modeling_maskvl import MaskVLConfig, MaskVLForPreTraining
from modeling_maskvl.patch_embedding import ConvPatchEmbeddings, ConvStemPatchEmbeddings


def _vit(patch_size=16, hidden=64):
    return ViTConfig(image_size=64, patch_size=patch_size, hidden_size=hidden, num_channels=3)


@pytest.mark.parametrize("embedder", [ConvPatchEmbeddings, ConvStemPatchEmbeddings])
def test_shapes_and_row_major_order(embedder):
    torch.manual_seed(0)
    module = embedder(_vit()).eval()
    pixels = torch.zeros(2, 3, 64, 64)
    out = module(pixels)
    assert out.shape == (2, 16, 64)  # (B, (64/16)^2, D)
    pixels[1, :, 16:32, 48:64] = 3.0  # patch (row 1, column 3) -> index 7
    changed = (module(pixels)[1] - out[1]).abs().sum(-1)  # (N,)
    assert changed[7] > 0
    assert torch.all(changed[[0, 1, 4, 5, 8, 12, 13]] == 0)  # patches away from (1, 3) are untouched
    assert torch.equal(module(pixels)[0], out[0])  # rows of a batch are independent


def test_stem_sees_neighbouring_pixels_but_kernel_equals_stride_does_not():
    """The stem's 3x3 kernels overlap patch borders (edges, corners); MLIM's stack keeps patches apart."""
    torch.manual_seed(0)
    pixels = torch.zeros(1, 3, 64, 64)
    poked = pixels.clone()
    poked[0, :, 15, 15] = 5.0  # the last pixel of patch 0, next to patches 1, 4 and 5
    for embedder, leaks in ((ConvPatchEmbeddings, False), (ConvStemPatchEmbeddings, True)):
        module = embedder(_vit()).eval()
        diff = (module(poked) - module(pixels)).abs().sum(-1)[0]  # (N,)
        assert diff[0] > 0
        assert (diff[[1, 4, 5]] > 0).any().item() is leaks
        assert torch.all(diff[[2, 3, 8, 15]] == 0)  # never further than the next patch


def test_config_accepts_conv_stem_and_trains(tmp_path):
    config = MaskVLConfig.from_preset("maskvlm-tiny", vision_config={"patch_embedder": "conv_stem", "patch_size": 16},
                                      text_config={"vocab_size": 50})
    model = MaskVLForPreTraining(config)
    assert isinstance(model.maskvl.vision_model.embeddings.patch_embeddings, ConvStemPatchEmbeddings)
    ids = torch.randint(5, 50, (2, 6))
    labels = torch.full_like(ids, -100)
    labels[:, 2] = ids[:, 2]
    out = model(input_ids=ids, pixel_values=torch.randn(2, 3, 64, 64), labels=labels)
    out.loss.backward()
    stem = model.maskvl.vision_model.embeddings.patch_embeddings.stem[0].weight
    assert stem.grad is not None and stem.grad.abs().sum() > 0
    model.save_pretrained(tmp_path)
    reloaded = MaskVLForPreTraining.from_pretrained(tmp_path)
    assert reloaded.config.vision_config.patch_embedder == "conv_stem"
    with pytest.raises(ValueError, match="power of two"):
        MaskVLConfig.from_preset("maskvlm-tiny", vision_config={"patch_embedder": "conv_stem", "patch_size": 12,
                                                                "image_size": 48})


@pytest.mark.parametrize("name", ["maskvlm-small", "mlim-small", "lxmert-small"])
def test_small_presets_use_the_stem_and_the_fan_in_init_scale(name):
    config = MaskVLConfig.from_preset(name)
    assert config.vision_config.patch_embedder == "conv_stem" and config.num_patches == 16
    assert config.vision_config.conv_stem_channels == [32, 32, 64, 64] and config.vision_config.conv_stem_norm == "batch"
    assert config.initializer_range == pytest.approx(64 ** -0.5)
    model = MaskVLForPreTraining(config)
    weights = [p for n, p in model.named_parameters() if p.dim() == 2 and "embeddings" not in n and p.numel() >= 4096]
    stds = torch.tensor([w.std().item() for w in weights])
    assert torch.allclose(stds, torch.full_like(stds, 64 ** -0.5), rtol=0.15)  # not BERT's 0.02


def test_conv_stem_channels_and_batch_norm_are_config_fields(tmp_path):
    vision = {"patch_embedder": "conv_stem", "patch_size": 16, "conv_stem_channels": [8, 8, 16, 16],
              "conv_stem_norm": "batch"}
    config = MaskVLConfig.from_preset("maskvlm-tiny", vision_config=vision, text_config={"vocab_size": 50})
    model = MaskVLForPreTraining(config)
    stem = model.maskvl.vision_model.embeddings.patch_embeddings.stem
    convs = [m for m in stem if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 8, 16, 16]
    norms = [m for m in stem if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 4 and torch.all(norms[0].weight == 1) and torch.all(norms[0].running_var == 1)
    ids = torch.randint(5, 50, (2, 6))
    labels = torch.full_like(ids, -100)
    labels[:, 2] = ids[:, 2]
    model.train()
    model(input_ids=ids, pixel_values=torch.randn(2, 3, 64, 64), labels=labels).loss.backward()
    assert not torch.all(norms[0].running_mean == 0)  # training updates the running statistics
    model.save_pretrained(tmp_path)
    reloaded = MaskVLForPreTraining.from_pretrained(tmp_path).eval()
    model.eval()
    assert reloaded.config.vision_config.conv_stem_channels == [8, 8, 16, 16]
    assert torch.equal(reloaded.maskvl.vision_model.embeddings.patch_embeddings.stem[1].running_mean,
                       norms[0].running_mean)  # the statistics are saved with the weights
    pixels = torch.randn(3, 3, 64, 64)
    with torch.no_grad():  # at evaluation one image is embedded as it is in a batch (running statistics)
        batch = model.maskvl.encode_image(pixels)
        single = model.maskvl.encode_image(pixels[:1])
    assert torch.allclose(batch[:1], single, atol=1e-5)
    default = MaskVLConfig.from_preset("maskvlm-tiny", vision_config={"patch_embedder": "conv_stem", "patch_size": 16})
    widths = [m.out_channels for m in MaskVLForPreTraining(default).maskvl.vision_model.embeddings.patch_embeddings.stem
              if isinstance(m, torch.nn.Conv2d)]
    assert widths == [16, 16, 16, 32]  # the default rule: hidden / 2 ** (stages - i), at least 16 (tiny width 64)


@pytest.mark.parametrize("bad, match", [
    ({"conv_stem_channels": [8, 8, 16]}, "4 positive integers"),
    ({"conv_stem_channels": [8, 8, 0, 16]}, "4 positive integers"),
    ({"conv_stem_channels": "wide"}, "4 positive integers"),
    ({"conv_stem_norm": "group"}, "conv_stem_norm"),
])
def test_bad_conv_stem_fields_name_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        MaskVLConfig.from_preset("maskvlm-tiny", vision_config={"patch_embedder": "conv_stem", "patch_size": 16, **bad})
