"""Compare masking strategies end to end: pre-train each, measure image necessity, fine-tune on easy-VQA.

Every strategy is pre-trained by `pretraining` (a subprocess) with identical flags — model, data,
steps, batch size, seed — except its masking flags (`STRATEGIES`). Then, in this process:
`image_necessity` on all checkpoints at once (same held-out pairs and masks), and
`vqa_finetuning` for each checkpoint at every training fraction and seed. Finally a Markdown report
with tables and figures, and a JSON of every number.

Strategies (all on the same architecture, `--preset`, default `maskvlm-tiny`; ITM negatives as the
preset sets them; "image none" means the pixel head gets no masked patch):

| name | masking flags |
|---|---|
| `random15` | BERT random 15% of tokens, 80/10/10 (baseline); image none |
| `random40` | random 40% (higher-rate baseline, Verma et al.); image none |
| `content_words` | one content word per caption (Bitton et al.); image none |
| `objects` | one object word per caption; image none |
| `top_concrete` | one of the 3 most concrete words (0.55/0.30/0.15); image none |
| `maskvlm` | MaskVLM joint: text (random 30%) OR image (60% in blocks) per pair |
| `mlim` | MLIM modality-aware: heavy image / heavy text / light both per pair, random patches |

Launch commands and output files: `train_scripts/compare_strategies.py`
(console script `maskvl-compare-strategies`).
"""

import json
import logging
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

import torch

from . import image_necessity, vqa_finetuning
from .arguments import parse_args
from .metrics import json_safe

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


@dataclass
class CompareArguments:
    """Strategies, the shared pre-training budget, and the evaluation settings."""

    output_dir: str = field(default="outputs/compare_strategies")
    report_path: str | None = field(
        default=None, metadata={"help": "Markdown report (default OUTPUT_DIR/strategy_comparison.md)."}
    )
    figures_dir: str | None = field(default=None, metadata={"help": "Figures (default next to the report, figures/)."})
    strategies: list[str] = field(
        default_factory=lambda: list(STRATEGIES), metadata={"help": f"Subset of {list(STRATEGIES)}."}
    )
    preset: str = field(default="maskvlm-tiny")
    image_size: int = field(default=32)
    pretrain_max_steps: int = field(default=300)
    pretrain_batch_size: int = field(default=32)
    pretrain_learning_rate: float = field(default=2e-3)
    synthetic_num_examples: int = field(default=4000, metadata={"help": "Pre-training pairs (synthetic data)."})
    tokenizer_vocab_size: int = field(default=1000)
    seed: int = field(default=42, metadata={"help": "Pre-training seed (data, init, masks), the same for all."})
    extra_pretrain_args: str = field(default="", metadata={"help": "More pretrain.py flags for every strategy."})
    reuse_pretraining: bool = field(default=True, metadata={"help": "Skip strategies whose checkpoint already exists."})
    necessity_eval_size: int = field(default=500)
    vqa_train_fraction: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.5, 1.0])
    vqa_seeds: list[int] = field(default_factory=lambda: [0, 1])
    vqa_max_train_samples: int = field(default=1500, metadata={"help": "easy-VQA training pool (before fractions)."})
    vqa_max_test_samples: int = field(default=600)
    vqa_epochs: float = field(default=2.0)
    vqa_learning_rate: float = field(default=1e-3)
    torch_threads: int | None = field(
        default=1, metadata={"help": "Intra-op threads (1: fastest for tiny models on a busy 2-core CPU)."}
    )

    def __post_init__(self):
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise ValueError(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
        if not self.strategies:
            raise ValueError("--strategies needs at least one strategy")
        self.report_path = self.report_path or os.path.join(self.output_dir, "strategy_comparison.md")
        self.figures_dir = self.figures_dir or os.path.join(os.path.dirname(self.report_path) or ".", "figures")


def pretrain_command(args: CompareArguments, strategy: str) -> list[str]:
    """The pre-training command line (`python -m maskvl_train.pretraining`, i.e. `train_scripts/pretrain.py`):
    the shared flags, then the strategy's masking flags."""
    shared = [
        "--output_dir", os.path.join(args.output_dir, strategy), "--preset", args.preset,
        "--image_size", str(args.image_size), "--max_steps", str(args.pretrain_max_steps),
        "--per_device_train_batch_size", str(args.pretrain_batch_size),
        "--learning_rate", str(args.pretrain_learning_rate),
        "--synthetic_num_examples", str(args.synthetic_num_examples),
        "--tokenizer_vocab_size", str(args.tokenizer_vocab_size), "--seed", str(args.seed),
        "--eval_steps", str(args.pretrain_max_steps), "--save_steps", str(args.pretrain_max_steps),
        "--save_total_limit", "1", "--disable_tqdm", "true",
    ]
    return [sys.executable, "-m", "maskvl_train.pretraining", *shared, *shlex.split(args.extra_pretrain_args),
            *STRATEGIES[strategy]]


def run_pretraining(args: CompareArguments, strategy: str) -> dict:
    """Pre-train one strategy (subprocess, log in OUTPUT_DIR/<strategy>.log); returns time and final metrics."""
    folder = os.path.join(args.output_dir, strategy)
    done = os.path.join(folder, "eval_results.json")
    seconds = None
    if not (args.reuse_pretraining and os.path.isfile(done)):
        command = pretrain_command(args, strategy)
        env = dict(os.environ)
        if args.torch_threads:
            env["OMP_NUM_THREADS"] = str(args.torch_threads)
        start = time.perf_counter()
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, f"{strategy}.log"), "w") as log:
            process = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        seconds = time.perf_counter() - start
        if process.returncode != 0:
            raise RuntimeError(f"pre-training {strategy!r} failed (exit {process.returncode}); see "
                               f"{os.path.join(args.output_dir, strategy + '.log')}")
        with open(os.path.join(folder, "pretraining_seconds.json"), "w") as handle:
            json.dump({"seconds": seconds}, handle)
    elif os.path.isfile(os.path.join(folder, "pretraining_seconds.json")):
        with open(os.path.join(folder, "pretraining_seconds.json")) as handle:
            seconds = json.load(handle)["seconds"]
    with open(done) as handle:
        metrics = json.load(handle)
    return {"seconds": seconds, "eval_mlm_accuracy": metrics.get("eval_mlm_accuracy"),
            "eval_loss": metrics.get("eval_loss")}


