"""Joint masking policies (MaskVLM, MLIM) and ITM negatives: mode frequencies, rates, swaps."""

import pytest
import torch

from maskvl_processing import IMAGE_MASKING_POLICIES, JOINT_MASKING_POLICIES, TEXT_MASKING_POLICIES, PatchGrid
from maskvl_processing.itm_negatives import ImageSwapNegatives
from maskvl_processing.text_masking import TextBatch

B = 4000


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def text_batch(rows: int, length: int = 30) -> TextBatch:
    """Rows of [CLS] w0 .. w27 [SEP]: every inner token its own word."""
    ids = torch.randint(1000, 2000, (rows, length), generator=gen(99))
    word_ids = torch.arange(length).expand(rows, length).clone() - 1
    word_ids[:, -1] = -1
    return TextBatch(ids, word_ids, mask_token_id=103, vocab_size=30522)


def test_registry_and_repr():
    assert {"maskvlm", "mlim"} <= set(JOINT_MASKING_POLICIES)
    assert "text_rate=0.3" in repr(JOINT_MASKING_POLICIES["maskvlm"]())
    assert "heavy_image" in repr(JOINT_MASKING_POLICIES["mlim"]())


@pytest.mark.parametrize("text_prob", [0.5, 0.3])
def test_maskvlm_one_modality_per_pair(text_prob):
    plan = JOINT_MASKING_POLICIES["maskvlm"](text_prob=text_prob)(B, gen(1))
    text_rows = plan.text_rate > 0
    image_rows = plan.image_ratio > 0
    assert not (text_rows & image_rows).any(), "both modalities masked in 'one' mode"
    assert (text_rows | image_rows).all()
    assert abs(text_rows.float().mean().item() - text_prob) < 0.025
    assert torch.allclose(plan.text_rate[text_rows], torch.tensor(0.3))  # paper default, not the text policy's 0.15
    assert torch.allclose(plan.image_ratio[image_rows], torch.tensor(0.6))
    assert torch.equal(text_rows, plan.mode == plan.mode_names.index("text"))


def test_maskvlm_both_option_and_given_rates():
    policy = JOINT_MASKING_POLICIES["maskvlm"](text_rate=0.15, image_ratio=0.5, both_prob=0.4)
    plan = policy(B, gen(2))
    both = (plan.text_rate > 0) & (plan.image_ratio > 0)
    assert abs(both.float().mean().item() - 0.4) < 0.025
    assert torch.allclose(plan.text_rate[plan.text_rate > 0], torch.tensor(0.15))
    assert torch.allclose(plan.image_ratio[plan.image_ratio > 0], torch.tensor(0.5))


def test_mlim_modes_at_configured_frequencies_and_rates():
    modes = {"heavy_image": (0.1, 0.8), "heavy_text": (0.5, 0.1), "light_both": (0.15, 0.25)}
    policy = JOINT_MASKING_POLICIES["mlim"](modes=modes, mode_probs=[0.5, 0.3, 0.2])
    plan = policy(B, gen(3))
    freq = torch.bincount(plan.mode, minlength=3).float() / B
    assert (freq - torch.tensor([0.5, 0.3, 0.2])).abs().max() < 0.025, freq
    # the plan drives the text and image policies: check the realised rates per mode
    text = text_batch(B)
    selection = TEXT_MASKING_POLICIES["random"]().select(text, gen(4), rate=plan.text_rate)
    grid = PatchGrid.from_image_size(128, 16)
    image = IMAGE_MASKING_POLICIES["random"]()(B, grid, gen(5), ratio=plan.image_ratio)
    for index, (name, (text_rate, image_ratio)) in enumerate(modes.items()):
        rows = plan.mode == index
        realised_text = selection[rows][:, 1:-1].float().mean().item()
        assert abs(realised_text - text_rate) < 0.02, (name, realised_text)
        assert (image[rows].sum(dim=1) == round(image_ratio * 64)).all(), name


def test_mlim_default_modes_are_heavy_and_light():
    policy = JOINT_MASKING_POLICIES["mlim"]()
    table = policy.modes
    assert table["heavy_image"][1] > table["light_both"][1] and table["heavy_text"][0] > table["light_both"][0]
    plan = policy(B, gen(6))
    assert (torch.bincount(plan.mode, minlength=3).float() / B - 1 / 3).abs().max() < 0.03
    with pytest.raises(ValueError):
        JOINT_MASKING_POLICIES["mlim"](mode_probs=[0.5, 0.5, 0.5])


def test_joint_determinism():
    for name in JOINT_MASKING_POLICIES:
        a = JOINT_MASKING_POLICIES[name]()(256, gen(7))
        b = JOINT_MASKING_POLICIES[name]()(256, gen(7))
        assert torch.equal(a.mode, b.mode) and torch.equal(a.text_rate, b.text_rate), name


