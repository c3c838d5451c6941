"""Training-step benchmark: MaskVL presets against transformers' FLAVA and ViLT at matched size.

Measures forward + backward + optimizer step (fused AdamW) of ``MaskVLForPreTraining`` with each preset,
``FlavaForPreTraining`` and ``ViltForMaskedLM``, all built at the same width, depth, heads, image size, patch
size, text length, batch size and vocabulary (see ``bench_setup.py``), all in this one process, in
interleaved rounds. Reports samples/s (median and spread over rounds), per-round paired ratios to FLAVA and
ViLT, the FLOP-normalised ratio to ViLT (achieved FLOP/s ratio: the architectures differ), matmul FLOPs per
step and peak memory. Then the scaling curves: step time as the number of image patches and the text length
grow, against the cost predicted by the counted FLOPs.

Usage (from the repository root; the default run takes about 5 minutes on a quiet 2-core CPU):

    python bench/train_step.py
    python bench/train_step.py --output_json bench/results/train_step.json --plot bench/results/scaling.png
    python bench/train_step.py --models maskvlm flava vilt --rounds 5 --no_scaling
    python bench/train_step.py --models maskvlm maskvlm-visible maskvlm-drop50 maskvlm-fast maskvlm-dyntext \
        maskvlm-itcitm maskvlm-drop50-itcitm flava --rounds 7 --no_scaling   # issue 16's paths (~4 min)
    python bench/train_step.py bench/configs/quick.yaml              # arguments from a YAML / JSON file
    python bench/train_step.py --hidden_size 128 --num_layers 2 --batch_size 8 --rounds 2 \\
        --scaling_image_sizes 32 64 --scaling_text_lengths 16 32     # a quick smoke run

Arguments: ``BenchSize`` (sizes shared by every model) and ``TrainStepBenchArguments`` below.
"""

import math
import statistics
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from transformers import HfArgumentParser

from bench_measure import (check_at_least_one, describe_machine, interleaved_times, load_average, machine_info,
                           markdown_table, paired_ratio, parse_bench_arguments, peak_step_memory, resolve_device,
                           step_flops, summarize, write_json)
from bench_setup import (ALL_MODELS, DEFAULT_MODELS, BenchSize, build_step, caption_data, check_models,
                         num_parameters, random_token_data)

TARGET_FLAVA_SPEEDUP = 2.0  # maskvlm samples/s over FLAVA's, matched size (issue 16)
# paired speed-ups reported when both models ran: (label, faster variant, reference)
SPEEDUPS = (
    ("visible-only MIM (whole step)", "maskvlm-visible", "maskvlm"),
    ("patch drop 50% (whole step)", "maskvlm-drop50", "maskvlm"),
    ("patch drop 50% (ITC/ITM pass alone)", "maskvlm-drop50-itcitm", "maskvlm-itcitm"),
    ("visible-only MIM + patch drop 50% (whole step)", "maskvlm-fast", "maskvlm"),
    ("the same with pooling='text' (whole step)", "maskvlm-textpool-fast", "maskvlm"),
    ("text padded to each batch's longest caption (whole step)", "maskvlm-dyntext", "maskvlm"),
)


