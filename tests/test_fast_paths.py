"""Less work per step (issue 16) in `MaskVLForPreTraining`: visible-only MIM (`mim_encoder="visible"`) and FLIP-style
patch dropping (`patch_drop_ratio`). Each path is checked against a reference computed another way, and the
paper's mask-token path stays available."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from modeling_maskvl import MaskVLConfig, MaskVLForMaskedLM, MaskVLForPreTraining
from modeling_maskvl.modeling_maskvl import patchify
from modeling_maskvl.visible_patches import MaskTokenScatter, patch_keep_indices, visible_indices, vit_encode_subset

NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


def config(**overrides) -> MaskVLConfig:
    return MaskVLConfig.from_preset("maskvlm-tiny", text_config=NO_DROPOUT, vision_config={"image_size": 32},
                                    **overrides)


def model_pair(**overrides):
    """A fast-path model and a paper-path model with the same weights (where both have them)."""
    torch.manual_seed(0)
    fast = MaskVLForPreTraining(config(**overrides))
    paper = MaskVLForPreTraining(config())
    missing, unexpected = paper.load_state_dict(fast.state_dict(), strict=False)
    assert all(k.startswith("mim_mask_tokens.") for k in unexpected)
    assert all(k == "maskvl.vision_model.embeddings.mask_token" for k in missing)
    return fast, paper


def batch(seed=0, size=6, masked_rows=(2, 3, 4, 5)) -> dict:
    """MLM rows 0-1; MIM rows with different numbers of masked patches (row 5 all but two); row 4 a negative."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 1000, (size, 10), generator=g)
    labels = torch.full_like(input_ids, -100)
    labels[:2, 2:5] = input_ids[:2, 2:5]
    input_ids[:2, 2:5] = 4
    bool_masked_pos = torch.zeros(size, 16, dtype=torch.bool)
    for row, count in zip(masked_rows, (6, 9, 10, 14)):
        bool_masked_pos[row, torch.randperm(16, generator=g)[:count]] = True
    itm_labels = torch.ones(size, dtype=torch.long)
    itm_labels[4] = 0
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels,
            "pixel_values": torch.randn(size, 3, 32, 32, generator=g), "bool_masked_pos": bool_masked_pos,
            "itm_labels": itm_labels, "patch_drop_noise": torch.rand(size, 16, generator=g)}


# ---- configuration ------------------------------------------------------------------------------------------
def test_defaults_are_the_papers_path_and_the_switches_round_trip(tmp_path):
    default = MaskVLConfig.from_preset("maskvlm-tiny")
    assert default.mim_encoder == "mask_token" and default.patch_drop_ratio == 0.0
    fast = config(mim_encoder="visible", patch_drop_ratio=0.5)
    fast.save_pretrained(tmp_path)
    loaded = MaskVLConfig.from_pretrained(tmp_path)
    assert (loaded.mim_encoder, loaded.patch_drop_ratio) == ("visible", 0.5)


@pytest.mark.parametrize("overrides, message", [
    ({"mim_encoder": "mae"}, "mim_encoder='mae' is not one of"),
    ({"mim_encoder": "visible", "masked_modeling_passes": "joint"}, "needs masked_modeling_passes='separate'"),
    ({"mim_encoder": "visible", "cross_modal_config": {"fusion_type": "co_attention"}}, "fusion_type='cross'"),
    ({"mim_encoder": "visible", "cross_modal_config": {"num_decoder_layers": 0}}, "num_decoder_layers >= 1"),
    ({"patch_drop_ratio": 1.0}, r"patch_drop_ratio must be in \[0, 1\); got 1.0"),
    ({"patch_drop_ratio": -0.1}, "patch_drop_ratio must be in"),
    ({"patch_drop_ratio": 0.5, "masked_modeling_passes": "joint"}, "patch_drop_ratio > 0 needs"),
])
def test_config_refuses_combinations_that_cannot_work(overrides, message):
    with pytest.raises(ValueError, match=message):
        config(**overrides)