def test_the_collator_builds_its_joint_policy_with_concrete_rates():
    from maskvl_processing import MaskVLDataCollator, RandomTokenMasking, train_wordpiece_tokenizer

    tokenizer = train_wordpiece_tokenizer(["a red circle", "a blue square"] * 10, vocab_size=60)

    def joint(**kwargs):
        return MaskVLDataCollator(tokenizer, image_size=64, patch_size=8, **kwargs).joint_policy

    assert (joint().text_rate, joint().image_ratio) == (0.15, 0.0)  # random text, no image masking
    given = joint(text_policy_kwargs={"rate": 0.5}, image_policy="block", image_policy_kwargs={"ratio": 0.4})
    assert (given.text_rate, given.image_ratio) == (0.5, 0.4)  # independent by name: the policies' rates
    assert joint(text_policy=RandomTokenMasking(rate=0.5)).text_rate == 0.5
    assert joint(text_policy_kwargs={"rate": 0.5}, joint_policy_kwargs={"text_rate": 0.25}).text_rate == 0.25
    maskvlm = joint(text_policy_kwargs={"rate": 0.5}, image_policy="block", joint_policy="maskvlm")
    assert (maskvlm.text_rate, maskvlm.image_ratio) == (0.3, 0.6)  # its own rates
    with pytest.raises(ValueError, match="text_rate"):
        JOINT_MASKING_POLICIES["maskvlm"](text_rate=None)


@pytest.mark.parametrize("prob", [0.5, 0.2])
def test_itm_swaps_are_never_true_pairs_and_rate_is_p(prob):
    negatives = ImageSwapNegatives(prob)
    total = swapped = 0
    generator = gen(8)
    for _ in range(300):
        index, labels = negatives(32, generator)
        assert labels.dtype == torch.long and labels.shape == (32,)
        assert torch.equal(labels == 1, index == torch.arange(32)), "label disagrees with the swap"
        assert sorted(index.tolist()) == list(range(32)), "images lost or duplicated"
        total += 32
        swapped += int((labels == 0).sum())
    assert abs(swapped / total - prob) < 0.02, swapped / total


def test_itm_group_ids_relabel_same_image():
    negatives = ImageSwapNegatives(1.0)
    groups = ["img0", "img0", "img1", "img1"]  # two captions per image
    relabelled = 0
    for seed in range(50):
        index, labels = negatives(4, gen(seed), group_ids=groups)
        for row in range(4):
            same_image = groups[index[row]] == groups[row]
            assert labels[row] == int(same_image)
            relabelled += int(same_image and index[row] != row)
    assert relabelled > 0 and negatives.stats["same_group"] == relabelled


def test_itm_small_batches():
    index, labels = ImageSwapNegatives(1.0)(1, gen(0))
    assert labels.tolist() == [1] and index.tolist() == [0]
    for seed in range(20):  # a lone chosen row gets a partner: never a 1-row "swap"
        index, labels = ImageSwapNegatives(0.2)(3, gen(seed))
        assert int((labels == 0).sum()) != 1


def test_in_batch_negatives_keep_every_pair_and_never_pick_the_own_image():
    from maskvl_processing.itm_negatives import InBatchNegatives

    negatives = InBatchNegatives()
    for seed in range(20):
        index = negatives(8, torch.Generator().manual_seed(seed))
        assert index.shape == (8,) and torch.all(index != torch.arange(8)) and torch.all(index >= 0)
    same = InBatchNegatives()(4, torch.Generator().manual_seed(0), group_ids=["a", "a", "a", "a"])
    assert torch.all(same == -1)  # one image shared by every caption: no row has a negative
    assert InBatchNegatives()(1, torch.Generator().manual_seed(0)).tolist() == [-1]
    a = InBatchNegatives()(16, torch.Generator().manual_seed(3))
    b = InBatchNegatives()(16, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_in_batch_negatives_through_the_collator_and_the_model():
    from maskvl_processing import MaskVLDataCollator, train_wordpiece_tokenizer

    from modeling_maskvl import MaskVLConfig, MaskVLForPreTraining

    tokenizer = train_wordpiece_tokenizer(["a red circle", "a blue square", "a green star"] * 10, vocab_size=60)
    collator = MaskVLDataCollator(tokenizer, image_size=64, patch_size=8, text_policy="random",
                                  text_policy_kwargs={"rate": 0.5}, itm_negatives="in_batch", seed=0)
    features = [{"input_ids": tokenizer(t)["input_ids"], "pixel_values": torch.rand(3, 64, 64)}
                for t in ["a red circle", "a blue square", "a green star", "a red star"]]
    batch = collator(features)
    assert "itm_labels" not in batch and batch["itm_negative_index"].shape == (4,)
    assert torch.equal(batch["pixel_values"], torch.stack([f["pixel_values"] for f in features]))  # no swap
    config = MaskVLConfig.from_preset("maskvlm-tiny", text_config={"vocab_size": len(tokenizer)})
    model = MaskVLForPreTraining(config)
    out = model(**batch)
    assert out.itm_logits.shape == (8, 2) and out.itm_labels.tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert out.loss_breakdown.itm is not None and out.loss_breakdown.itc is not None
    assert len(out.itc_labels) == 4  # every pair stays a true pair for ITC
    with pytest.raises(ValueError, match="not both"):
        model(**batch, itm_labels=torch.ones(4, dtype=torch.long))