@dataclass
class TrainStepBenchArguments:
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS),
                              metadata={"help": f"Models to compare, from {', '.join(ALL_MODELS)} (default "
                                                f"{' '.join(DEFAULT_MODELS)})."})
    rounds: int = field(default=7, metadata={"help": "Quiet rounds wanted (each runs every model once)."})
    steps_per_round: int = field(default=1, metadata={"help": "Training steps of each model per round."})
    warmup: int = field(default=2, metadata={"help": "Untimed steps of each model before timing."})
    time_budget: float = field(default=150.0, metadata={
        "help": "Seconds after which no new round starts once `rounds` rounds ran, quiet or not."})
    quiet_load: float = field(default=0.25, metadata={
        "help": "A round is quiet when other processes used at most this many cores on average during it."})
    num_examples: int = field(default=256, metadata={"help": "Synthetic image-caption pairs to batch from."})
    num_batches: int = field(default=4, metadata={"help": "Distinct batches (fresh masks) each model cycles through."})
    scaling: bool = field(default=True, metadata={"help": "Also run the scaling curves."})
    scaling_models: list[str] = field(default_factory=lambda: ["maskvlm", "vilt"],
                                      metadata={"help": "Models of the scaling curves."})
    scaling_image_sizes: list[int] = field(default_factory=lambda: [32, 64, 96, 128],
                                           metadata={"help": "Image sides of the patch-count curve (text fixed)."})
    scaling_text_lengths: list[int] = field(default_factory=lambda: [16, 32, 64, 128],
                                            metadata={"help": "Text lengths of the text curve (image fixed)."})
    scaling_rounds: int = field(default=3, metadata={"help": "Quiet rounds wanted per scaling curve."})
    scaling_time_budget: float = field(default=75.0, metadata={"help": "Like --time_budget, per scaling curve."})
    device: str = field(default="cpu", metadata={"help": "cpu (fp32; what we report) or cuda (bf16 autocast)."})
    threads: int | None = field(default=None, metadata={"help": "torch threads (default: torch's choice)."})
    seed: int = field(default=0)
    output_json: str | None = field(default=None, metadata={"help": "Write every number measured here."})
    plot: str | None = field(default=None, metadata={"help": "Save the scaling curves as a PNG here."})

    def __post_init__(self):
        check_models(self.models, self.scaling_models)
        check_at_least_one(self, ("rounds", "steps_per_round", "num_batches", "scaling_rounds", "num_examples"))
        if self.warmup < 0:
            raise ValueError(f"--warmup must be >= 0, got {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {self.threads}")


def _fmt(x: float, digits: int = 1) -> str:
    return f"{x:.{digits}f}"


# ------------------------------------------------------------------------------------------ comparison
def compare(size: BenchSize, args: TrainStepBenchArguments, data) -> dict:
    steps = {name: build_step(name, size, data, args.num_batches, args.seed, args.device) for name in args.models}
    timings = interleaved_times(steps, args.rounds, args.steps_per_round, args.warmup, args.device,
                                desc="train step", quiet_load=args.quiet_load, time_budget=args.time_budget)
    rounds, rounds_note = timings.selected_rounds(min_quiet=3)
    results = {}
    for name, step in steps.items():
        results[name] = {
            "parameters": num_parameters(step.model),
            "flops_per_step": step_flops(step),
            "memory": peak_step_memory(step, args.device),
            "samples_per_s": summarize(timings.select(name, rounds), size.batch_size),
            "seconds_all_rounds": timings.seconds[name],
        }
    for name in steps:
        res = results[name]
        for ref in ("flava", "vilt"):
            if ref in steps:
                res[f"vs_{ref}"] = paired_ratio(timings.select(name, rounds), timings.select(ref, rounds))
        if "vilt" in steps:  # achieved FLOP/s ratio: speed ratio x (FLOPs per sample ratio)
            flop_ratio = res["flops_per_step"] / results["vilt"]["flops_per_step"]
            res["vs_vilt_flop_normalised"] = {k: v * flop_ratio for k, v in res["vs_vilt"].items()}
        res["achieved_flops_per_s"] = res["flops_per_step"] / res["samples_per_s"]["median_seconds"]
    speedups = {label: {"model": fast, "reference": ref,
                        "ratio": paired_ratio(timings.select(fast, rounds), timings.select(ref, rounds)),
                        "flop_ratio": results[fast]["flops_per_step"] / results[ref]["flops_per_step"],
                        "memory_ratio": results[fast]["memory"]["peak"] / results[ref]["memory"]["peak"]}
                for label, fast, ref in SPEEDUPS if fast in steps and ref in steps}
    quiet = len(timings.quiet_rounds) >= min(3, timings.rounds)
    return {"models": results, "speedups": speedups, "rounds_used": rounds, "rounds_note": rounds_note,
            "rounds_run": timings.rounds,
            "quiet": quiet,
            "max_foreign_load": timings.max_foreign_load(rounds),
            "foreign_load_all_rounds": timings.round_foreign_load}


