"""Efficiency benchmark: achieved FLOP/s of a training step over the machine's measured dense matmul FLOP/s.

For each model of the matched-size comparison (``bench_setup.py``): the matmul-class FLOPs of one training
step (forward + backward) are counted with ``torch.utils.flop_counter.FlopCounterMode`` (plus the CPU
flash-attention kernels it does not count, see ``bench_measure.count_flops``), the step is timed in interleaved
rounds, and achieved FLOP/s = FLOPs / median step time is divided by the machine's dense matmul peak, measured
here (best of square fp32 matmuls on the CPU; bf16 on a GPU) before and after the timing. ViLT's counted FLOPs
are cross-checked against a hand count of its matmuls. ``--flop_breakdown`` splits the forward FLOPs by module
(where the compute goes); ``--profile`` prints, per aten op, self time and achieved FLOP/s of one step
(torch.profiler), the evidence for where the time goes.

Usage (from the repository root; about 2 minutes on a quiet 2-core CPU):

    python bench/efficiency.py
    python bench/efficiency.py --profile maskvlm vilt --output_json bench/results/efficiency.json
    python bench/efficiency.py --models maskvlm vilt --rounds 2 --hidden_size 128   # quick smoke run
"""

import statistics
from dataclasses import asdict, dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import HfArgumentParser

from bench_measure import (CPU_ATTENTION_FLOPS, check_at_least_one, describe_machine, interleaved_times, load_average,
                           machine_info, markdown_table, matmul_peak, parse_bench_arguments, resolve_device,
                           step_flops, write_json)
from bench_setup import ALL_MODELS, BenchSize, build_step, caption_data, check_models, vilt_config

TARGET_FRACTION = 0.75


@dataclass
class EfficiencyBenchArguments:
    models: list[str] = field(default_factory=lambda: list(ALL_MODELS),
                              metadata={"help": f"Models, from {', '.join(ALL_MODELS)}."})
    rounds: int = field(default=5, metadata={"help": "Quiet rounds wanted."})
    steps_per_round: int = field(default=1)
    warmup: int = field(default=2)
    time_budget: float = field(default=90.0, metadata={"help": "No new round after this many seconds."})
    quiet_load: float = field(default=0.25, metadata={"help": "Max CPU cores used by other processes in a quiet round."})
    num_examples: int = field(default=256)
    num_batches: int = field(default=4)
    peak_sizes: list[int] = field(default_factory=lambda: [1024, 2048, 3072],
                                  metadata={"help": "Square matmul sizes of the peak measurement."})
    peak_repeats: int = field(default=5)
    profile: list[str] = field(default_factory=list, metadata={"help": "Models to profile op by op."})
    flop_breakdown: list[str] = field(default_factory=lambda: ["maskvlm", "flava"],
                                      metadata={"help": "Models whose forward FLOPs are broken down by module."})
    profile_top: int = field(default=12, metadata={"help": "Ops shown per profiled model."})
    device: str = field(default="cpu", metadata={"help": "cpu (fp32; what we report) or cuda (bf16)."})
    threads: int | None = field(default=None)
    seed: int = field(default=0)
    output_json: str | None = field(default=None)

    def __post_init__(self):
        check_models(self.models, self.profile, self.flop_breakdown)
        check_at_least_one(self, ("rounds", "steps_per_round", "num_batches", "peak_repeats", "num_examples"))
        if not self.peak_sizes or min(self.peak_sizes) < 1:
            raise ValueError(f"--peak_sizes must be positive sizes, got {self.peak_sizes}")


