"""bench/gpu_check.sh: the prepared GPU check runs end to end on the CPU with --dry_run (tiny preset), and its
report's numbers follow from what the runs measured. No wall-clock time is asserted."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "bench" / "gpu_check.sh"


def bench_module(name: str):
    """A module of bench/ (not a package) loaded from its file, without editing sys.path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(*args, timeout=500) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.slow
def test_dry_run_reports_samples_per_second_memory_and_mfu(tmp_path):
    proc = run_script("--dry_run", "--output_dir", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for heading in ("== 1/3 pretrain.py (cpu)", "== 2/3 train_step.py (cpu)", "== 3/3 report", "MFU"):
        assert heading in proc.stdout
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    metrics = json.loads((tmp_path / "pretrain" / "train_results.json").read_text())
    pretrain = report["pretrain"]
    assert report["peak_flops"] == 0.1e12  # the dry run's assumed peak
    assert pretrain["samples_per_s"] == metrics["train_samples_per_second"] > 0
    assert pretrain["batch_size"] == 4 and pretrain["flops_per_step"] > 0
    assert pretrain["mfu"] == pytest.approx(pretrain["flops_per_step"] / 4 * pretrain["samples_per_s"] / 0.1e12)
    assert pretrain["peak_memory_bytes"] > 0 and pretrain["peak_memory_source"] == "CPU RSS"
    step = json.loads((tmp_path / "train_step.json").read_text())["comparison"]["models"]
    assert set(report["train_step"]) == set(step) == {"maskvlm", "flava"}
    for name, res in report["train_step"].items():
        measured = step[name]
        assert res["samples_per_s"] == measured["samples_per_s"]["median"] > 0
        assert res["mfu"] == pytest.approx(measured["flops_per_step"] / 4 * res["samples_per_s"] / 0.1e12)
        assert res["peak_memory_bytes"] == measured["memory"]["peak"] > 0
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| pretrain.py (whole loop) |" in table and "| train_step.py: flava |" in table


def test_without_a_gpu_the_real_check_stops_with_a_clear_message(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the real check would run (10 minutes)")
    proc = run_script("--output_dir", str(tmp_path), timeout=120)
    assert proc.returncode != 0
    assert "torch sees no CUDA GPU" in proc.stderr and "--dry_run" in proc.stderr
    assert not (tmp_path / "pretrain").exists()


def test_unknown_argument_is_named():
    proc = run_script("--steps_typo", "3", timeout=60)
    assert proc.returncode == 2 and "unknown argument '--steps_typo'" in proc.stderr


def test_bf16_peak_lookup_by_gpu_name():
    bf16_dense_peak_flops = bench_module("bench_measure").bf16_dense_peak_flops

    assert bf16_dense_peak_flops("NVIDIA H200") == bf16_dense_peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert bf16_dense_peak_flops("NVIDIA A100-SXM4-80GB") == 312e12  # not the A10's
    assert bf16_dense_peak_flops("NVIDIA H100 PCIe") == 756e12
    with pytest.raises(ValueError, match="GeForce GTX 1080.*--peak_tflops"):
        bf16_dense_peak_flops("NVIDIA GeForce GTX 1080")