def comparison_table(report: dict, size: BenchSize) -> str:
    headers = ["model", "params (M)", "GFLOP/step", "samples/s (median)", "spread min–max [IQR]",
               "vs FLAVA", "vs ViLT", "vs ViLT per FLOP", "GFLOP/s", "peak memory (MB)"]
    rows = []
    for name, res in report["models"].items():
        sps = res["samples_per_s"]

        def ratio(key, res=res):
            r = res.get(key)
            return f"{r['median']:.2f}× ({r['min']:.2f}–{r['max']:.2f})" if r else "–"

        rows.append([name, _fmt(res["parameters"] / 1e6, 2), _fmt(res["flops_per_step"] / 1e9),
                     _fmt(sps["median"]), f"{sps['min']:.1f}–{sps['max']:.1f} [{sps['q1']:.1f}–{sps['q3']:.1f}]",
                     ratio("vs_flava"), ratio("vs_vilt"), ratio("vs_vilt_flop_normalised"),
                     _fmt(res["achieved_flops_per_s"] / 1e9), _fmt(res["memory"]["peak"] / 2**20, 0)])
    return markdown_table(headers, rows)


def speedup_table(report: dict) -> str:
    """Paired speed-ups of the fast paths over the path they replace (per-round ratio: median (min–max))."""
    rows = [[label, f"{sp['model']} / {sp['reference']}",
             f"{sp['ratio']['median']:.2f}× ({sp['ratio']['min']:.2f}–{sp['ratio']['max']:.2f})",
             f"{sp['flop_ratio']:.2f}", f"{sp['memory_ratio']:.2f}"]
            for label, sp in report.get("speedups", {}).items()]
    return markdown_table(["path", "models", "speed-up (samples/s)", "FLOPs ×", "peak memory ×"], rows)


def _noise_note(ratio: dict, target: float) -> str:
    return "; the per-round range includes the target: within noise" if ratio["min"] <= target <= ratio["max"] else ""


def target_lines(report: dict) -> list[str]:
    models, lines = report["models"], []
    for name in ("maskvlm", "maskvlm-visible", "maskvlm-drop50", "maskvlm-fast", "maskvlm-textpool-fast"):
        if name not in models or "flava" not in models:
            continue
        r = models[name]["vs_flava"]
        verdict = "MET" if r["median"] >= TARGET_FLAVA_SPEEDUP else "MISSED"
        flops = models[name]["flops_per_step"] / models["flava"]["flops_per_step"]
        memory = models[name]["memory"]["peak"] / models["flava"]["memory"]["peak"]
        lines.append(f"- {name} ≥ {TARGET_FLAVA_SPEEDUP}× FLAVA samples/s: {verdict} ({r['median']:.3f}×, rounds "
                     f"{r['min']:.2f}–{r['max']:.2f}{_noise_note(r, TARGET_FLAVA_SPEEDUP)}; {name} counts {flops:.2f}× "
                     f"FLAVA's FLOPs per step, so equal efficiency would give {1 / flops:.2f}×)")
        lines.append(f"- {name} peak memory ≤ FLAVA's: {'MET' if memory <= 1.0 else 'MISSED'} ({memory:.2f}×)")
    if "vilt" in models:
        for name, res in models.items():
            if name in ("vilt", "flava"):
                continue
            r = res["vs_vilt_flop_normalised"]
            verdict = "MET" if r["median"] >= 1.0 else "MISSED"
            lines.append(f"- {name} ≥ ViLT samples/s per unit of compute: {verdict} ({r['median']:.3f}× per FLOP, "
                         f"rounds {r['min']:.2f}–{r['max']:.2f}{_noise_note(r, 1.0)}; raw speed "
                         f"{res['vs_vilt']['median']:.2f}×)")
    return lines


