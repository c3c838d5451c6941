"""Compare masking strategies on the papers' axis: the amount of PRE-TRAINING data, over seeds.

For every strategy, pre-training fraction and seed, `pretraining` (a subprocess) pre-trains a model with
identical flags -- model, steps, batch size, learning rate, data pool, tokenizer -- except the strategy's masking
flags (`STRATEGIES`), the fraction (`--train_fraction`: nested subsets of ONE pool of pairs drawn with the fixed
`--data_seed`, so the 10% subset is inside the 25% one) and the seed (model initialisation, data order, masks).
Every run takes the same number of optimizer steps: compute is held fixed and only the amount of distinct
pre-training data changes (Bitton et al.'s and MaskVLM's limited-data regimes; a smaller fraction is seen for
more epochs). Then each checkpoint is scored by

* image necessity (`image_necessity`): Δ = loss without the image (blank) − with it, per evaluation mask, with a
  paired bootstrap 95% interval over the masked tokens;
* easy-VQA fine-tuning on the whole fine-tuning pool (`vqa_finetuning`, one fine-tuning run per pre-training
  seed): accuracy overall and per question type;
* image–text retrieval (`retrieval`, ITC + ITM re-ranking) R@1 / R@5 on held-out pairs.

All strategies share one tokenizer trained on the pre-training captions AND the easy-VQA questions, so that
fine-tuning does not meet [UNK] words and the vocabularies are identical. Tables give the mean over seeds with a
Student-t 95% interval; a claim "holds" only when its interval excludes zero in the stated direction.

Strategies (`STRATEGIES`; "image none" means the pixel head gets no masked patch):

| name | masking flags |
|---|---|
| `random15` | BERT random 15% of tokens, 80/10/10 (baseline); image none |
| `random40` | random 40% (higher-rate baseline, Verma et al.); image none |
| `content_words` | one content word per caption (Bitton et al.); image none |
| `objects` | one object word per caption; image none |
| `top_concrete` | one of the 3 most concrete words (0.55/0.30/0.15); image none |
| `maskvlm` | MaskVLM joint: text (random 30%) OR image (60% in blocks) per pair |
| `mlim` | MLIM modality-aware: heavy image / heavy text / light both per pair, random patches |

Launch commands and output files: `train_scripts/compare_strategies.py` (console script
`maskvl-compare-strategies`).
"""

import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

import torch

from . import image_necessity, retrieval, vqa_finetuning
from .arguments import parse_args
from .metrics import json_safe
from .statistics import holds, seed_summary

logger = logging.getLogger(__name__)

_NO_IMAGE = ["--image_masking", "none", "--joint_masking", "independent"]
STRATEGIES = {
    "random15": ["--text_masking", "random", "--text_mask_rate", "0.15", *_NO_IMAGE],
    "random40": ["--text_masking", "random", "--text_mask_rate", "0.4", *_NO_IMAGE],
    "content_words": ["--text_masking", "content_words", *_NO_IMAGE],
    "objects": ["--text_masking", "objects", *_NO_IMAGE],
    "top_concrete": ["--text_masking", "top_concrete", *_NO_IMAGE],
    "maskvlm": ["--text_masking", "random", "--joint_masking", "maskvlm", "--image_masking", "block"],
    "mlim": ["--text_masking", "random", "--joint_masking", "mlim", "--image_masking", "random"],
}
BASELINE = "random15"
NECESSITY_MASKS = ("random", "stop_words", "objects", "attributes")
# --quick: the same pipeline on a small budget (2 strategies x 2 fractions x 2 seeds, short runs): 8.8 min on the
# quiet 2-core CPU (2026-12-02), 55 s per pre-training run of which 33 s train
QUICK = dict(strategies=["random15", "objects"], pretrain_fractions=[0.25, 1.0], seeds=[0, 1],
             pretrain_max_steps=150, necessity_eval_size=150, vqa_max_train_samples=600, vqa_max_test_samples=300,
             vqa_epochs=1.0, retrieval_eval_size=100)