def test_the_pretraining_collator_draws_noise_only_when_patches_are_dropped():
    from maskvl_train.arguments import MaskingArguments

    assert MaskingArguments().collator_kwargs(config())["patch_drop_noise"] is False
    assert MaskingArguments().collator_kwargs(config(patch_drop_ratio=0.5))["patch_drop_noise"] is True


# ---- visible-only MIM -------------------------------------------------------------------------------------------
def test_visible_model_builds_what_it_uses_and_every_parameter_gets_a_gradient():
    model = MaskVLForPreTraining(config(mim_encoder="visible")).train()
    assert model.maskvl.vision_model.embeddings.mask_token is None
    assert isinstance(model.mim_mask_tokens, MaskTokenScatter)
    out = model(**{k: v for k, v in batch().items() if k != "patch_drop_noise"})
    assert all(getattr(out.loss_breakdown, part) is not None for part in ("mlm", "mim", "itc", "itm"))
    out.loss.backward()
    unused = [name for name, p in model.named_parameters() if p.grad is None]
    assert not unused, unused


def reference_mim(model, inputs) -> torch.Tensor:
    """Visible-only MIM logits, one row at a time, with no padding anywhere (the batched path pads rows)."""
    base, logits = model.maskvl, []
    positive = inputs["itm_labels"] == 1
    for row in range(inputs["input_ids"].shape[0]):
        masked = inputs["bool_masked_pos"][row:row + 1]
        if not (positive[row] and masked.any()):
            continue
        text = base.encode_text(torch.where(inputs["labels"] != -100, inputs["labels"], inputs["input_ids"])[row:row + 1])
        ids = (~masked[0]).nonzero().T  # (1, V): this row's visible patches, no padding
        image, key_mask = vit_encode_subset(base.vision_model, inputs["pixel_values"][row:row + 1], ids)
        assert key_mask is None
        fused = base.fuse(text, inputs["attention_mask"][row:row + 1], image, return_text=False).image_last_hidden_state
        decoder_in = model.mim_mask_tokens(fused, ids)
        context = base.text_to_fusion(text)
        pixels = model.mim_head(decoder_in, context, None)[:, 1:]
        logits.append(pixels[masked])
    return torch.cat(logits)


def test_visible_mim_equals_each_row_encoded_alone():
    model = MaskVLForPreTraining(config(mim_encoder="visible")).eval()
    inputs = batch()
    with torch.no_grad():
        out = model(**inputs)
        expected = reference_mim(model, inputs)
    torch.testing.assert_close(out.mim_logits, expected, rtol=1e-4, atol=1e-5)
    targets = patchify(inputs["pixel_values"], 8)[inputs["bool_masked_pos"] & (inputs["itm_labels"] == 1)[:, None]]
    torch.testing.assert_close(out.mim_labels, targets)


def test_visible_mim_changes_only_the_mim_pass_and_costs_fewer_flops():
    fast, paper = model_pair(mim_encoder="visible")
    inputs = {k: v for k, v in batch().items() if k != "patch_drop_noise"}
    counts = {}
    for name, model in (("fast", fast), ("paper", paper)):
        model.eval()
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            counts[name] = model(**inputs)
        counts[name + "_flops"] = counter.get_total_flops()
    for field in ("mlm_logits", "itm_logits", "logits_per_text"):  # the other passes see the same inputs
        torch.testing.assert_close(counts["fast"][field], counts["paper"][field])
    assert counts["fast"].mim_logits.shape == counts["paper"].mim_logits.shape
    assert not torch.allclose(counts["fast"].mim_logits, counts["paper"].mim_logits)
    assert counts["fast_flops"] < 0.95 * counts["paper_flops"]


def test_visible_checkpoint_loads_for_pretraining_and_for_fill_mask(tmp_path):
    torch.manual_seed(0)
    model = MaskVLForPreTraining(config(mim_encoder="visible")).eval()
    model.save_pretrained(tmp_path)
    loaded = MaskVLForPreTraining.from_pretrained(tmp_path).eval()
    inputs = {k: v for k, v in batch().items() if k != "patch_drop_noise"}
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).mim_logits, model(**inputs).mim_logits)
    torch.testing.assert_close(loaded.mim_mask_tokens.position_embeddings, model.mim_mask_tokens.position_embeddings)
    fill_mask = MaskVLForMaskedLM.from_pretrained(tmp_path)
    assert not hasattr(fill_mask, "mim_mask_tokens")


