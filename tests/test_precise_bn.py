"""Precise BatchNorm (maskvl_train.trainer): the vision tower's BatchNorm statistics are re-estimated over a fixed set
of training images before every evaluation and save, instead of trusting running averages that lag the weights."""

import pytest
import torch
from maskvl_train import pretraining as pretrain
from maskvl_train.arguments import parse_args
from maskvl_train.trainer import batch_norm_layers, recompute_batch_norm_statistics
from test_pretrain import tiny_args

from modeling_maskvl import MaskVLConfig, MaskVLForPreTraining

BN_STEM = {"patch_embedder": "conv_stem", "patch_size": 16, "conv_stem_channels": [8, 8, 16, 16],
           "conv_stem_norm": "batch"}


def bn_model() -> MaskVLForPreTraining:
    torch.manual_seed(0)
    config = MaskVLConfig.from_preset("maskvlm-tiny", vision_config={**BN_STEM, "image_size": 64},
                                      text_config={"vocab_size": 50})
    return MaskVLForPreTraining(config)


def first_bn_input_moments(tower, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and unbiased variance of what the first BatchNorm layer sees, over all of `pixels`."""
    seen = []
    layer = batch_norm_layers(tower)[0]
    handle = layer.register_forward_hook(lambda module, args, out: seen.append(args[0].detach()))
    with torch.no_grad():
        tower(pixel_values=pixels)
    handle.remove()
    x = seen[0].transpose(0, 1).flatten(1)  # (C, N*H*W)
    return x.mean(1), x.var(1, unbiased=True)


def test_recompute_sets_the_statistics_of_the_current_weights_and_keeps_the_mode():
    tower = bn_model().maskvl.vision_model.eval()
    layers = batch_norm_layers(tower)
    assert len(layers) == 4
    for layer in layers:  # stale statistics, as after high-learning-rate steps
        layer.running_mean.fill_(5.0)
        layer.running_var.fill_(9.0)
    pixels = torch.randn(24, 3, 64, 64) * 0.5 + 0.2
    expected_mean, expected_var = first_bn_input_moments(tower, pixels)
    assert recompute_batch_norm_statistics(tower, pixels, batch_size=24) == 4
    assert not tower.training  # eval mode restored
    assert torch.allclose(layers[0].running_mean, expected_mean, atol=1e-5)
    assert torch.allclose(layers[0].running_var, expected_var, rtol=1e-4)
    assert all(layer.momentum == 0.1 for layer in layers)  # momenta restored
    for layer in layers[1:]:
        assert not torch.allclose(layer.running_mean, torch.full_like(layer.running_mean, 5.0))
    # in eval mode the tower now normalises with the statistics of these images: its first BatchNorm output is
    # standardised per channel
    out = []
    handle = layers[0].register_forward_hook(lambda module, args, result: out.append(result.detach()))
    with torch.no_grad():
        tower(pixel_values=pixels)
    handle.remove()
    normalised = (out[0] - layers[0].bias[None, :, None, None]) / layers[0].weight[None, :, None, None]
    assert torch.allclose(normalised.transpose(0, 1).flatten(1).mean(1), torch.zeros(8), atol=1e-4)


def test_averages_over_batches_and_ignores_models_without_batch_norm():
    tower = bn_model().maskvl.vision_model.train()
    pixels = torch.randn(32, 3, 64, 64)
    recompute_batch_norm_statistics(tower, pixels, batch_size=8)  # four equal batches: the plain average
    expected_mean, _ = first_bn_input_moments(tower, pixels)
    assert torch.allclose(batch_norm_layers(tower)[0].running_mean, expected_mean, atol=1e-5)
    assert tower.training
    plain = MaskVLForPreTraining(MaskVLConfig.from_preset("maskvlm-tiny", text_config={"vocab_size": 50}))
    assert batch_norm_layers(plain) == [] and recompute_batch_norm_statistics(plain.maskvl.vision_model, pixels) == 0


def test_a_run_saves_the_re_estimated_statistics(tmp_path):
    """After training, the saved BatchNorm statistics are those of the final weights over the precise-BN images,
    not the running averages; --precise_bn_examples 0 keeps the running averages."""
    stem = '{"vision_config": {"patch_embedder": "conv_stem", "patch_size": 16, "conv_stem_channels": [8, 8, 16, 16], "conv_stem_norm": "batch"}}'
    extra = ["--image_size", "64", "--config_overrides", stem, "--learning_rate", "5e-2"]
    saved = {}
    for examples in (24, 0):
        out = tmp_path / f"bn{examples}"
        trainer = pretrain.main(tiny_args(out, *extra, "--precise_bn_examples", str(examples), steps=4))
        model = trainer.model
        saved[examples] = MaskVLForPreTraining.from_pretrained(out).maskvl.vision_model
        if examples:
            pixels = trainer.precise_bn_pixels
            assert pixels is not None and len(pixels) == 24
            reference = model.maskvl.vision_model
            expected_mean, expected_var = first_bn_input_moments(reference, pixels)
            layer = batch_norm_layers(saved[examples])[0]
            assert torch.allclose(layer.running_mean, expected_mean, atol=1e-4)
            assert torch.allclose(layer.running_var, expected_var, rtol=1e-3)
        else:
            assert trainer.precise_bn_pixels is None
    later = [batch_norm_layers(saved[n])[-1].running_mean for n in (24, 0)]
    assert not torch.allclose(*later)  # the running averages are not the re-estimated statistics


def test_bad_precise_bn_examples_is_named():
    with pytest.raises(ValueError, match="precise_bn_examples"):
        parse_args(argv=["--precise_bn_examples", "-1"])
