"""Measuring tools of the MaskVL benchmarks: interleaved timing, FLOP counting, peak memory, matmul peak.

* :func:`interleaved_times` -- every model runs in the same process, round after round, in a rotating
  order, so slow phases of a noisy machine (other jobs, thermal changes) hit every model alike. Ratios are
  taken per round (:func:`paired_ratio`) and summarised by their median and range. Each measurement also
  records the CPU time that *other* processes used meanwhile (:class:`ForeignLoad`); rounds in which
  another process took more than ``quiet_load`` cores are kept in the record but left out of the summary
  when enough quiet rounds exist (on 2 cores, one busy neighbour can slow a 2-thread step tenfold).
* :func:`count_flops` -- ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions, attention),
  plus formulas for the CPU flash-attention kernels that torch 2.13 does not count
  (``aten._scaled_dot_product_flash_attention_for_cpu`` and its backward): without them every model using
  SDPA on CPU would be under-counted against models using eager attention. The backward's recomputation of
  the attention scores is not counted, so SDPA and eager attention count the same (useful) work.
* :func:`peak_step_memory` -- parameters + gradients + optimizer state + activations: the static part is
  summed from the tensors themselves, the peak of what the step allocates on top of it is read from the
  allocation events of ``torch.profiler`` (CPU; ``torch.cuda.max_memory_allocated`` on a GPU).
* :func:`matmul_peak` -- the machine's measured dense matmul FLOP/s (best of a few square sizes).
* :func:`parse_bench_arguments`, :func:`check_at_least_one` -- the argument handling every benchmark shares.
"""

import datetime
import functools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import (
    FlopCounterMode,
    bmm_flop,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)
from tqdm.auto import tqdm

aten = torch.ops.aten


# ------------------------------------------------------------------------------------------------- FLOPs
def _cpu_flash_attention_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_flash_attention_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args,
                                       out_shape=None, **kwargs) -> int:
    """The four gradient matmuls (of scores, V, Q, K) but not the kernel's recomputation of the scores, so that
    SDPA and eager attention count the same useful work."""
    batch, heads, q_len, head_dim = query_shape
    k_len = key_shape[2]
    recompute = bmm_flop((batch * heads, q_len, head_dim), (batch * heads, head_dim, k_len))
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape) - recompute


CPU_ATTENTION_FLOPS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_attention_flop,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_attention_backward_flop,
}


def count_flops(fn: Callable[[], object]) -> int:
    """Matmul-class FLOPs (2 per multiply-add) that ``fn()`` executes, forward and backward."""
    counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS)
    with counter:
        fn()
    return int(counter.get_total_flops())


def step_flops(step) -> float:
    """Mean FLOPs of one training step (``bench_setup.TrainStep``) over its batches: masks change the row subsets
    that some models run on, so the count varies from batch to batch."""
    counts = []
    for batch in step.batches:
        counts.append(count_flops(functools.partial(step.forward_backward, batch)))
        step.optimizer.zero_grad(set_to_none=True)
    return statistics.mean(counts)