def _delta(report: dict, strategy: str, mask: str) -> float:
    entry = next(c for c in report["checkpoints"] if c["name"] == strategy)
    value = entry["masks"][mask]["delta_blank"]["loss"]
    return float("nan") if value is None else value


def findings(necessity: dict, vqa: dict, strategies: list[str], low_fraction: str) -> list[dict]:
    """The papers' qualitative claims, checked on these numbers (per strategy; `holds` = for all of them)."""
    out = []
    masks = list(necessity["checkpoints"][0]["masks"])
    for mask in ("content_words", "objects"):
        if mask in masks and "random" in masks:
            pairs = {s: (_delta(necessity, s, mask), _delta(necessity, s, "random")) for s in strategies}
            out.append({
                "claim": f"Δ loss without the image is larger for the {mask} mask than for the random 15% mask",
                "holds": all(a > b for a, b in pairs.values()),
                "evidence": "; ".join(f"{s}: {a:+.3f} vs {b:+.3f}" for s, (a, b) in pairs.items()),
            })
    if "stop_words" in masks:
        smallest = {s: min(masks, key=lambda m: _delta(necessity, s, m) if not math.isnan(_delta(necessity, s, m))
                           else math.inf) for s in strategies}
        out.append({
            "claim": "Δ loss without the image is smallest for the stop-words mask",
            "holds": all(m == "stop_words" for m in smallest.values()),
            "evidence": "; ".join(f"{s}: smallest for {m} ({_delta(necessity, s, m):+.3f}; stop_words "
                                  f"{_delta(necessity, s, 'stop_words'):+.3f})" for s, m in smallest.items()),
        })
    if BASELINE in vqa and low_fraction in vqa[BASELINE]["summary"]:
        base = vqa[BASELINE]["summary"][low_fraction]["accuracy"]
        others = {s: vqa[s]["summary"][low_fraction]["accuracy"] for s in strategies if s != BASELINE and s in vqa}
        ahead = [s for s, v in others.items() if v["mean"] > base["mean"]]
        out.append({
            "claim": f"alternative policies are ahead of the {BASELINE} baseline on easy-VQA at the lowest data "
                     f"fraction ({low_fraction})",
            "holds": bool(others) and len(ahead) > len(others) / 2,
            "evidence": f"{BASELINE} {100 * base['mean']:.1f} ± {100 * base['std']:.1f}; " + "; ".join(
                f"{s} {100 * v['mean']:.1f} ± {100 * v['std']:.1f}" for s, v in others.items())
                + f" ({len(ahead)} of {len(others)} ahead)",
        })
    return out


