"""Statistics for the strategy comparison: nested data fractions, seed summaries, bootstrap intervals.

* :func:`nested_subset_indices` -- the first ``round(f * n)`` entries of ONE seeded permutation, so the 10%
  subset is inside the 25% subset, which is inside the 50% one (Bitton et al. pre-train on 10/20/50/100% of
  the same pairs).
* :func:`seed_summary` -- mean, sample standard deviation and a Student-t 95% interval of the mean over seeds.
* :func:`paired_bootstrap_interval` -- a percentile bootstrap interval of a mean over paired items (e.g. the
  per-token loss without the image minus with it, over masked tokens).
* :func:`holds` -- a claim "holds" only when its interval excludes zero in the stated direction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["nested_subset_indices", "seed_summary", "paired_bootstrap_interval", "holds", "T_975"]

# Two-sided 95% Student-t quantiles by degrees of freedom (1..30); above 30 the normal 1.96 is close enough.
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def nested_subset_indices(num_examples: int, fractions: Sequence[float], seed: int) -> dict[float, list[int]]:
    """{fraction: sorted indices}: prefixes of one permutation of ``range(num_examples)`` drawn with ``seed``.

    Every fraction must be in (0, 1]; each subset keeps at least one example. Same seed => same subsets, and a
    smaller fraction's subset is always contained in a larger one's.
    """
    if num_examples < 1:
        raise ValueError(f"need at least one example to take fractions of, got {num_examples}")
    bad = [f for f in fractions if not (isinstance(f, (int, float)) and 0 < f <= 1) or math.isnan(f)]
    if bad:
        raise ValueError(f"pre-training fractions must be in (0, 1], got {bad}")
    order = np.random.default_rng(seed).permutation(num_examples)
    return {f: sorted(int(i) for i in order[: max(1, round(f * num_examples))]) for f in fractions}


def seed_summary(values: Sequence[float]) -> dict:
    """{"mean", "std", "ci95": [low, high], "n", "values"} over seeds (std and interval are None for one seed;
    NaN values are dropped and counted in "n_missing")."""
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(finite)
    out = {"n": n, "n_missing": len(values) - n, "values": [float(v) if v is not None else None for v in values]}
    if n == 0:
        return {**out, "mean": None, "std": None, "ci95": None}
    mean = sum(finite) / n
    if n == 1:
        return {**out, "mean": mean, "std": None, "ci95": None}
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1))
    half = (T_975[n - 2] if n - 1 <= len(T_975) else 1.96) * std / math.sqrt(n)
    return {**out, "mean": mean, "std": std, "ci95": [mean - half, mean + half]}


def paired_bootstrap_interval(differences: Sequence[float] | np.ndarray, num_resamples: int = 2000,
                              seed: int = 0, level: float = 0.95) -> dict:
    """Mean of ``differences`` (one per item, e.g. per masked token) and its percentile bootstrap interval:
    {"mean", "ci95": [low, high], "n"}. Resampling uses ``numpy.random.default_rng(seed)``."""
    values = np.asarray(differences, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"mean": None, "ci95": None, "n": 0}
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, values.size, size=(num_resamples, values.size))
    means = values[draws].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return {"mean": float(values.mean()), "ci95": [float(low), float(high)], "n": int(values.size)}


def holds(interval: Sequence[float] | None, direction: str = "positive") -> bool:
    """True when the interval excludes zero on the stated side ("positive": low > 0; "negative": high < 0)."""
    if interval is None:
        return False
    low, high = interval
    if direction == "positive":
        return low > 0
    if direction == "negative":
        return high < 0
    raise ValueError(f"direction must be 'positive' or 'negative', got {direction!r}")