# --------------------------------------------------------------------------------------------- scaling
def scaling_curve(model: str, axis: str, values: list[int], size: BenchSize, args, base_data) -> dict:
    """Step time of ``model`` as one size grows (``axis`` "image_size" or "text_length")."""
    steps, sizes = {}, {}
    for value in values:
        point = replace(size, **{axis: value})
        data = random_token_data(point, max(point.batch_size, 2 * point.batch_size), args.seed, base_data)
        label = f"{model}@{axis}={value}"
        steps[label] = build_step(model, point, data, 2, args.seed, args.device)
        sizes[label] = point
    timings = interleaved_times(steps, args.scaling_rounds, 1, 1, args.device, desc=f"scaling {model} {axis}",
                                quiet_load=args.quiet_load, time_budget=args.scaling_time_budget,
                                max_rounds=2 * args.scaling_rounds)
    rounds, note = timings.selected_rounds(min_quiet=2)
    quiet = len(timings.quiet_rounds) >= min(2, timings.rounds)
    points = []
    for label, step in steps.items():
        point, seconds = sizes[label], timings.select(label, rounds)
        points.append({"image_size": point.image_size, "patches": point.num_patches, "text_length": point.text_length,
                       "tokens": point.num_patches + 1 + point.text_length,
                       "seconds_median": statistics.median(seconds), "seconds_min": min(seconds),
                       "seconds_max": max(seconds), "flops_per_step": step_flops(step)})
    return {"model": model, "axis": axis, "points": points, "rounds_note": note, "quiet": quiet}


def _slope(xs, ys) -> float:
    """Least-squares slope of log y against log x."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.mean(lx), statistics.mean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def cost_fit(points: list[dict]) -> tuple[float, float]:
    """Least-squares fit of the expected cost, seconds = overhead + FLOPs / rate; returns (overhead, rate)."""
    xs, ys = [p["flops_per_step"] for p in points], [p["seconds_median"] for p in points]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, 1.0 / slope


def scaling_verdict(curve: dict, tolerance: float = 0.10) -> str:
    """Does step time follow the expected cost, a fixed overhead + counted FLOPs at a constant rate (least-squares
    fit)? "follows" when the fit is within ``tolerance`` of every median; "does NOT follow" when it misses a median
    by more and also lies outside that point's min–max over rounds; otherwise "inconclusive" (noisy points)."""
    pts = curve["points"]
    key = "patches" if curve["axis"] == "image_size" else "text_length"
    xs = [p[key] for p in pts]
    time_slope = _slope(xs, [p["seconds_median"] for p in pts])
    flop_slope = _slope(xs, [p["flops_per_step"] for p in pts])
    overhead, rate = cost_fit(pts)
    curve["fit"] = {"overhead_seconds": overhead, "flops_per_s": rate, "time_slope": time_slope,
                    "flop_slope": flop_slope, "verdict": "not judged"}
    if not curve.get("quiet", True):
        return (f"{curve['model']}, {key} {xs[0]}→{xs[-1]}: not judged -- no quiet rounds (other processes were "
                f"using the CPU); rerun on an idle machine")
    fitted = [overhead + p["flops_per_step"] / rate for p in pts]
    residuals = [abs(f - p["seconds_median"]) / p["seconds_median"] for f, p in zip(fitted, pts)]
    off = [(p, f) for f, p, r in zip(fitted, pts, residuals) if r > tolerance]
    outside = [p[key] for p, f in off if not p["seconds_min"] <= f <= p["seconds_max"]]
    if rate > 0 and not off:
        verdict = "follows the expected cost"
    elif outside or rate <= 0:
        verdict = f"does NOT follow the expected cost (at {key} {outside})"
    else:
        verdict = (f"inconclusive: the fit misses {key} {[p[key] for p, _ in off]} by more than "
                   f"{100 * tolerance:.0f}% but stays within their noisy min–max")
    curve["fit"].update(max_relative_residual=max(residuals), verdict=verdict)
    return (f"{curve['model']}, {key} {xs[0]}→{xs[-1]}: time ×{pts[-1]['seconds_median'] / pts[0]['seconds_median']:.2f}"
            f" while FLOPs ×{pts[-1]['flops_per_step'] / pts[0]['flops_per_step']:.2f} (log-log slopes {time_slope:.2f} "
            f"and {flop_slope:.2f}). Fit seconds = {overhead:.3f} + FLOPs / ({rate / 1e9:.0f} GFLOP/s), largest "
            f"residual {100 * max(residuals):.1f}% → {verdict}")