def plot_figures(necessity: dict, vqa: dict, strategies: list[str], figures_dir: str) -> dict:
    """Δ loss bars, accuracy-matrix heat map, VQA accuracy against fraction; returns {name: path}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(figures_dir, exist_ok=True)
    paths = {}
    masks = list(necessity["checkpoints"][0]["masks"])
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(masks)), 4))
    width = 0.8 / len(strategies)
    for j, strategy in enumerate(strategies):
        values = [_delta(necessity, strategy, m) for m in masks]
        ax.bar([i + j * width for i in range(len(masks))], [0 if math.isnan(v) else v for v in values], width=width,
               label=strategy)
    ax.set_xticks([i + width * (len(strategies) - 1) / 2 for i in range(len(masks))])
    ax.set_xticklabels(masks, rotation=30, ha="right")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("Δ loss, blank image (nats)")
    ax.set_title("Image necessity by evaluation mask and pre-training strategy")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths["delta_loss"] = os.path.join(figures_dir, "strategy_delta_loss.png")
    fig.savefig(paths["delta_loss"], dpi=120)
    plt.close(fig)

    matrix = necessity["accuracy_matrix"]
    values = [[math.nan if v is None else 100 * v for v in row] for row in matrix["values"]]
    fig, ax = plt.subplots(figsize=(1.2 * len(matrix["columns"]) + 3, 0.45 * len(matrix["rows"]) + 1.5))
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(matrix["columns"])), matrix["columns"], rotation=30, ha="right")
    ax.set_yticks(range(len(matrix["rows"])), matrix["rows"])
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            ax.text(j, i, "–" if math.isnan(value) else f"{value:.0f}", ha="center", va="center", color="white",
                    fontsize=8)
    fig.colorbar(image, ax=ax, label=f"{matrix['metric']} with image (%)")
    ax.set_title("Accuracy by masked class (rows) and pre-training strategy (columns)")
    fig.tight_layout()
    paths["accuracy_matrix"] = os.path.join(figures_dir, "strategy_accuracy_matrix.png")
    fig.savefig(paths["accuracy_matrix"], dpi=120)
    plt.close(fig)

    if vqa:
        fig, ax = plt.subplots(figsize=(6, 4))
        for strategy in strategies:
            summary = vqa[strategy]["summary"]
            fractions = sorted(summary, key=float)
            ax.errorbar([float(f) for f in fractions], [100 * summary[f]["accuracy"]["mean"] for f in fractions],
                        yerr=[100 * summary[f]["accuracy"]["std"] for f in fractions], marker="o", capsize=3,
                        label=strategy)
        ax.set_xscale("log")
        ax.set_xlabel("fraction of easy-VQA training questions")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title("easy-VQA test accuracy (mean ± std over seeds)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths["vqa"] = os.path.join(figures_dir, "strategy_vqa_fractions.png")
        fig.savefig(paths["vqa"], dpi=120)
        plt.close(fig)
    return paths


def _pct(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def markdown_report(result: dict, figures: dict, report_path: str) -> str:
    strategies = list(result["strategies"])
    necessity = result["image_necessity"]
    masks = list(necessity["checkpoints"][0]["masks"])

    def rel(path):
        return os.path.relpath(path, os.path.dirname(os.path.abspath(report_path)))

    seconds = result["seconds"]
    lines = [
        "# Masking strategies compared: image necessity and easy-VQA", "",
        f"Command: `{result['command']}`", "",
        f"Machine: {result['machine']}. Wall-clock time: {seconds['total'] / 60:.1f} min (pre-training "
        f"{seconds['pretraining'] / 60:.1f}, image necessity {seconds['image_necessity'] / 60:.1f}, easy-VQA "
        f"{seconds['vqa'] / 60:.1f}).", "",
        "Every strategy was pre-trained with the same model, data, steps, batch size and seed; only the masking "
        "flags differ (see the table). Numbers below come from this one run.", "",
        "## Strategies and pre-training", "",
        "| strategy | masking flags | pre-training min | held-out MLM accuracy % (own masks) |", "|---|---|---|---|",
    ]
    for strategy in strategies:
        pre = result["pretraining"][strategy]
        minutes = "–" if pre["seconds"] is None else f"{pre['seconds'] / 60:.1f}"
        lines.append(f"| {strategy} | `{' '.join(result['strategies'][strategy])}` | {minutes} | "
                     f"{_pct(pre['eval_mlm_accuracy'])} |")
    lines += ["", "## Findings", "", "| claim (from the papers) | holds here? | evidence |", "|---|---|---|"]
    for finding in result["findings"]:
        lines.append(f"| {finding['claim']} | {'yes' if finding['holds'] else '**no**'} | {finding['evidence']} |")
    lines += ["", "## Image necessity", "",
              f"Held-out pairs: {necessity['eval_data']['num_examples']} ({necessity['eval_data']['source']}, split "
              f"`{necessity['eval_data']['split']}`). Δ = loss without the image − loss with it (blank image); masks "
              "are identical with and without the image, every masked token is [MASK].", "",
              "Δ loss (nats), blank image:", "", "| eval mask | " + " | ".join(strategies) + " |",
              "|---|" + "---|" * len(strategies)]
    for mask in masks:
        lines.append(f"| {mask} | " + " | ".join(f"{_delta(necessity, s, mask):+.3f}" for s in strategies) + " |")
    lines += ["", "Δ loss (nats), mismatched image:", "", "| eval mask | " + " | ".join(strategies) + " |",
              "|---|" + "---|" * len(strategies)]
    for mask in masks:
        cells = []
        for strategy in strategies:
            entry = next(c for c in necessity["checkpoints"] if c["name"] == strategy)
            value = entry["masks"][mask]["delta_mismatched"]["loss"]
            cells.append("–" if value is None else f"{value:+.3f}")
        lines.append(f"| {mask} | " + " | ".join(cells) + " |")
    matrix = necessity["accuracy_matrix"]
    lines += ["", f"Accuracy by masked class ({matrix['metric']} with the image, %):", "",
              "| eval mask | " + " | ".join(matrix["columns"]) + " |", "|---|" + "---|" * len(matrix["columns"])]
    for mask, values in zip(matrix["rows"], matrix["values"]):
        lines.append(f"| {mask} | " + " | ".join(_pct(v) for v in values) + " |")
    lines += ["", "Paper-style table (exp loss / Acc@5 %: with image → blank image):", "",
              "| eval mask | " + " | ".join(strategies) + " |", "|---|" + "---|" * len(strategies)]
    for mask in masks:
        cells = []
        for strategy in strategies:
            row = next(c for c in necessity["checkpoints"] if c["name"] == strategy)["masks"][mask]
            w, b = row["with_image"], row["blank"]
            cells.append("–" if w["exp_loss"] is None or math.isnan(w["exp_loss"]) else
                         f"{w['exp_loss']:.1f}/{_pct(w['acc@5'])} → {b['exp_loss']:.1f}/{_pct(b['acc@5'])}")
        lines.append(f"| {mask} | " + " | ".join(cells) + " |")
    detection = {s: next(c for c in necessity["checkpoints"] if c["name"] == s)["object_detection"] for s in strategies}
    if all(detection.values()):
        prompts = list(next(iter(detection.values())))
        lines += ["", "Prompt-based object detection (precision@1 / @5 %, gold objects of each image):", "",
                  "| prompt | " + " | ".join(strategies) + " |", "|---|" + "---|" * len(strategies)]
        for prompt in prompts:
            lines.append(f"| {prompt} | " + " | ".join(
                f"{_pct(detection[s][prompt]['precision@1'])} / {_pct(detection[s][prompt]['precision@5'])}"
                for s in strategies) + " |")
    lines += ["", f"![Δ loss]({rel(figures['delta_loss'])})", "",
              f"![accuracy matrix]({rel(figures['accuracy_matrix'])})", ""]
    if result["vqa"]:
        first = result["vqa"][strategies[0]]
        fractions = list(first["summary"])
        lines += ["## easy-VQA fine-tuning", "",
                  f"Training pool {first['dataset']['train_pool']} questions, test {first['dataset']['test_size']}; "
                  f"seeds {first['settings']['seeds']}; {first['settings']['num_train_epochs']:g} epochs. "
                  f"Question word-pieces unknown to the checkpoint tokenizer ([UNK]): "
                  f"{100 * first['oov']['token_rate']:.1f}%. Accuracy % (mean ± std over seeds):", "",
                  "| strategy | " + " | ".join(f"{float(f):.0%}" for f in fractions) + " |",
                  "|---|" + "---|" * len(fractions)]
        for strategy in strategies:
            summary = result["vqa"][strategy]["summary"]
            lines.append(f"| {strategy} | " + " | ".join(
                f"{100 * summary[f]['accuracy']['mean']:.1f} ± {100 * summary[f]['accuracy']['std']:.1f}"
                for f in fractions) + " |")
        types = sorted(first["summary"][fractions[0]]["accuracy_by_type"])
        lines += ["", f"Per question type at {float(fractions[0]):.0%} of the data (mean %):", "",
                  "| strategy | " + " | ".join(types) + " |", "|---|" + "---|" * len(types)]
        for strategy in strategies:
            by_type = result["vqa"][strategy]["summary"][fractions[0]]["accuracy_by_type"]
            lines.append(f"| {strategy} | " + " | ".join(_pct(by_type[t]["mean"]) for t in types) + " |")
        lines += ["", f"![easy-VQA]({rel(figures['vqa'])})", ""]
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

    # 1. pre-training, one strategy after the other
    pretraining = {}
    for strategy in args.strategies:
        logger.info("pre-training %s", strategy)
        pretraining[strategy] = run_pretraining(args, strategy)
    after_pretraining = time.perf_counter()

    # 2. image necessity on every checkpoint (same pairs, same masks)
    checkpoints = [os.path.join(args.output_dir, s) for s in args.strategies]
    necessity = image_necessity.main([
        "--checkpoint", *checkpoints, "--checkpoint_names", *args.strategies,
        "--output_dir", os.path.join(args.output_dir, "image_necessity"),
        "--eval_size", str(args.necessity_eval_size), "--data_seed", str(args.seed),
    ])
    after_necessity = time.perf_counter()

    # 3. easy-VQA at every fraction and seed
    vqa = {}
    for strategy, checkpoint in zip(args.strategies, checkpoints):
        logger.info("easy-VQA fine-tuning of %s", strategy)
        vqa[strategy] = vqa_finetuning.main([
            "--checkpoint", checkpoint, "--output_dir", os.path.join(args.output_dir, "vqa", strategy),
            "--train_fraction", *map(str, args.vqa_train_fraction), "--seeds", *map(str, args.vqa_seeds),
            "--max_train_samples", str(args.vqa_max_train_samples),
            "--max_test_samples", str(args.vqa_max_test_samples),
            "--num_train_epochs", str(args.vqa_epochs), "--learning_rate", str(args.vqa_learning_rate),
            "--disable_tqdm", "true",
        ])
    end = time.perf_counter()

    # 4. report
    low = str(min(args.vqa_train_fraction))
    result = {
        "schema_version": 1, "task": "strategy_comparison", "command": command, "machine": describe_machine(),
        "settings": asdict(args), "strategies": {s: STRATEGIES[s] for s in args.strategies},
        "pretraining": pretraining, "image_necessity": necessity, "vqa": vqa,
        "findings": findings(necessity, vqa, args.strategies, low),
        "seconds": {"pretraining": after_pretraining - start, "image_necessity": after_necessity - after_pretraining,
                    "vqa": end - after_necessity, "total": end - start},
    }
    figures = plot_figures(necessity, vqa, args.strategies, args.figures_dir)
    os.makedirs(os.path.dirname(os.path.abspath(args.report_path)), exist_ok=True)
    with open(args.report_path, "w") as handle:
        handle.write(markdown_report(result, figures, args.report_path))
    json_path = os.path.splitext(args.report_path)[0] + ".json"
    with open(json_path, "w") as handle:
        json.dump(json_safe(result), handle, indent=2)
    logger.info("wrote %s and %s in %.1f min", args.report_path, json_path, (end - start) / 60)
    return result


if __name__ == "__main__":
    main()
