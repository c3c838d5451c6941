"""Nested pre-training fractions, seed summaries and bootstrap intervals on hand-made cases."""
import math

import numpy as np
import pytest
from maskvl_train.statistics import holds, nested_subset_indices, paired_bootstrap_interval, seed_summary


def test_fractions_are_nested_and_sized():
    subsets = nested_subset_indices(1000, [0.1, 0.25, 0.5, 1.0], seed=3)
    sizes = {f: len(v) for f, v in subsets.items()}
    assert sizes == {0.1: 100, 0.25: 250, 0.5: 500, 1.0: 1000}
    assert set(subsets[0.1]) < set(subsets[0.25]) < set(subsets[0.5]) < set(subsets[1.0])
    assert subsets[1.0] == list(range(1000))


def test_fractions_depend_on_the_seed_only():
    a = nested_subset_indices(200, [0.1, 0.5], seed=0)
    b = nested_subset_indices(200, [0.5, 0.1], seed=0)  # order of the request does not matter
    c = nested_subset_indices(200, [0.1, 0.5], seed=1)
    assert a[0.1] == b[0.1] and a[0.5] == b[0.5]
    assert a[0.1] != c[0.1]
    assert set(c[0.1]) < set(c[0.5])


def test_tiny_fraction_keeps_one_example():
    assert len(nested_subset_indices(5, [0.01], seed=0)[0.01]) == 1


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_bad_fraction_is_named(bad):
    with pytest.raises(ValueError, match="fractions must be in"):
        nested_subset_indices(10, [0.5, bad], seed=0)


def test_seed_summary_matches_hand_computation():
    s = seed_summary([1.0, 2.0, 3.0])
    assert s["mean"] == pytest.approx(2.0)
    assert s["std"] == pytest.approx(1.0)  # sample std
    half = 4.303 * 1.0 / math.sqrt(3)  # t(0.975, df=2)
    assert s["ci95"] == pytest.approx([2.0 - half, 2.0 + half])
    assert s["n"] == 3


def test_seed_summary_single_and_missing_values():
    assert seed_summary([0.5])["ci95"] is None and seed_summary([0.5])["mean"] == 0.5
    s = seed_summary([1.0, float("nan"), 3.0])
    assert s["n"] == 2 and s["n_missing"] == 1 and s["mean"] == pytest.approx(2.0)
    assert seed_summary([])["mean"] is None


def test_bootstrap_interval_covers_a_clear_positive_mean():
    rng = np.random.default_rng(0)
    diffs = rng.normal(0.5, 1.0, size=2000)
    out = paired_bootstrap_interval(diffs, seed=1)
    assert out["n"] == 2000
    low, high = out["ci95"]
    assert low < out["mean"] < high
    assert 0.4 < low and high < 0.6  # half-width about 1.96 / sqrt(2000) = 0.044
    assert holds(out["ci95"], "positive") and not holds(out["ci95"], "negative")


def test_bootstrap_interval_of_noise_straddles_zero():
    diffs = np.array([1.0, -1.0] * 200)
    out = paired_bootstrap_interval(diffs, seed=0)
    assert out["mean"] == pytest.approx(0.0)
    assert out["ci95"][0] < 0 < out["ci95"][1]
    assert not holds(out["ci95"], "positive") and not holds(out["ci95"], "negative")


def test_bootstrap_is_seeded_and_drops_non_finite():
    diffs = [0.1, 0.2, float("nan"), 0.3, float("inf")]
    assert paired_bootstrap_interval(diffs, seed=5) == paired_bootstrap_interval(diffs, seed=5)
    assert paired_bootstrap_interval(diffs, seed=5)["n"] == 3
    assert paired_bootstrap_interval([], seed=0)["ci95"] is None


def test_constant_differences_give_a_point_interval():
    out = paired_bootstrap_interval([0.25] * 50)
    assert out["ci95"] == pytest.approx([0.25, 0.25])
    assert holds([0.25, 0.25]) and not holds(None)
    with pytest.raises(ValueError, match="direction"):
        holds([0, 1], "up")
