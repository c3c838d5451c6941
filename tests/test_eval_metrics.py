"""Metric functions of maskvl_train.metrics on hand-made cases with known answers."""

import math

import pytest
import torch
from maskvl_train.metrics import (
    add_sums,
    image_necessity_deltas,
    masked_token_sums,
    mean_and_spread,
    model_index_results,
    prompt_precision_at_k,
    rerank_top_k,
    retrieval_recall_at_k,
    summarise_masked_tokens,
    topk_accuracy,
)


def test_perfect_predictor_has_acc_at_1_and_5_equal_to_one_and_near_zero_loss():
    labels = torch.tensor([3, 0, 7, -100, 2])
    logits = torch.full((5, 10), -20.0)
    logits[torch.arange(5), labels.clamp(min=0)] = 20.0
    summary = summarise_masked_tokens(masked_token_sums(logits, labels))
    assert summary["num_tokens"] == 4
    assert summary["acc@1"] == 1.0 and summary["acc@5"] == 1.0
    assert summary["loss"] < 1e-6 and summary["exp_loss"] == pytest.approx(1.0)
    assert topk_accuracy(logits, labels, 5) == 1.0


def test_uniform_logits_give_loss_log_v_and_acc_at_k_by_rank():
    vocab = 8
    summary = summarise_masked_tokens(masked_token_sums(torch.zeros(6, vocab), torch.arange(6)))
    assert summary["loss"] == pytest.approx(math.log(vocab))
    assert summary["exp_loss"] == pytest.approx(vocab)
    # the target ranked 3rd: in the top 5, not the top 1
    logits = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0]])
    assert topk_accuracy(logits, torch.tensor([2]), 1) == 0.0
    assert topk_accuracy(logits, torch.tensor([2]), 5) == 1.0
    assert topk_accuracy(logits, torch.tensor([6]), 5) == 0.0
    assert math.isnan(topk_accuracy(logits, torch.tensor([-100]), 5))


def test_sums_add_over_batches_like_one_batch():
    generator = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(10, 7, generator=generator), torch.randint(7, (10,), generator=generator)
    whole = summarise_masked_tokens(masked_token_sums(logits, labels))
    split = summarise_masked_tokens(add_sums(masked_token_sums(logits[:4], labels[:4]),
                                             masked_token_sums(logits[4:], labels[4:])))
    assert whole == pytest.approx(split)


def test_delta_is_zero_for_identical_scores_and_positive_when_the_image_helped():
    with_image = {"num_tokens": 3, "loss": 1.0, "exp_loss": math.e, "acc@5": 0.9}
    assert image_necessity_deltas(with_image, dict(with_image)) == {"loss": 0.0, "exp_loss": 0.0, "acc@5": 0.0}
    without = {"num_tokens": 3, "loss": 2.5, "exp_loss": math.exp(2.5), "acc@5": 0.6}
    delta = image_necessity_deltas(with_image, without)
    assert delta["loss"] == pytest.approx(1.5) and delta["acc@5"] == pytest.approx(-0.3)
    with pytest.raises(ValueError, match="same tokens"):
        image_necessity_deltas(with_image, {**without, "num_tokens": 2})


def test_prompt_precision_counts_gold_objects_in_the_top_k():
    predictions = [["circle", "red", "star", "the", "square"], ["a", "b", "c", "d", "e"], ["x"] * 5]
    gold = [["circle", "square"], ["c"], []]  # the third image has no gold object: left out
    out = prompt_precision_at_k(predictions, gold, ks=(1, 5))
    assert out["num_images"] == 2
    assert out["precision@1"] == pytest.approx((1 + 0) / 2)
    assert out["precision@5"] == pytest.approx((2 / 5 + 1 / 5) / 2)
    with pytest.raises(ValueError, match="image 0"):
        prompt_precision_at_k([["circle"]], [["circle"]], ks=(1, 5))


def test_recall_at_k_and_itm_reranking():
    similarity = torch.tensor([[0.9, 0.8, 0.1], [0.2, 0.3, 0.7], [0.5, 0.6, 0.4]])
    positives = torch.eye(3, dtype=torch.bool)  # query i matches candidate i
    ranking = similarity.argsort(dim=1, descending=True)
    recall = retrieval_recall_at_k(ranking, positives, ks=(1, 2, 3))
    # the true candidate is ranked 1st (query 0), 2nd (query 1), 3rd (query 2)
    assert recall == pytest.approx({"R@1": 1 / 3, "R@2": 2 / 3, "R@3": 1.0})
    # ITM scores of each query's top-2 (in ITC order): query 1's top-2 are (2, 1) and ITM prefers 1;
    # query 2's true candidate is outside its top-2, so re-ranking cannot reach it
    itm = torch.tensor([[0.9, 0.1], [0.4, 0.5], [0.2, 0.3]])
    reranked = rerank_top_k(similarity, 2, itm)
    assert reranked.tolist() == [[0, 1, 2], [1, 2, 0], [0, 1, 2]]
    assert retrieval_recall_at_k(reranked, positives, ks=(1,))["R@1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="no positive"):
        retrieval_recall_at_k(ranking, torch.zeros(3, 3, dtype=torch.bool))


def test_mean_and_spread_and_model_index_entry():
    stats = mean_and_spread([0.5, 0.7, 0.9])
    assert stats["mean"] == pytest.approx(0.7) and stats["std"] == pytest.approx(0.2) and stats["n"] == 3
    assert mean_and_spread([0.4])["std"] == 0.0
    entry = model_index_results("visual-question-answering", "VQA", "easy-VQA", "easy-vqa",
                                [("accuracy", 0.123456, "Test accuracy")], "test")
    assert entry["task"]["type"] == "visual-question-answering"
    assert entry["dataset"] == {"name": "easy-VQA", "type": "easy-vqa", "split": "test"}
    assert entry["metrics"] == [{"type": "accuracy", "value": 0.1235, "name": "Test accuracy"}]