# ---- FLIP-style patch dropping ------------------------------------------------------------------------------
def test_patch_dropping_needs_noise_in_training_and_names_it():
    model = MaskVLForPreTraining(config(patch_drop_ratio=0.5)).train()
    inputs = batch()
    noise = inputs.pop("patch_drop_noise")
    with pytest.raises(ValueError, match=r"patch_drop_noise.*\(6, 16\).*MaskVLDataCollator\(patch_drop_noise=True\)"):
        model(**inputs)
    with pytest.raises(ValueError, match=r"`patch_drop_noise` must be .*\(6, 16\); got \(6, 8\)"):
        model(**inputs, patch_drop_noise=noise[:, :8])


def test_patch_dropping_is_off_in_evaluation():
    fast, paper = model_pair(patch_drop_ratio=0.5)
    inputs = batch()
    with torch.no_grad():
        dropped, full = fast.eval()(**inputs), paper.eval()(**inputs)
    for field in ("loss", "mlm_logits", "mim_logits", "itm_logits", "logits_per_text"):
        torch.testing.assert_close(getattr(dropped, field), getattr(full, field))


def test_patch_dropping_keeps_the_noise_chosen_patches_for_itc_itm_only():
    fast, paper = model_pair(patch_drop_ratio=0.5)
    inputs = batch()
    with torch.no_grad():
        dropped, full = fast.train()(**inputs), paper.train()(**inputs)
        keep = patch_keep_indices(inputs["patch_drop_noise"], 8)  # 16 patches, half kept
        states, _ = vit_encode_subset(fast.maskvl.vision_model, inputs["pixel_values"], keep)
        _, image_embeds = fast.maskvl.contrastive_embeddings(
            fast.maskvl.encode_text(torch.where(inputs["labels"] != -100, inputs["labels"], inputs["input_ids"])),
            states)
    torch.testing.assert_close(dropped.image_embeds, image_embeds)  # ITC: the kept patches
    assert not torch.allclose(dropped.itm_logits, full.itm_logits)  # ITM: fewer image tokens
    torch.testing.assert_close(dropped.mlm_logits, full.mlm_logits)  # MLM: still the whole image
    torch.testing.assert_close(dropped.mim_logits, full.mim_logits)  # MIM: its own masked pass


def test_fast_paths_train_together_without_unused_parameters():
    model = MaskVLForPreTraining(config(mim_encoder="visible", patch_drop_ratio=0.5)).train()
    out = model(**batch(seed=1))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert not [name for name, p in model.named_parameters() if p.grad is None]


@pytest.mark.slow
def test_pretraining_script_runs_both_fast_paths(tmp_path):
    import json

    from maskvl_train.pretraining import main

    overrides = json.dumps({"mim_encoder": "visible", "patch_drop_ratio": 0.5})
    trainer = main(["--output_dir", str(tmp_path), "--image_size", "32", "--synthetic_num_examples", "48",
                    "--eval_size", "8", "--baseline_examples", "16", "--max_steps", "3",
                    "--per_device_train_batch_size", "8", "--tokenizer_vocab_size", "200", "--eval_strategy", "no",
                    "--save_strategy", "no", "--disable_tqdm", "true", "--config_overrides", overrides])
    assert trainer.state.global_step == 3
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["mim_encoder"], saved["patch_drop_ratio"]) == ("visible", 0.5)
    metrics = json.loads((tmp_path / "eval_results.json").read_text())
    assert metrics["eval_mim_loss"] > 0 and metrics["eval_itm_loss"] > 0 and metrics["eval_itc_loss"] > 0
    assert (tmp_path / "visible_patches.py").is_file()  # copied with the remote code
