"""Diagnostic (docs/pretraining.md, "Does the model use the image?", item 10): one pre-training setting over seeds, as
mean and 95% t-interval per metric, and the paired difference of two settings run on the same seeds.

Each setting is `name=checkpoint,checkpoint,...` (pre-training output folders, one per seed, in the same seed order
for every setting). Metrics come from each folder's `all_results.json` (held-out losses and the image-use check of
`pretrain.py`) and, with `--attribute_types FILE ...`, from the JSON lines that `attribute_types.py` printed for
those folders (colour / object Acc@1 with the scene, and among the type's words with the scene minus the empty scene).

    python bench/diagnostics/seed_table.py cls=outputs/a0,outputs/a1,outputs/a2 mean=outputs/b0,outputs/b1,outputs/b2 \\
        --attribute_types outputs/a.types.txt outputs/b.types.txt
"""
import argparse
import json
from pathlib import Path

from maskvl_train.statistics import holds, seed_summary

METRICS = {  # name: (how to read it from one checkpoint's record, points?)
    "held-out ITC loss": (lambda r: r["eval_itc_loss"], False),
    "held-out MLM accuracy": (lambda r: r["eval_mlm_accuracy"], False),
    "held-out ITM accuracy": (lambda r: r["eval_itm_accuracy"], False),
    "attribute gap (points)": (lambda r: 100 * (r["eval_image_acc1_attribute"] - r["eval_blank_acc1_attribute"]), True),
    "object gap (points)": (lambda r: 100 * (r["eval_image_acc1_object"] - r["eval_blank_acc1_object"]), True),
    "colour-word gap (points)": (lambda r: 100 * (r["eval_image_acc1_colour"] - r["eval_blank_acc1_colour"]), True),
    "colour Acc@1 with the scene": (lambda r: r["types"]["colour"]["with_image"], False),
    "colour among type: scene − empty (points)": (
        lambda r: 100 * (r["types"]["colour"]["with_image_among_type"] - r["types"]["colour"]["empty_scene_among_type"]),
        True),
    "object among type: scene − empty (points)": (
        lambda r: 100 * (r["types"]["object"]["with_image_among_type"] - r["types"]["object"]["empty_scene_among_type"]),
        True),
}


def read_types(files: list[str]) -> dict:
    """{checkpoint folder (resolved): attribute_types result} from attribute_types.py outputs."""
    found = {}
    for name in files:
        for number, line in enumerate(Path(name).read_text().splitlines(), 1):
            if line.startswith("JSON "):
                try:
                    record = json.loads(line[5:])
                except json.JSONDecodeError as error:
                    raise SystemExit(f"{name}, line {number}: not a JSON record of attribute_types.py ({error})")
                found[str(Path(record.pop("checkpoint")).resolve())] = record
    return found


def read_record(folder: str, types: dict) -> dict:
    path = Path(folder) / "all_results.json"
    if not path.is_file():
        raise SystemExit(f"{folder}: no all_results.json (not a finished pretrain.py output folder)")
    record = json.loads(path.read_text())
    record["types"] = types.get(str(Path(folder).resolve()))
    return record


def value(metric: str, record: dict):
    try:
        return METRICS[metric][0](record)
    except (KeyError, TypeError):  # a metric this record lacks (no attribute_types line, an older run)
        return None


def fmt(summary: dict) -> str:
    if summary["mean"] is None:
        return "–"
    if summary["ci95"] is None:
        return f"{summary['mean']:.3f}"
    low, high = summary["ci95"]
    return f"{summary['mean']:.3f} [{low:.3f}, {high:.3f}]"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("settings", nargs="+", help="name=checkpoint,checkpoint,... (one folder per seed)")
    p.add_argument("--attribute_types", nargs="*", default=[], help="outputs of attribute_types.py")
    args = p.parse_args()
    types = read_types(args.attribute_types)
    settings = {}
    for spec in args.settings:
        name, sep, folders = spec.partition("=")
        if not sep or not folders:
            raise SystemExit(f"setting {spec!r}: expected name=checkpoint,checkpoint,...")
        settings[name] = [read_record(f, types) for f in folders.split(",")]
    names = list(settings)
    header = ["metric"] + [f"{n} (n={len(settings[n])})" for n in names]
    if len(names) == 2:
        header += [f"{names[1]} − {names[0]}, paired by seed", "holds?"]
    print("| " + " | ".join(header) + " |")
    print("|---" * len(header) + "|")
    for metric in METRICS:
        columns = {n: [value(metric, r) for r in records] for n, records in settings.items()}
        cells = [fmt(seed_summary(columns[n])) for n in names]
        if len(names) == 2:
            a, b = columns[names[0]], columns[names[1]]
            pairs = [y - x for x, y in zip(a, b) if x is not None and y is not None]
            difference = seed_summary(pairs)
            verdict = ("–" if difference["ci95"] is None else "yes, higher" if holds(difference["ci95"], "positive")
                       else "yes, lower" if holds(difference["ci95"], "negative") else "no")
            cells += [fmt(difference), verdict]
        print(f"| {metric} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
