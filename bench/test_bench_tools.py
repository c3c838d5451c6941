"""Checks of the benchmark tools themselves (no wall-clock assertions): FLOP counting, the ViLT hand count,
peak-memory accounting, interleaving and round selection, argument validation, and tiny end-to-end runs
of the three scripts.

    python -m pytest bench -q
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import bench_measure
import pytest
import torch
import torch.nn.functional as F
from bench_measure import (
    Timings,
    count_flops,
    interleaved_times,
    paired_ratio,
    peak_step_memory,
    static_bytes,
    summarize,
)
from bench_setup import BenchSize, build_model, vilt_config
from torch.utils.flop_counter import FlopCounterMode

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "image_size": 32, "patch_size": 16, "text_length": 8,
        "batch_size": 4, "vocab_size": 64}


def _attention_inputs():
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(2, 2, 5, 8, generator=generator, requires_grad=True) for _ in range(3)]


def test_cpu_flash_attention_is_counted_like_eager_attention():
    q, k, v = _attention_inputs()

    def sdpa():
        F.scaled_dot_product_attention(q, k, v).sum().backward()

    def eager():
        ((q @ k.transpose(-1, -2)) * 8**-0.5).softmax(-1).matmul(v).sum().backward()

    plain = FlopCounterMode(display=False)
    with plain:
        sdpa()
    assert count_flops(sdpa) == count_flops(eager) > 0
    assert plain.get_total_flops() < count_flops(sdpa)  # torch alone misses the CPU kernel


def test_vilt_hand_count_matches_the_flop_counter():
    from efficiency import vilt_hand_count

    size = BenchSize(**TINY)
    model = build_model("vilt", size)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, size.vocab_size, (size.batch_size, size.text_length), generator=generator)
    labels = torch.full_like(input_ids, -100)
    labels[:, 2] = input_ids[:, 2]
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
             "pixel_values": torch.randn(size.batch_size, 3, size.image_size, size.image_size, generator=generator),
             "pixel_mask": torch.ones(size.batch_size, size.image_size, size.image_size, dtype=torch.long),
             "labels": labels}
    assert vilt_config(size).max_position_embeddings == size.text_length
    assert count_flops(lambda: model(**batch).loss.backward()) == vilt_hand_count(size)


class _AllocatingStep:
    """A fake training step that holds ``extra_bytes`` of activations at its peak."""

    def __init__(self, extra_bytes: int):
        self.model = torch.nn.Linear(100, 100)
        self.optimizer = torch.optim.AdamW(self.model.parameters())
        self.model(torch.randn(2, 100)).sum().backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.extra = extra_bytes // 4

    def __call__(self):
        activations = torch.ones(self.extra)  # alive until the end of the step
        (self.model(torch.randn(2, 100)).sum() + activations.sum()).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def test_peak_step_memory_sees_the_step_allocations():
    step = _AllocatingStep(8 * 2**20)
    memory = peak_step_memory(step)
    params = sum(p.numel() * 4 for p in step.model.parameters())
    assert static_bytes(step.model, step.optimizer) == memory["static"] >= 3 * params  # weights + 2 Adam moments
    assert 8 * 2**20 <= memory["step"] < 8 * 2**20 + 2**20
    assert memory["peak"] == memory["static"] + memory["step"]


def test_interleaved_rounds_rotate_and_quiet_rounds_are_selected(monkeypatch):
    class Quiet(bench_measure.ForeignLoad):  # the machine's real load (other jobs, 10-ms ticks) must not matter here
        def __exit__(self, *exc):
            super().__exit__(*exc)
            self.foreign = 0.0
            return False

    monkeypatch.setattr(bench_measure, "ForeignLoad", Quiet)
    order = []
    steps = {name: (lambda name=name: order.append(name)) for name in "abc"}
    timings = interleaved_times(steps, rounds=3, warmup=1, quiet_load=10.0)
    assert order[:3] == ["a", "b", "c"]  # warm-up
    assert order[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert timings.rounds == 3 and all(len(v) == 3 for v in timings.seconds.values())

    noisy = Timings("ab", quiet_load=0.25)
    noisy.seconds = {"a": [1.0, 9.0, 1.2, 1.1], "b": [2.0, 9.0, 2.2, 2.4]}
    noisy.round_foreign_load = [0.0, 1.5, 0.1, 0.2]
    rounds, note = noisy.selected_rounds(min_quiet=3)
    assert rounds == [0, 2, 3] and "3 quiet rounds of 4" in note
    noisy.round_foreign_load = [0.0, 1.5, 0.9, 0.9]
    assert noisy.selected_rounds(min_quiet=3)[0] == [0, 1, 2, 3]


def test_rounds_stop_at_max_rounds_when_never_quiet(monkeypatch):
    class Busy(bench_measure.ForeignLoad):
        def __exit__(self, *exc):
            super().__exit__(*exc)
            self.foreign = 10.0 * self.wall  # pretend another process used 10 cores
            return False

    monkeypatch.setattr(bench_measure, "ForeignLoad", Busy)
    timings = interleaved_times({"a": lambda: None}, rounds=2, warmup=0, max_rounds=5)
    assert timings.rounds == 5 and timings.quiet_rounds == []


def test_summaries_and_paired_ratios():
    stats = summarize([1.0, 2.0, 4.0], batch_size=8)
    assert (stats["median"], stats["min"], stats["max"]) == (4.0, 2.0, 8.0)
    ratio = paired_ratio([1.0, 2.0, 1.0], [2.0, 2.0, 3.0])
    assert (ratio["median"], ratio["min"], ratio["max"]) == (2.0, 1.0, 3.0)


@pytest.mark.parametrize("field, value, message", [("hidden_size", 31, "num_heads"), ("image_size", 40, "patch_size"),
                                                   ("batch_size", 0, "batch_size"), ("text_length", 2, "text_length")])
def test_bench_size_errors_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        BenchSize(**{**TINY, field: value})


def test_unknown_model_is_named():
    from train_step import TrainStepBenchArguments

    with pytest.raises(ValueError, match="clip"):
        TrainStepBenchArguments(models=["maskvlm", "clip"])


TINY_ARGS = [f"--{k}={v}" for k, v in TINY.items()]


@pytest.mark.slow
def test_train_step_script_end_to_end(tmp_path):
    import json

    from train_step import main

    out = tmp_path / "train_step.json"
    report, curves = main(TINY_ARGS + ["--models", "maskvlm", "mlim", "flava", "vilt", "--rounds=1", "--warmup=0",
                                       "--num_examples=16", "--num_batches=1", "--scaling_models", "vilt",
                                       "--scaling_image_sizes", "32", "64", "--scaling_text_lengths", "8", "16",
                                       "--scaling_rounds=1", f"--output_json={out}", f"--plot={tmp_path / 's.png'}"])
    models = report["models"]
    assert set(models) == {"maskvlm", "mlim", "flava", "vilt"}
    assert models["vilt"]["vs_vilt"]["median"] == 1.0 and models["flava"]["vs_flava"]["median"] == 1.0
    assert all(m["flops_per_step"] > 0 and m["memory"]["step"] > 0 for m in models.values())
    assert [p["patches"] for p in curves[0]["points"]] == [4, 16]
    assert curves[0]["points"][1]["flops_per_step"] > curves[0]["points"][0]["flops_per_step"]
    assert json.loads(out.read_text())["comparison"]["models"]["maskvlm"]["parameters"] > 0
    assert (tmp_path / "s.png").stat().st_size > 0


@pytest.mark.slow
def test_collator_script_end_to_end():
    from collator import HF_MLM, PREPROCESSED, main

    report = main(["--rounds=1", "--num_examples=32", "--batch_size=8", "--batches_per_round=1",
                   "--tagging_examples=20", "--tagging_repeats=1"])
    results = report["results"]
    assert HF_MLM in results and "text: objects" + PREPROCESSED in results
    assert all(r["step_fraction"]["median"] > 0 for name, r in results.items() if not name.startswith("step: "))
    assert report["tagging"]["pattern"]["direct_median"] > 0 and report["tagging"]["dataset"]["map_median"] > 0


@pytest.mark.slow
def test_efficiency_script_end_to_end():
    from efficiency import main

    results = main(TINY_ARGS + ["--models", "lxmert", "vilt", "--rounds=1", "--warmup=0", "--num_examples=16",
                                "--num_batches=1", "--peak_sizes", "64", "--peak_repeats=1", "--profile", "vilt"])
    assert set(results) == {"lxmert", "vilt"}
    assert results["vilt"]["hand_count"] == results["vilt"]["flops_per_step"]
    assert all(0 < r["fraction_of_peak"] for r in results.values())