def vilt_hand_count(size: BenchSize) -> int:
    """Matmul FLOPs of one ViltForMaskedLM training step, counted by hand.

    Per layer and sample, S = text + 1 + patches tokens: Q, K, V, O projections 4 * 2 S D^2, MLP 2 * 2 S D (4D),
    scores and weighted sum 2 * 2 S^2 D. Plus the patch convolution 2 N (3 P^2) D, the pooler 2 D^2 and the
    MLM head on every text token 2 T D^2 + 2 T D V. Backward costs twice the forward, except the patch
    convolution, whose input needs no gradient (once), and the pooler, which the MLM loss does not use (none).
    """
    config = vilt_config(size)
    d, t, n = config.hidden_size, size.text_length, size.num_patches
    s = t + 1 + n
    layer = 4 * 2 * s * d * d + 2 * 2 * s * d * config.intermediate_size + 2 * 2 * s * s * d
    patch = 2 * n * 3 * size.patch_size**2 * d
    pooler = 2 * d * d
    head = 2 * t * d * d + 2 * t * d * config.vocab_size
    forward = config.num_hidden_layers * layer + patch + pooler + head
    return size.batch_size * (3 * forward - patch - 2 * pooler)


def flop_breakdown(step, min_share: float = 0.02, max_depth: int = 3) -> str:
    """Forward FLOPs of one batch by module (a module called several times counts every call), nested modules
    indented; forward attribution is exact, and a training step costs about 3x these numbers."""
    counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS, depth=max_depth + 1)
    with counter, torch.no_grad():
        step.model(**step.batches[0])
    total = counter.get_total_flops()
    rows = []
    for name, per_op in sorted(counter.get_flop_counts().items()):  # parents sort before their children
        depth = name.count(".")
        flops = sum(per_op.values())
        if 1 <= depth <= max_depth and flops >= min_share * total:
            rows.append(["· " * (depth - 1) + name.split(".", 1)[1], f"{flops / 1e9:.1f}", f"{100 * flops / total:.0f}%"])
    return (f"{step.name}: {total / 1e9:.1f} GFLOP forward\n\n"
            + markdown_table(["module", "GFLOP (forward)", "share"], rows))


def profile_step(step, top: int) -> str:
    """Self time and achieved FLOP/s per aten op over one training step (after warm-up)."""
    from torch.profiler import ProfilerActivity, profile

    batch = step.next_batch()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step.forward_backward(batch)
        step.optimizer.step()
        step.optimizer.zero_grad(set_to_none=True)
    counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS)
    with counter:
        step.forward_backward(batch)
    step.optimizer.zero_grad(set_to_none=True)
    flops = {f"aten::{op.__name__.split('.')[0]}": n for op, n in counter.get_flop_counts()["Global"].items()}
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events)
    calls = sum(e.count for e in events)
    rows = []
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]:
        ms = e.self_cpu_time_total / 1e3
        gflop = flops.get(e.key, 0) / 1e9
        rows.append([e.key, e.count, f"{ms:.1f}", f"{100 * e.self_cpu_time_total / total:.1f}%",
                     f"{gflop:.1f}" if gflop else "", f"{gflop / ms * 1e3:.0f}" if gflop else ""])
    matmul_ms = sum(e.self_cpu_time_total for e in events if e.key in flops) / 1e3
    header = (f"{step.name}: {total / 1e3:.0f} ms of aten self time in {calls} aten calls; ops that count FLOPs "
              f"take {100 * matmul_ms * 1e3 / total:.0f}% of it")
    return header + "\n\n" + markdown_table(["op", "calls", "self ms", "share", "GFLOP", "GFLOP/s"], rows)