def scaling_table(curve: dict) -> str:
    pts = curve["points"]
    ref = pts[0]
    headers = ["image", "patches", "text tokens", "step time s (median, min–max)", "GFLOP/step", "GFLOP/s",
               "time / first", "FLOPs / first"]
    rows = [[f"{p['image_size']}²", p["patches"], p["text_length"],
             f"{p['seconds_median']:.3f} ({p['seconds_min']:.3f}–{p['seconds_max']:.3f})",
             _fmt(p["flops_per_step"] / 1e9), _fmt(p["flops_per_step"] / p["seconds_median"] / 1e9),
             _fmt(p["seconds_median"] / ref["seconds_median"], 2), _fmt(p["flops_per_step"] / ref["flops_per_step"], 2)]
            for p in pts]
    return markdown_table(headers, rows)


def plot_scaling(curves: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, axis, key, label in ((axes[0], "image_size", "patches", "image patches"),
                                 (axes[1], "text_length", "text_length", "text tokens")):
        for curve in (c for c in curves if c["axis"] == axis):
            pts = curve["points"]
            xs = [p[key] for p in pts]
            line, = ax.plot(xs, [p["seconds_median"] for p in pts], "o-", label=f"{curve['model']} measured")
            ax.fill_between(xs, [p["seconds_min"] for p in pts], [p["seconds_max"] for p in pts],
                            color=line.get_color(), alpha=0.2)
            overhead, rate = cost_fit(pts)  # expected cost: fixed overhead + counted FLOPs at a constant rate
            ax.plot(xs, [overhead + p["flops_per_step"] / rate for p in pts], "--", color=line.get_color(),
                    label=f"{curve['model']} fit {overhead:.2f} s + FLOPs / {rate / 1e9:.0f} GFLOP/s")
        ax.set_xlabel(label)
        ax.set_ylabel("seconds per training step")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- main
def main(argv=None):
    size, args = parse_bench_arguments(HfArgumentParser((BenchSize, TrainStepBenchArguments)), argv)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info(device)
    load_before = load_average()
    print(f"# MaskVL training-step benchmark\n\nMachine: {describe_machine(info)}; load average before: "
          f"{load_before}\nSize: {size.describe()}\n", flush=True)

    data = caption_data(size, args.num_examples, args.seed)
    report = compare(size, args, data)
    print(f"## Matched size, forward + backward + AdamW step ({report['rounds_note']}; max foreign load "
          f"{(report['max_foreign_load'] or 0):.2f} cores)\n")
    print(comparison_table(report, size) + "\n")
    print("Ratios are medians of per-round ratios (range in brackets); 'per FLOP' multiplies by the ratio of "
          "counted FLOPs per sample.\n")
    if report["speedups"]:
        print("## Less work per step (paired per-round ratios; FLOPs and memory: variant / reference)\n")
        print(speedup_table(report) + "\n")
    caveat = "" if report["quiet"] else " (measured without enough quiet rounds: rerun on an idle machine)"
    print(f"Targets{caveat}:\n" + "\n".join(target_lines(report)) + "\n", flush=True)

    curves = []
    if args.scaling:
        for model in args.scaling_models:
            curves.append(scaling_curve(model, "image_size", args.scaling_image_sizes, size, args, data))
            curves.append(scaling_curve(model, "text_length", args.scaling_text_lengths, size, args, data))
        print("## Scaling (random full-length text; the other size fixed at the reference)\n")
        for curve in curves:
            print(f"### {curve['model']}: {curve['axis'].replace('_', ' ')} ({curve['rounds_note']})\n")
            print(scaling_table(curve) + "\n")
            print(scaling_verdict(curve) + "\n")
        if args.plot:
            plot_scaling(curves, args.plot)
            print(f"Scaling curves saved to {args.plot}\n")
    print(f"Load average after: {load_average()}")
    write_json(args.output_json, {"machine": info, "size": asdict(size), "arguments": asdict(args),
                                  "load_average_before": load_before, "load_average_after": load_average(),
                                  "comparison": report, "scaling": curves})
    return report, curves


if __name__ == "__main__":
    main()