# ------------------------------------------------------------------------------------------------ memory
def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def static_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Parameters + optimizer state (what stays allocated between steps)."""
    state = [value for per_param in optimizer.state.values() for value in per_param.values()]
    return tensor_bytes(model.parameters()) + tensor_bytes(state)


def _profiled_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak of the bytes allocated by ``fn()`` on the CPU, above what was allocated before it started."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]" and e.device_type()
              == torch.autograd.DeviceType.CPU]
    if not events:
        raise RuntimeError("torch.profiler recorded no CPU allocation events; cannot measure peak memory")
    current = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        current += event.nbytes()
        peak = max(peak, current)
    return peak


def peak_step_memory(step, device: str = "cpu") -> dict:
    """Peak memory of one training step (``step``: a warmed-up ``bench_setup.TrainStep``), in bytes:
    ``static`` (parameters + optimizer state), ``step`` (peak allocated during the step: activations,
    gradients, temporaries) and ``peak`` = static + step."""
    static = static_bytes(step.model, step.optimizer)
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        dynamic = torch.cuda.max_memory_allocated() - base
    else:
        dynamic = _profiled_peak_bytes(step)
    return {"static": static, "step": dynamic, "peak": static + dynamic}


# ---------------------------------------------------------------------------------------- matmul peak
def matmul_peak(device: str = "cpu", dtype: torch.dtype = torch.float32, sizes=(1024, 2048, 3072),
                repeats: int = 5) -> dict:
    """Dense matmul FLOP/s of this machine: best time of ``repeats`` square (n, n) @ (n, n) per size.

    Returns ``{"flops_per_s": best over sizes, "per_size": {n: FLOP/s}}``.
    """
    per_size = {}
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        a @ b  # warm-up (thread pool, kernel selection)
        best = float("inf")
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            a @ b
            _sync(device)
            best = min(best, time.perf_counter() - start)
        per_size[n] = 2 * n**3 / best
    return {"flops_per_s": max(per_size.values()), "per_size": per_size}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# bf16 dense (no sparsity) tensor-core peaks from NVIDIA's data sheets, TFLOP/s, by a substring of the device name;
# the longest matching name wins ("H100 PCIe" before "H100", "A100" before "A10").
BF16_DENSE_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "H100 PCIe": 756.0, "H100 NVL": 835.0, "A100": 312.0,
                          "L40S": 362.0, "L4": 121.0, "A10": 125.0}


def bf16_dense_peak_flops(device_name: str) -> float:
    """bf16 dense peak FLOP/s of a GPU from its name (``torch.cuda.get_device_name()``); a clear error if unknown."""
    matches = [name for name in BF16_DENSE_PEAK_TFLOPS if name.lower() in device_name.lower()]
    if not matches:
        raise ValueError(f"no bf16 dense peak known for GPU {device_name!r} (known: {sorted(BF16_DENSE_PEAK_TFLOPS)}); "
                         "give it with --peak_tflops")
    return BF16_DENSE_PEAK_TFLOPS[max(matches, key=len)] * 1e12


# ------------------------------------------------------------------------------------------------ timing
class ForeignLoad:
    """CPU time used by *other* processes while a block runs: (busy time of the machine from ``/proc/stat``
    - CPU time of this process). ``/proc/stat`` counts in clock ticks (10 ms), so judge it over blocks of a
    second or more (:class:`Timings` sums it over a round). ``foreign`` is None where it is unreadable."""

    _ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    @classmethod
    def _busy_seconds(cls) -> float | None:
        try:
            with open("/proc/stat", encoding="utf-8") as handle:
                values = [int(x) for x in handle.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return (sum(values[:8]) - idle) / cls._ticks  # user..steal, not guest (already in user)

    def __enter__(self):
        self.busy, self.own, self.start = self._busy_seconds(), time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        busy = self._busy_seconds()
        self.wall = time.perf_counter() - self.start
        self.foreign = None
        if busy is not None and self.busy is not None:
            self.foreign = (busy - self.busy) - (time.process_time() - self.own)
        return False


class Timings:
    """Seconds per step of each model, one value per round, and the foreign CPU load of each round (in cores:
    CPU seconds used by other processes / wall seconds of the round). A round is *quiet* when that load is at
    most ``quiet_load`` cores."""

    def __init__(self, names, quiet_load: float):
        self.seconds = {name: [] for name in names}
        self.round_foreign_load: list[float | None] = []
        self.quiet_load = quiet_load

    @property
    def rounds(self) -> int:
        return len(self.round_foreign_load)

    def round_is_quiet(self, r: int) -> bool:
        load = self.round_foreign_load[r]
        return load is None or load <= self.quiet_load

    @property
    def quiet_rounds(self) -> list[int]:
        return [r for r in range(self.rounds) if self.round_is_quiet(r)]

    def selected_rounds(self, min_quiet: int = 3) -> tuple[list[int], str]:
        """The quiet rounds when there are at least ``min_quiet`` of them, else every round."""
        quiet = self.quiet_rounds
        if len(quiet) >= min(min_quiet, self.rounds):
            return quiet, f"{len(quiet)} quiet rounds of {self.rounds}"
        return list(range(self.rounds)), f"all {self.rounds} rounds (only {len(quiet)} quiet: noisy machine)"

    def select(self, name: str, rounds: list[int]) -> list[float]:
        return [self.seconds[name][r] for r in rounds]

    def max_foreign_load(self, rounds: list[int] | None = None) -> float | None:
        rounds = range(self.rounds) if rounds is None else rounds
        loads = [self.round_foreign_load[r] for r in rounds if self.round_foreign_load[r] is not None]
        return max(loads) if loads else None


def interleaved_times(steps: dict, rounds: int, steps_per_round: int = 1, warmup: int = 2, device: str = "cpu",
                      desc: str = "timing", quiet_load: float = 0.25, time_budget: float | None = None,
                      max_rounds: int | None = None) -> Timings:
    """Time every callable of ``steps`` (one training step each) in interleaved rounds.

    Every callable first runs ``warmup`` untimed steps. Each round runs ``steps_per_round`` steps of every
    callable, in an order rotated by one each round, and records their mean time, and the foreign CPU load
    of the round. Rounds continue until ``rounds`` quiet rounds are collected, ``max_rounds`` (default
    ``3 * rounds``) rounds have run, or ``time_budget`` seconds have passed (after at least ``rounds`` rounds).
    """
    if rounds < 1 or steps_per_round < 1:
        raise ValueError(f"rounds ({rounds}) and steps_per_round ({steps_per_round}) must be at least 1")
    names = list(steps)
    max_rounds = max(rounds, max_rounds if max_rounds is not None else 3 * rounds)
    for name in tqdm(names, desc=f"{desc}: warm-up", leave=False):
        for _ in range(warmup):
            steps[name]()
    timings = Timings(names, quiet_load)
    start_all = time.perf_counter()
    progress = tqdm(total=rounds, desc=f"{desc} (quiet rounds)", leave=False)
    for r in range(max_rounds):
        foreign, wall = 0.0, 0.0
        for name in names[r % len(names):] + names[:r % len(names)]:
            _sync(device)
            with ForeignLoad() as load:
                for _ in range(steps_per_round):
                    steps[name]()
                _sync(device)
            timings.seconds[name].append(load.wall / steps_per_round)
            foreign = None if foreign is None or load.foreign is None else foreign + load.foreign
            wall += load.wall
        timings.round_foreign_load.append(None if foreign is None else max(0.0, foreign) / wall)
        progress.n = min(rounds, len(timings.quiet_rounds))
        progress.set_postfix(rounds=r + 1, refresh=True)
        if len(timings.quiet_rounds) >= rounds:
            break
        if time_budget is not None and r + 1 >= rounds and time.perf_counter() - start_all > time_budget:
            break
    progress.close()
    return timings


def summarize(seconds: list[float], batch_size: int) -> dict:
    """Median samples/s with its spread over rounds (min, max, interquartile range)."""
    rates = sorted(batch_size / s for s in seconds)
    q1, _, q3 = statistics.quantiles(rates, n=4, method="inclusive") if len(rates) > 1 else (rates[0],) * 3
    return {"median": statistics.median(rates), "min": rates[0], "max": rates[-1], "q1": q1, "q3": q3,
            "median_seconds": statistics.median(seconds), "rounds": len(rates)}


def paired_ratio(seconds: list[float], reference_seconds: list[float]) -> dict:
    """Speed ratio (reference time / time) per round: median, min, max."""
    ratios = sorted(ref / s for s, ref in zip(seconds, reference_seconds))
    return {"median": statistics.median(ratios), "min": ratios[0], "max": ratios[-1]}


# ----------------------------------------------------------------------------------------------- reports
def machine_info(device: str = "cpu") -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), "cpu": cpu,
            "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "device": device}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    import transformers

    info["transformers"] = transformers.__version__
    return info


def load_average() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def describe_machine(info: dict) -> str:
    text = (f"{info['date']}; {info['cpu']}, {info['cores']} cores, torch {info['torch']} "
            f"({info['torch_threads']} threads), transformers {info['transformers']}")
    return text + (f"; GPU {info['gpu']}" if "gpu" in info else "")


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub markdown table (numbers already formatted as strings)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str | None, payload: dict) -> None:
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, default=str)


def resolve_device(device: str) -> str:
    """"cpu" or "cuda" (only when one is there); a clear error otherwise."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"--device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no GPU")
    return device


def parse_bench_arguments(parser, argv: list[str] | None = None) -> tuple:
    """The dataclasses of an ``HfArgumentParser`` from ``argv`` (default ``sys.argv[1:]``): command-line flags,
    or one YAML / JSON argument file given alone."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        if len(argv) > 1:
            raise ValueError("give either an argument file or command-line arguments, not both")
        loader = parser.parse_yaml_file if argv[0].endswith((".yaml", ".yml")) else parser.parse_json_file
        return loader(argv[0])
    return parser.parse_args_into_dataclasses(argv)


def check_at_least_one(args, names) -> None:
    """ValueError naming the first of the ``names`` fields of ``args`` that is below 1."""
    for name in names:
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}")