@dataclass
class CompareArguments:
    """Strategies, pre-training fractions and seeds, the shared pre-training budget, the evaluations."""

    output_dir: str = field(default="outputs/compare_strategies")
    report_path: str | None = field(
        default=None, metadata={"help": "Markdown report (default OUTPUT_DIR/strategy_comparison.md)."}
    )
    figures_dir: str | None = field(default=None, metadata={"help": "Figures (default next to the report, figures/)."})
    strategies: list[str] = field(
        default_factory=lambda: ["random15", "content_words", "objects"],
        metadata={"help": f"Subset of {list(STRATEGIES)} (the first comparisons are against {BASELINE})."},
    )
    pretrain_fractions: list[float] = field(
        default_factory=lambda: [0.1, 0.25, 0.5, 1.0],
        metadata={"help": "Fractions of the pre-training pairs (nested subsets of one pool)."},
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Pre-training seeds."})
    data_seed: int = field(default=42, metadata={"help": "Seed of the pool of pairs, the subsets and the eval data."})
    quick: bool = field(default=False, metadata={"help": f"A ~9-minute version (2-core CPU): {QUICK}."})
    preset: str | None = field(default=None, metadata={"help": "Model preset (None = pretrain.py's default)."})
    pretrain_max_steps: int = field(default=600, metadata={"help": "Optimizer steps of EVERY pre-training run."})
    pretrain_batch_size: int = field(default=32)
    pretrain_learning_rate: float | None = field(default=None, metadata={"help": "None = pretrain.py's default."})
    synthetic_num_examples: int = field(default=4000, metadata={"help": "The pool of pre-training pairs (fraction 1.0)."})
    tokenizer_vocab_size: int = field(default=1000)
    extra_pretrain_args: str = field(default="", metadata={"help": "More pretrain.py flags for every run."})
    reuse_pretraining: bool = field(default=True, metadata={
        "help": "Skip pre-training runs whose checkpoint, and downstream evaluations whose results, already exist "
                "(so parallel processes, one per strategy or seed, can share one --output_dir; a last run over the "
                "whole grid then only scores image necessity and writes the report)."})
    pretrain_only: bool = field(
        default=False,
        metadata={"help": "Stop after pre-training (e.g. to pre-train seeds in parallel processes into one "
                  "--output_dir; a last run without this flag reuses them and evaluates)."},
    )
    necessity_eval_size: int = field(default=300)
    vqa_max_train_samples: int = field(default=10000, metadata={"help": "easy-VQA fine-tuning pool (all of it used)."})
    vqa_max_test_samples: int = field(default=600)
    vqa_epochs: float = field(default=3.0)
    vqa_learning_rate: float = field(default=1e-3)
    retrieval_eval_size: int = field(default=200, metadata={"help": "Held-out pairs for retrieval (0 = skip)."})
    torch_threads: int | None = field(
        default=1, metadata={"help": "Intra-op threads (1: fastest for tiny models on a busy 2-core CPU)."}
    )

    def __post_init__(self):
        if self.quick:
            for key, value in QUICK.items():
                setattr(self, key, value)
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise ValueError(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
        if not self.strategies:
            raise ValueError("--strategies needs at least one strategy")
        bad = [f for f in self.pretrain_fractions if not (0 < f <= 1)]
        if bad or not self.pretrain_fractions:
            raise ValueError(f"--pretrain_fractions must be in (0, 1], got {bad or self.pretrain_fractions}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"--seeds must be distinct, got {self.seeds}")
        self.pretrain_fractions = sorted(set(self.pretrain_fractions))
        self.report_path = self.report_path or os.path.join(self.output_dir, "strategy_comparison.md")
        self.figures_dir = self.figures_dir or os.path.join(os.path.dirname(self.report_path) or ".", "figures")


def run_name(strategy: str, fraction: float, seed: int) -> str:
    return f"{strategy}/frac{fraction:g}/seed{seed}"


def pretrain_command(args: CompareArguments, strategy: str, fraction: float, seed: int, tokenizer: str) -> list[str]:
    """`python -m maskvl_train.pretraining` (i.e. `train_scripts/pretrain.py`) with the shared flags, the run's
    fraction and seed, then the strategy's masking flags (always last)."""
    shared = [
        "--output_dir", os.path.join(args.output_dir, run_name(strategy, fraction, seed)),
        "--max_steps", str(args.pretrain_max_steps), "--per_device_train_batch_size", str(args.pretrain_batch_size),
        "--synthetic_num_examples", str(args.synthetic_num_examples), "--tokenizer", tokenizer,
        "--data_seed", str(args.data_seed), "--train_fraction", f"{fraction:g}", "--seed", str(seed),
        "--eval_steps", str(args.pretrain_max_steps), "--save_steps", str(args.pretrain_max_steps),
        "--save_total_limit", "1", "--disable_tqdm", "true",
    ]
    if args.preset is not None:
        shared += ["--preset", args.preset]
    if args.pretrain_learning_rate is not None:
        shared += ["--learning_rate", str(args.pretrain_learning_rate)]
    return [sys.executable, "-m", "maskvl_train.pretraining", *shared, *shlex.split(args.extra_pretrain_args),
            *STRATEGIES[strategy]]


def shared_tokenizer(args: CompareArguments) -> str:
    """One WordPiece tokenizer for every run, trained on the pool's captions and the easy-VQA questions."""
    from maskvl_processing import train_wordpiece_tokenizer
    from maskvl_processing.pretraining_data import load_image_text_dataset

    from .vqa_data import load_easy_vqa

    folder = os.path.join(args.output_dir, "tokenizer")
    if os.path.isfile(os.path.join(folder, "tokenizer_config.json")):
        return folder
    captions = load_image_text_dataset(split="train", synthetic_num_examples=args.synthetic_num_examples,
                                       seed=args.data_seed)["caption"]
    questions = load_easy_vqa("train")["question"]
    tokenizer = train_wordpiece_tokenizer(list(captions) + list(questions), vocab_size=args.tokenizer_vocab_size)
    tokenizer.save_pretrained(folder)
    return folder


def run_pretraining(args: CompareArguments, strategy: str, fraction: float, seed: int, tokenizer: str) -> dict:
    """Pre-train one run (subprocess; log next to its folder); returns time and final held-out metrics."""
    folder = os.path.join(args.output_dir, run_name(strategy, fraction, seed))
    done = os.path.join(folder, "eval_results.json")
    seconds_file = os.path.join(folder, "pretraining_seconds.json")
    seconds = None
    if not (args.reuse_pretraining and os.path.isfile(done)):
        env = dict(os.environ)
        if args.torch_threads:
            env["OMP_NUM_THREADS"] = str(args.torch_threads)
        os.makedirs(folder, exist_ok=True)
        log_path = folder + ".log"
        start = time.perf_counter()
        with open(log_path, "w") as log:
            process = subprocess.run(pretrain_command(args, strategy, fraction, seed, tokenizer), stdout=log,
                                     stderr=subprocess.STDOUT, env=env)
        seconds = time.perf_counter() - start
        if process.returncode != 0:
            raise RuntimeError(f"pre-training {run_name(strategy, fraction, seed)} failed (exit "
                               f"{process.returncode}); see {log_path}")
        with open(seconds_file, "w") as handle:
            json.dump({"seconds": seconds}, handle)
    elif os.path.isfile(seconds_file):
        with open(seconds_file) as handle:
            seconds = json.load(handle)["seconds"]
    with open(done) as handle:
        metrics = json.load(handle)
    return {"seconds": seconds, **{k: metrics.get(k) for k in (
        "eval_mlm_accuracy", "eval_loss", "eval_itm_accuracy", "eval_image_acc1_attribute",
        "eval_blank_acc1_attribute", "eval_image_acc1_object", "eval_blank_acc1_object")}}


def evaluate_downstream(args: CompareArguments, name: str, checkpoint: str, seed: int) -> dict:
    """easy-VQA (whole fine-tuning pool, fine-tuning seed = pre-training seed) and retrieval of one checkpoint."""
    out_dir = os.path.join(args.output_dir, "downstream", name)
    cached = os.path.join(out_dir, "downstream.json")
    if args.reuse_pretraining and os.path.isfile(cached):  # e.g. evaluated by a parallel process (see README)
        with open(cached) as handle:
            return json.load(handle)
    vqa = vqa_finetuning.main([
        "--checkpoint", checkpoint, "--output_dir", os.path.join(out_dir, "vqa"), "--train_fraction", "1.0",
        "--seeds", str(seed), "--max_train_samples", str(args.vqa_max_train_samples),
        "--max_test_samples", str(args.vqa_max_test_samples), "--num_train_epochs", str(args.vqa_epochs),
        "--learning_rate", str(args.vqa_learning_rate), "--disable_tqdm", "true",
    ])
    row = vqa["summary"]["1.0"]
    result = {"vqa_accuracy": row["accuracy"]["mean"],
              "vqa_by_type": {t: v["mean"] for t, v in row["accuracy_by_type"].items()},
              "vqa_oov_token_rate": vqa["oov"]["token_rate"]}
    if args.retrieval_eval_size:
        ranking = retrieval.main(["--checkpoint", checkpoint, "--output_dir", os.path.join(out_dir, "retrieval"),
                                  "--data_seed", str(args.data_seed), "--eval_size", str(args.retrieval_eval_size)])
        best = ranking["itm_rerank"] or ranking["itc"]
        for k in (1, 5):  # mean of the two directions
            result[f"R@{k}"] = (best["image_to_text"][f"R@{k}"] + best["text_to_image"][f"R@{k}"]) / 2
    os.makedirs(out_dir, exist_ok=True)
    with open(cached, "w") as handle:
        json.dump(json_safe(result), handle, indent=2)
    return result


def necessity_by_run(report: dict) -> dict:
    """{run name: {mask: {"delta_loss", "delta_loss_ci95", "acc1_with", "acc1_blank", "delta_acc1_ci95"}}}."""
    out = {}
    for entry in report["checkpoints"]:
        out[entry["name"]] = {mask: {
            "delta_loss": row["delta_blank"]["loss"], "delta_loss_ci95": row["delta_blank"].get("loss_ci95"),
            "acc1_with": row["with_image"]["acc@1"], "acc1_blank": row["blank"]["acc@1"],
            "delta_acc1_ci95": row["delta_blank"].get("acc@1_ci95"),
        } for mask, row in entry["masks"].items()}
    return out


def metric_of(run: dict, metric: str):
    """One number of a run's record: "vqa_accuracy", "R@5", "vqa/<type>", "delta_loss/<mask>"."""
    if metric.startswith("vqa/"):
        return run["downstream"]["vqa_by_type"].get(metric[4:])
    if metric.startswith("delta_loss/"):
        return run["necessity"][metric.split("/", 1)[1]]["delta_loss"]
    if metric.startswith("acc1_gap/"):  # with-image minus blank-image Acc@1
        row = run["necessity"][metric.split("/", 1)[1]]
        return row["acc1_with"] - row["acc1_blank"]
    return run["downstream"].get(metric)


def summarise(runs: dict, args: CompareArguments, metrics: list[str]) -> dict:
    """{strategy: {fraction: {metric: seed_summary}}} from runs[strategy][fraction][seed]."""
    return {s: {f"{f:g}": {m: seed_summary([metric_of(runs[s][f][seed], m) for seed in args.seeds])
                           for m in metrics} for f in args.pretrain_fractions} for s in args.strategies}


def paired_difference(runs: dict, args: CompareArguments, strategy: str, fraction: float, metric: str) -> dict:
    """Seed-paired `strategy − baseline` of a metric at one fraction, summarised over seeds."""
    return seed_summary([metric_of(runs[strategy][fraction][seed], metric)
                         - metric_of(runs[BASELINE][fraction][seed], metric) for seed in args.seeds])


def _fmt_interval(summary: dict, scale: float = 1.0, signed: bool = False) -> str:
    if summary["mean"] is None:
        return "–"
    sign = "+" if signed else ""
    text = f"{scale * summary['mean']:{sign}.1f}" if scale != 1 else f"{summary['mean']:{sign}.3f}"
    if summary["ci95"] is not None:
        low, high = (scale * v for v in summary["ci95"])
        text += f" [{low:.1f}, {high:.1f}]" if scale != 1 else f" [{low:.3f}, {high:.3f}]"
    return text


def findings(runs: dict, args: CompareArguments) -> list[dict]:
    """The papers' claims, each judged by a 95% interval (over seeds, or over masked tokens per run)."""
    out = []
    full, low = max(args.pretrain_fractions), min(args.pretrain_fractions)
    for strategy in args.strategies:  # does the model use the image at all?
        for mask in ("objects", "attributes"):
            if mask not in runs[strategy][full][args.seeds[0]]["necessity"]:
                continue
            per_seed = [runs[strategy][full][s]["necessity"][mask] for s in args.seeds]
            every = all(holds(r["delta_loss_ci95"], "positive") for r in per_seed)
            out.append({
                "claim": f"{strategy} at {full:g} of the data needs the image for {mask} words (Δ loss > 0)",
                "holds": every,
                "evidence": "per seed Δ loss [bootstrap 95% over tokens]: " + "; ".join(
                    f"{r['delta_loss']:+.3f} [{r['delta_loss_ci95'][0]:+.3f}, {r['delta_loss_ci95'][1]:+.3f}]"
                    if r["delta_loss_ci95"] else f"{r['delta_loss']:+.3f}" for r in per_seed),
            })
    if BASELINE not in args.strategies or len(args.seeds) < 2:
        return out
    others = [s for s in args.strategies if s != BASELINE]
    for metric, label in (("vqa_accuracy", "easy-VQA accuracy"), ("R@5", "retrieval R@5"),
                          ("delta_loss/objects", "image necessity of object words (Δ loss)")):
        if metric_of(runs[BASELINE][low][args.seeds[0]], metric) is None:
            continue
        for strategy in others:
            diff_low = paired_difference(runs, args, strategy, low, metric)
            out.append({
                "claim": f"{strategy} beats {BASELINE} on {label} after pre-training on {low:g} of the data",
                "holds": holds(diff_low["ci95"], "positive"),
                "evidence": f"paired difference over seeds {_fmt_interval(diff_low, signed=True)} (mean [95% t]); "
                            f"{strategy} {_fmt_interval(seed_summary([metric_of(runs[strategy][low][s], metric) for s in args.seeds]))}"
                            f", {BASELINE} {_fmt_interval(seed_summary([metric_of(runs[BASELINE][low][s], metric) for s in args.seeds]))}",
            })
            if low != full:  # the data-efficiency claim: the gain is larger with less pre-training data
                gap = seed_summary([
                    (metric_of(runs[strategy][low][s], metric) - metric_of(runs[BASELINE][low][s], metric))
                    - (metric_of(runs[strategy][full][s], metric) - metric_of(runs[BASELINE][full][s], metric))
                    for s in args.seeds])
                out.append({
                    "claim": f"{strategy}'s gain over {BASELINE} on {label} is larger at {low:g} than at {full:g} "
                             "of the pre-training data",
                    "holds": holds(gap["ci95"], "positive"),
                    "evidence": f"(gain at {low:g}) − (gain at {full:g}) over seeds: {_fmt_interval(gap, signed=True)}",
                })
    return out


def plot_fractions(summary: dict, args: CompareArguments, figures_dir: str) -> str:
    """easy-VQA accuracy, retrieval R@5 and object-word image necessity against the pre-training fraction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("vqa_accuracy", "easy-VQA accuracy (%)", 100), ("R@5", "retrieval R@5 (%)", 100),
              ("delta_loss/objects", "Δ loss, object words (nats)", 1)]
    first = summary[args.strategies[0]][f"{args.pretrain_fractions[0]:g}"]
    panels = [p for p in panels if first[p[0]]["mean"] is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    for ax, (metric, label, scale) in zip(axes[0], panels):
        for strategy in args.strategies:
            rows = [summary[strategy][f"{f:g}"][metric] for f in args.pretrain_fractions]
            means = [scale * r["mean"] for r in rows]
            errors = [0 if r["ci95"] is None else scale * (r["ci95"][1] - r["mean"]) for r in rows]
            ax.errorbar(args.pretrain_fractions, means, yerr=errors, marker="o", capsize=3, label=strategy)
        ax.set_xscale("log")
        ax.set_xticks(args.pretrain_fractions, [f"{f:g}" for f in args.pretrain_fractions])
        ax.set_xlabel("fraction of pre-training pairs")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"mean over {len(args.seeds)} seeds, 95% t-interval")
    fig.tight_layout()
    os.makedirs(figures_dir, exist_ok=True)
    path = os.path.join(figures_dir, "strategy_pretrain_fractions.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def markdown_report(result: dict, figure: str, report_path: str) -> str:
    args = CompareArguments(**{**result["settings"], "quick": False})
    summary, runs = result["summary"], result["runs"]
    fractions = [f"{f:g}" for f in args.pretrain_fractions]
    seconds = result["seconds"]
    lines = [
        "# Masking strategies against the amount of pre-training data", "",
        f"Command: `{result['command']}`", "",
        f"Machine: {result['machine']}. Wall-clock: {seconds['total'] / 60:.1f} min (pre-training "
        f"{seconds['pretraining'] / 60:.1f}, evaluation {seconds['evaluation'] / 60:.1f}).", "",
        f"Strategies {args.strategies}; pre-training fractions {fractions} of {args.synthetic_num_examples} pairs "
        f"(nested subsets, data seed {args.data_seed}); seeds {args.seeds}; every run {args.pretrain_max_steps} steps "
        f"of batch {args.pretrain_batch_size} (same compute; a smaller fraction is seen for more epochs). Cells are "
        "mean over seeds [Student-t 95% interval].", "",
        "## Findings", "", "| claim | holds? | evidence |", "|---|---|---|",
    ]
    for finding in result["findings"]:
        lines.append(f"| {finding['claim']} | {'yes' if finding['holds'] else '**no**'} | {finding['evidence']} |")
    tables = [("vqa_accuracy", "easy-VQA test accuracy (%), fine-tuned on the whole pool", 100, False),
              ("R@5", "Retrieval R@5 (%), mean of image→text and text→image", 100, False),
              ("R@1", "Retrieval R@1 (%)", 100, False)]
    tables += [(f"delta_loss/{m}", f"Image necessity, {m} mask: Δ loss blank − with image (nats)", 1, True)
               for m in NECESSITY_MASKS]
    tables += [(f"acc1_gap/{m}", f"{m} words: Acc@1 with the image − with a blank image (points)", 100, True)
               for m in ("objects", "attributes")]
    first = summary[args.strategies[0]][fractions[0]]
    for metric, title, scale, signed in tables:
        if metric not in first or first[metric]["mean"] is None:
            continue
        lines += ["", f"## {title}", "", "| strategy | " + " | ".join(fractions) + " |",
                  "|---|" + "---|" * len(fractions)]
        for strategy in args.strategies:
            lines.append(f"| {strategy} | " + " | ".join(
                _fmt_interval(summary[strategy][f][metric], scale, signed) for f in fractions) + " |")
    types = sorted(runs[args.strategies[0]][fractions[-1]][str(args.seeds[0])]["downstream"]["vqa_by_type"])
    lines += ["", f"## easy-VQA accuracy by question type (%), pre-training fraction {fractions[0]} and "
              f"{fractions[-1]}", "", "| strategy | fraction | " + " | ".join(types) + " |",
              "|---|---|" + "---|" * len(types)]
    for strategy in args.strategies:
        for f in (fractions[0], fractions[-1]) if len(fractions) > 1 else fractions:
            lines.append(f"| {strategy} | {f} | " + " | ".join(
                _fmt_interval(summary[strategy][f][f"vqa/{t}"], 100) for t in types) + " |")
    lines += ["", f"![downstream against pre-training fraction]"
              f"({os.path.relpath(figure, os.path.dirname(os.path.abspath(report_path)))})", ""]
    return "\n".join(lines) + "\n"


def describe_machine() -> str:
    return (f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
            f"(CPU), Python {platform.python_version()}")


def main(argv: list[str] | None = None) -> dict:
    (args,) = parse_args((CompareArguments,), argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    start = time.perf_counter()
    command = "python train_scripts/compare_strategies.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    grid = [(s, f, seed) for seed in args.seeds for f in args.pretrain_fractions for s in args.strategies]

    # 1. one tokenizer, then every pre-training run (strategy x fraction x seed), one after the other
    tokenizer = shared_tokenizer(args)
    runs = {s: {f: {} for f in args.pretrain_fractions} for s in args.strategies}
    for index, (strategy, fraction, seed) in enumerate(grid, 1):
        logger.info("pre-training %d/%d: %s", index, len(grid), run_name(strategy, fraction, seed))
        runs[strategy][fraction][seed] = {"pretraining": run_pretraining(args, strategy, fraction, seed, tokenizer)}
    after_pretraining = time.perf_counter()
    if args.pretrain_only:
        logger.info("pre-trained %d runs in %.1f min (--pretrain_only)", len(grid), (after_pretraining - start) / 60)
        return {"runs": runs, "seconds": {"pretraining": after_pretraining - start}}

    # 2. image necessity on every checkpoint (same held-out pairs, same masks), then downstream per checkpoint
    names = [run_name(*key) for key in grid]
    report = image_necessity.main([
        "--checkpoint", *[os.path.join(args.output_dir, n) for n in names], "--checkpoint_names", *names,
        "--output_dir", os.path.join(args.output_dir, "image_necessity"), "--eval_masks", *NECESSITY_MASKS,
        "--eval_size", str(args.necessity_eval_size), "--data_seed", str(args.data_seed),
    ])
    necessity = necessity_by_run(report)
    for index, (strategy, fraction, seed) in enumerate(grid, 1):
        name = run_name(strategy, fraction, seed)
        logger.info("downstream %d/%d: %s", index, len(grid), name)
        runs[strategy][fraction][seed]["necessity"] = necessity[name]
        runs[strategy][fraction][seed]["downstream"] = evaluate_downstream(
            args, name, os.path.join(args.output_dir, name), seed)
    end = time.perf_counter()

    # 3. summaries, findings, report
    types = sorted(runs[args.strategies[0]][args.pretrain_fractions[0]][args.seeds[0]]["downstream"]["vqa_by_type"])
    metrics = (["vqa_accuracy", "R@1", "R@5"] + [f"vqa/{t}" for t in types]
               + [f"delta_loss/{m}" for m in NECESSITY_MASKS] + [f"acc1_gap/{m}" for m in ("objects", "attributes")])
    summary = summarise(runs, args, metrics)
    result = {
        "schema_version": 2, "task": "strategy_comparison", "command": command, "machine": describe_machine(),
        "settings": asdict(args), "strategies": {s: STRATEGIES[s] for s in args.strategies},
        "findings": findings(runs, args), "summary": summary,
        "runs": {s: {f"{f:g}": {str(seed): record for seed, record in by_seed.items()}
                     for f, by_seed in by_fraction.items()} for s, by_fraction in runs.items()},
        "seconds": {"pretraining": after_pretraining - start, "evaluation": end - after_pretraining,
                    "total": end - start},
    }
    figure = plot_fractions(summary, args, args.figures_dir)
    os.makedirs(os.path.dirname(os.path.abspath(args.report_path)), exist_ok=True)
    with open(args.report_path, "w") as handle:
        handle.write(markdown_report(result, figure, args.report_path))
    json_path = os.path.splitext(args.report_path)[0] + ".json"
    with open(json_path, "w") as handle:
        json.dump(json_safe(result), handle, indent=2)
    logger.info("wrote %s and %s in %.1f min", args.report_path, json_path, (end - start) / 60)
    return result


if __name__ == "__main__":
    main()
