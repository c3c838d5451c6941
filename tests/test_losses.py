"""Loss functions on hand-made cases with known answers."""

import math

import pytest
import torch

from modeling_maskvl.losses import (contrastive_loss, itm_loss, masked_image_loss, masked_lm_loss, mlm_accuracy,
                                    vqa_loss, weighted_total)


def test_masked_lm_loss_ignores_unscored_positions():
    logits = torch.zeros(2, 3, 4)
    logits[0, 1, 2] = 10.0
    labels = torch.full((2, 3), -100)
    labels[0, 1] = 2
    expected = -torch.log_softmax(torch.tensor([0.0, 0, 10, 0]), -1)[2]
    torch.testing.assert_close(masked_lm_loss(logits, labels), expected)
    labels[1, 0] = 1  # uniform logits -> log(4)
    torch.testing.assert_close(masked_lm_loss(logits, labels), (expected + math.log(4)) / 2)


def test_masked_lm_loss_with_nothing_masked_is_zero_not_nan_and_keeps_the_graph():
    logits = torch.randn(2, 3, 4, requires_grad=True)
    loss = masked_lm_loss(logits, torch.full((2, 3), -100))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None


def test_mlm_accuracy_top1_and_top5():
    logits = torch.tensor([[0.0, 1, 2, 3, 4, 5, 6], [6.0, 5, 4, 3, 2, 1, 0]])
    labels = torch.tensor([6, 1])
    assert mlm_accuracy(logits, labels).item() == 0.5
    assert mlm_accuracy(logits, labels, top_k=2).item() == 1.0
    assert math.isnan(mlm_accuracy(logits, torch.tensor([-100, -100])).item())


def test_masked_image_loss_l1_and_l2():
    pred, target = torch.zeros(2, 4), torch.tensor([[1.0, -1, 1, -1], [2.0, 2, 2, 2]])
    assert masked_image_loss(pred, target, "l1").item() == pytest.approx((4 + 8) / 8)
    assert masked_image_loss(pred, target, "l2").item() == pytest.approx((4 + 16) / 8)
    assert masked_image_loss(torch.zeros(0, 4), torch.zeros(0, 4)).item() == 0.0
    with pytest.raises(ValueError, match="l1"):
        masked_image_loss(pred, target, "huber")


def test_contrastive_loss_is_low_for_aligned_pairs_and_log_n_for_uniform():
    labels = torch.arange(3)
    assert contrastive_loss(torch.zeros(3, 3), torch.zeros(3, 3), labels).item() == pytest.approx(math.log(3))
    sharp = torch.eye(3) * 50
    assert contrastive_loss(sharp, sharp, labels).item() < 1e-6
    # the labels pick the true partner's column (gathered batches put it off the diagonal)
    shifted = torch.roll(sharp, 1, dims=1)
    assert contrastive_loss(shifted, shifted, (labels + 1) % 3).item() < 1e-6


def test_itm_and_vqa_losses():
    logits = torch.tensor([[10.0, -10.0], [-10.0, 10.0]])
    assert itm_loss(logits, torch.tensor([0, 1])).item() < 1e-6
    assert itm_loss(logits, torch.tensor([1, 0])).item() > 10
    answers = torch.tensor([[0.0, 5.0, -5.0]])
    assert vqa_loss(answers, torch.tensor([1])).item() < 0.01
    soft = torch.tensor([[0.0, 1.0, 0.0]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(answers, soft) * 3
    torch.testing.assert_close(vqa_loss(answers, soft), expected)
    with pytest.raises(ValueError, match="shape"):
        vqa_loss(answers, torch.zeros(1, 4))


def test_weighted_total_skips_absent_parts():
    parts = {"mlm": torch.tensor(2.0), "mim": None, "itc": torch.tensor(1.0)}
    assert weighted_total(parts, {"mlm": 0.5, "mim": 9.0, "itc": 3.0}).item() == 4.0
    assert weighted_total({"mlm": None}, {"mlm": 1.0}) is None


def test_model_and_data_sides_agree_on_the_ignore_index():
    """modeling_maskvl (Hub remote code, imports no processing code) and maskvl_processing each define it once."""
    from maskvl_processing.masking_primitives import IGNORE_INDEX as data_side

    from modeling_maskvl.losses import IGNORE_INDEX as model_side

    assert model_side == data_side == torch.nn.CrossEntropyLoss().ignore_index