def main(argv=None):
    size, args = parse_bench_arguments(HfArgumentParser((BenchSize, EfficiencyBenchArguments)), argv)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    info, load_before = machine_info(device), load_average()
    print(f"# MaskVL training-step efficiency\n\nMachine: {describe_machine(info)}; load average before: "
          f"{load_before}\nSize: {size.describe()}\n", flush=True)

    peak_before = matmul_peak(device, dtype, args.peak_sizes, args.peak_repeats)
    data = caption_data(size, args.num_examples, args.seed)
    steps = {name: build_step(name, size, data, args.num_batches, args.seed, device) for name in args.models}
    timings = interleaved_times(steps, args.rounds, args.steps_per_round, args.warmup, device, desc="efficiency",
                                quiet_load=args.quiet_load, time_budget=args.time_budget)
    peak_after = matmul_peak(device, dtype, args.peak_sizes, args.peak_repeats)
    peak = max(peak_before["flops_per_s"], peak_after["flops_per_s"])
    rounds, note = timings.selected_rounds(min_quiet=3)

    results, rows = {}, []
    for name, step in steps.items():
        flops = step_flops(step)
        seconds = timings.select(name, rounds)
        per_round = sorted(flops / s / peak for s in seconds)
        fraction = flops / statistics.median(seconds) / peak
        results[name] = {"flops_per_step": flops, "seconds_median": statistics.median(seconds),
                         "fraction_of_peak": fraction, "fraction_min": per_round[0], "fraction_max": per_round[-1]}
        rows.append([name, f"{flops / 1e9:.1f}", f"{statistics.median(seconds):.3f}",
                     f"{flops / statistics.median(seconds) / 1e9:.0f}",
                     f"{100 * fraction:.0f}% ({100 * per_round[0]:.0f}–{100 * per_round[-1]:.0f})",
                     "✓" if fraction >= TARGET_FRACTION else "✗"])

    unit = "bf16" if device == "cuda" else "fp32"
    print(f"Dense {unit} matmul peak: {peak / 1e9:.0f} GFLOP/s (square sizes "
          + ", ".join(f"{n}: {f / 1e9:.0f}" for n, f in peak_before["per_size"].items()) + " before; "
          + ", ".join(f"{n}: {f / 1e9:.0f}" for n, f in peak_after["per_size"].items()) + " after the timing)\n")
    print(f"## Training-step efficiency ({note}; max foreign load "
          f"{(timings.max_foreign_load(rounds) or 0):.2f} cores)\n")
    print(markdown_table(["model", "GFLOP/step (counted)", "step s (median)", "GFLOP/s", "% of matmul peak (rounds)",
                          f"≥ {100 * TARGET_FRACTION:.0f}%"], rows) + "\n")
    if "vilt" in results:
        hand = vilt_hand_count(size)
        counted = results["vilt"]["flops_per_step"]
        results["vilt"]["hand_count"] = hand
        print(f"ViLT FLOP cross-check: hand count {hand / 1e9:.2f} GFLOP/step, FlopCounterMode {counted / 1e9:.2f} "
              f"GFLOP/step (ratio {counted / hand:.3f}); by the hand count ViLT reaches "
              f"{100 * hand / results['vilt']['seconds_median'] / peak:.0f}% of peak.\n")
    quiet = len(timings.quiet_rounds) >= min(3, timings.rounds)
    print("Targets" + ("" if quiet else " (measured without enough quiet rounds: rerun on an idle machine)") + ":")
    for name, res in results.items():
        if name in ("vilt", "flava"):
            continue
        vilt = results.get("vilt", {}).get("fraction_of_peak")
        ahead = f"; ViLT {100 * vilt:.0f}%, {'ahead' if res['fraction_of_peak'] > vilt else 'behind'}" if vilt else ""
        verdict = "MET" if res["fraction_of_peak"] >= TARGET_FRACTION else "MISSED"
        print(f"- {name} ≥ {100 * TARGET_FRACTION:.0f}% of peak: {verdict} ({100 * res['fraction_of_peak']:.0f}%{ahead})")
    print()
    breakdowns = {}
    for name in args.flop_breakdown:
        step = steps[name] if name in steps else build_step(name, size, data, args.num_batches, args.seed, device)
        breakdowns[name] = flop_breakdown(step)
        print("### Forward FLOPs of " + breakdowns[name] + "\n")
    profiles = {}
    for name in args.profile:
        step = steps[name] if name in steps else build_step(name, size, data, args.num_batches, args.seed, device)
        if name not in steps:
            step()
            step()
        profiles[name] = profile_step(step, args.profile_top)
        print("### Profile of " + profiles[name] + "\n")
    print(f"Load average after: {load_average()}")
    write_json(args.output_json, {"machine": info, "size": asdict(size), "arguments": asdict(args),
                                  "load_average_before": load_before, "load_average_after": load_average(),
                                  "matmul_peak_before": peak_before, "matmul_peak_after": peak_after,
                                  "peak_flops_per_s": peak, "rounds_note": note, "results": results,
                                  "flop_breakdowns": breakdowns, "profiles": profiles})
    return results


if __name__ == "__main__":
    main()
