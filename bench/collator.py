"""Data benchmark: the MaskVL collator per masking policy, against transformers' MLM collator, as a
fraction of a tiny training step; and the caption-tagging throughput of each word-class backend.

* Collator: ``MaskVLDataCollator`` with every text policy (no image masking), every image policy and both
  joint policies (with the masking ``train_scripts/pretrain.py`` pairs them with), on the same tagged
  synthetic captions; each twice: on raw images decoded and processed on the fly (as the pre-training script
  does) and on pre-processed ``pixel_values`` (masking, padding and stacking only). transformers'
  ``DataCollatorForLanguageModeling`` (15% random tokens, text only) runs on the same ``input_ids``; the
  pre-processed run is the like-for-like comparison with it.
* Fraction of a step: collate time per batch over the time of one training step of the tiny preset the
  policy is used with (``maskvlm-tiny`` at the pre-training script's defaults, 32x32 images, batch 32;
  ``mlim-tiny`` for the MLIM joint policy). The pre-training script collates in the training process
  (``dataloader_num_workers=0``), so this fraction adds directly to the step time.
* Tagging: captions/s of ``CaptionTagger`` per backend (pattern = textblob's bundled tagger, dataset = word
  classes given by the data set, spaCy when installed), called directly and through ``datasets.map``.

Collators and training steps are timed in the same process, in interleaved rounds (``bench_measure``).

Usage (from the repository root; about 2 minutes on a quiet 2-core CPU):

    python bench/collator.py
    python bench/collator.py --output_json bench/results/collator.json
    python bench/collator.py --rounds 2 --num_examples 256 --tagging_examples 500   # quick smoke run
"""

import statistics
import time
from dataclasses import asdict, dataclass, field

import datasets
from transformers import DataCollatorForLanguageModeling, HfArgumentParser

from bench_measure import (check_at_least_one, describe_machine, interleaved_times, load_average, machine_info,
                           markdown_table, paired_ratio, parse_bench_arguments, write_json)
from bench_setup import BenchSize, caption_data, preset_step
from maskvl_processing import (
    IMAGE_MASKING_POLICIES,
    TEXT_MASKING_POLICIES,
    CaptionTagger,
    MaskVLDataCollator,
)
from maskvl_processing.synthetic_scenes import make_synthetic_dataset
from maskvl_train.arguments import MaskingArguments

from modeling_maskvl import MaskVLConfig

TARGET_STEP_FRACTION = 0.05
HF_MLM = "transformers DataCollatorForLanguageModeling (text only)"


@dataclass
class CollatorBenchArguments:
    batch_size: int = field(default=32, metadata={"help": "Examples per batch (the pre-training default)."})
    image_size: int = field(default=32, metadata={"help": "Image side of the tiny step (pre-training default)."})
    patch_size: int = field(default=8, metadata={"help": "Patch side (the tiny presets')."})
    max_length: int = field(default=40, metadata={"help": "Tagger truncation (pre-training --max_seq_length)."})
    num_examples: int = field(default=512, metadata={"help": "Tagged synthetic examples the collators cycle over."})
    rounds: int = field(default=5, metadata={"help": "Quiet rounds wanted."})
    batches_per_round: int = field(default=4, metadata={"help": "Batches (or training steps) per measurement."})
    time_budget: float = field(default=90.0, metadata={"help": "No new round after this many seconds."})
    quiet_load: float = field(default=0.25, metadata={"help": "Max CPU cores used by other processes in a quiet round."})
    tagging_examples: int = field(default=2000, metadata={"help": "Captions per tagging measurement."})
    tagging_repeats: int = field(default=3, metadata={"help": "Tagging measurements per backend (fresh captions)."})
    seed: int = field(default=0)
    output_json: str | None = field(default=None, metadata={"help": "Write every number measured here."})

    def __post_init__(self):
        check_at_least_one(self, ("batch_size", "num_examples", "rounds", "batches_per_round", "tagging_examples",
                                  "tagging_repeats"))
        if self.num_examples < self.batch_size:
            raise ValueError(f"--num_examples ({self.num_examples}) must be at least --batch_size ({self.batch_size})")


class CollateCall:
    """One collator call on the next ``batch_size`` features (cycling), as a zero-argument callable."""

    def __init__(self, collate, features: list, batch_size: int):
        self.collate, self.features, self.batch_size = collate, features, batch_size
        self._start = 0

    def __call__(self):
        if self._start + self.batch_size > len(self.features):
            self._start = 0
        out = self.collate(self.features[self._start:self._start + self.batch_size])
        self._start += self.batch_size
        return out


def collator_variants(data, args) -> dict[str, tuple[dict, str]]:
    """name -> (MaskVLDataCollator kwargs, preset of the tiny step it is paired with)."""
    tiny = {p: MaskVLConfig.from_preset(p, vision_config={"image_size": args.image_size})
            for p in ("maskvlm-tiny", "mlim-tiny")}
    variants = {f"text: {name}": ({"text_policy": name}, "maskvlm-tiny") for name in TEXT_MASKING_POLICIES}
    for name in IMAGE_MASKING_POLICIES:
        if name != "none":
            variants[f"image: {name}"] = ({"image_policy": name}, "maskvlm-tiny")
    variants["image: block (BEiT-style)"] = ({"image_policy": "block", "image_policy_kwargs": {"block_pixels": None}},
                                             "maskvlm-tiny")
    variants["joint: maskvlm (pre-training default)"] = (MaskingArguments().collator_kwargs(tiny["maskvlm-tiny"]),
                                                         "maskvlm-tiny")
    variants["joint: mlim (pre-training default)"] = (MaskingArguments().collator_kwargs(tiny["mlim-tiny"]),
                                                      "mlim-tiny")
    return variants


PREPROCESSED = " [pre-processed pixels]"


def collate_callables(data, args) -> tuple[dict, dict]:
    """name -> callable, and name -> preset of the paired tiny step.

    Every policy runs twice: on raw images (decoded and processed on the fly, as the pre-training script does)
    and on pre-processed ``pixel_values`` (what is left: padding + masking + stacking)."""
    pixel_values = data.image_processor([f["image"] for f in data.features], return_tensors="pt")["pixel_values"]
    preprocessed = [{**{k: v for k, v in f.items() if k != "image"}, "pixel_values": p.numpy()}
                    for f, p in zip(data.features, pixel_values)]
    calls, pairs = {}, {}
    common = {"max_length": args.max_length, "seed": args.seed}
    for name, (kwargs, preset) in collator_variants(data, args).items():
        for suffix, features in (("", data.features), (PREPROCESSED, preprocessed)):
            collator = MaskVLDataCollator(data.tokenizer, data.image_processor, **common, **kwargs)
            calls[name + suffix] = CollateCall(collator, features, args.batch_size)
            pairs[name + suffix] = preset
    hf = DataCollatorForLanguageModeling(data.tokenizer, mlm_probability=0.15, seed=args.seed, return_tensors="pt")
    calls[HF_MLM] = CollateCall(hf, [{"input_ids": f["input_ids"]} for f in data.features], args.batch_size)
    pairs[HF_MLM] = "maskvlm-tiny"
    return calls, pairs


# --------------------------------------------------------------------------------------------- tagging
def tagging_throughput(tokenizer, args) -> dict:
    """captions/s of each tagger backend: direct calls on 1000-caption batches and via datasets.map."""
    results = {}
    backends = ["pattern", "dataset"]
    try:
        import spacy  # noqa: F401

        backends.append("spacy")
    except ImportError:
        results["spacy"] = {"note": "spaCy not installed (optional backend: pip install maskvl[spacy])"}
    for backend in backends:
        direct, mapped, first_call = [], [], None
        for repeat in range(args.tagging_repeats):
            dataset = make_synthetic_dataset(args.tagging_examples, seed=1000 + repeat, image_size=32)
            dataset = dataset.select_columns(["caption", "words", "word_classes"])
            try:
                tagger = CaptionTagger(tokenizer, backend=backend, max_length=args.max_length)
                start = time.perf_counter()
                tagger(dataset[:1])  # loads the POS tagger / pipeline (counted separately)
                first_call = time.perf_counter() - start if first_call is None else first_call
                start = time.perf_counter()
                for i in range(0, len(dataset), 1000):
                    tagger(dataset[i:i + 1000], list(range(i, min(i + 1000, len(dataset)))))
                direct.append(len(dataset) / (time.perf_counter() - start))
                start = time.perf_counter()
                dataset.map(tagger, batched=True, with_indices=True, load_from_cache_file=False,
                            keep_in_memory=True, desc=f"tagging ({backend})")
                mapped.append(len(dataset) / (time.perf_counter() - start))
            except (ImportError, OSError) as error:  # e.g. spaCy without the pipeline
                results[backend] = {"note": f"unavailable: {error}"}
                break
        else:
            results[backend] = {"direct_median": statistics.median(direct), "direct_min": min(direct),
                                "direct_max": max(direct), "map_median": statistics.median(mapped),
                                "map_min": min(mapped), "map_max": max(mapped), "first_call_seconds": first_call}
    return results


# ------------------------------------------------------------------------------------------------ main
def run(args: CollatorBenchArguments) -> dict:
    size = BenchSize(image_size=args.image_size, patch_size=args.patch_size, text_length=args.max_length,
                     batch_size=args.batch_size, vocab_size=1000)
    data = caption_data(size, args.num_examples, args.seed)
    calls, pairs = collate_callables(data, args)
    steps = {f"step: {p}": preset_step(p, data, args.batch_size, args.image_size, seed=args.seed)
             for p in sorted(set(pairs.values()))}
    timings = interleaved_times({**calls, **steps}, args.rounds, args.batches_per_round, warmup=1,
                                desc="collators", quiet_load=args.quiet_load, time_budget=args.time_budget)
    rounds, note = timings.selected_rounds(min_quiet=3)
    results = {}
    for name in [*calls, *steps]:
        seconds = timings.select(name, rounds)
        results[name] = {"seconds_per_batch": statistics.median(seconds), "samples_per_s":
                         args.batch_size / statistics.median(seconds),
                         "samples_per_s_min": args.batch_size / max(seconds),
                         "samples_per_s_max": args.batch_size / min(seconds)}
    for name, preset in pairs.items():
        step = f"step: {preset}"
        results[name]["step"] = preset
        # per round: collate seconds per batch / step seconds
        results[name]["step_fraction"] = paired_ratio(timings.select(step, rounds), timings.select(name, rounds))
    hf = timings.select(HF_MLM, rounds)
    for name in calls:
        results[name]["vs_hf_mlm"] = paired_ratio(timings.select(name, rounds), hf)
    return {"results": results, "pairs": pairs, "rounds_note": note, "rounds_run": timings.rounds,
            "quiet": len(timings.quiet_rounds) >= min(3, timings.rounds),
            "max_foreign_load": timings.max_foreign_load(rounds), "tagging": tagging_throughput(data.tokenizer, args)}


def collator_table(report: dict) -> str:
    """One row per policy: raw images (full collator) and pre-processed pixels (masking + padding only)."""
    headers = ["collator", "samples/s, raw images", "fraction of tiny step, raw images", "samples/s, pre-processed",
               "fraction of tiny step, pre-processed", "vs HF MLM collator (pre-processed)", "tiny step"]
    results, rows = report["results"], []

    def fraction(res):
        frac = res["step_fraction"]
        verdict = " ✓" if frac["median"] < TARGET_STEP_FRACTION else " ✗"
        return f"{100 * frac['median']:.1f}% ({100 * frac['min']:.1f}–{100 * frac['max']:.1f}){verdict}"

    def rate(res):
        return f"{res['samples_per_s']:.0f} ({res['samples_per_s_min']:.0f}–{res['samples_per_s_max']:.0f})"

    for name, res in results.items():
        if name.startswith("step: ") or name.endswith(PREPROCESSED) or name == HF_MLM:
            continue
        pre = results[name + PREPROCESSED]
        rows.append([name, rate(res), fraction(res), rate(pre), fraction(pre), f"{pre['vs_hf_mlm']['median']:.2f}×",
                     res["step"]])
    hf = results[HF_MLM]
    rows.append([HF_MLM, "–", "–", rate(hf), f"{100 * hf['step_fraction']['median']:.1f}%", "1.00×", hf["step"]])
    return markdown_table(headers, rows)


def steps_table(report: dict) -> str:
    rows = [[name[len("step: "):], f"{1000 * res['seconds_per_batch']:.1f}", f"{res['samples_per_s']:.0f}"]
            for name, res in report["results"].items() if name.startswith("step: ")]
    return markdown_table(["tiny training step", "ms per step", "samples/s"], rows)


def tagging_table(report: dict) -> str:
    rows = []
    for backend, res in report["tagging"].items():
        if "note" in res:
            rows.append([backend, "–", "–", "–", res["note"]])
        else:
            rows.append([backend, f"{res['direct_median']:.0f} ({res['direct_min']:.0f}–{res['direct_max']:.0f})",
                         f"{res['map_median']:.0f} ({res['map_min']:.0f}–{res['map_max']:.0f})",
                         f"{res['first_call_seconds']:.2f}", ""])
    return markdown_table(["tagger backend", "captions/s, direct (median, min–max)", "captions/s, datasets.map",
                           "first call s", "note"], rows)


def target_lines(report: dict) -> list[str]:
    """Per input kind: how many policies stay under the target fraction, and the worst one."""
    lines = []
    for kind, pick in (("raw images (full collator)", lambda n: not n.endswith(PREPROCESSED)),
                       ("pre-processed pixels (masking + padding)", lambda n: n.endswith(PREPROCESSED))):
        fractions = {name: res["step_fraction"]["median"] for name, res in report["results"].items()
                     if not name.startswith("step: ") and name != HF_MLM and pick(name)}
        met = [name for name, frac in fractions.items() if frac < TARGET_STEP_FRACTION]
        worst = max(fractions, key=fractions.get)
        verdict = "MET" if len(met) == len(fractions) else f"MISSED for {len(fractions) - len(met)} of {len(fractions)} policies"
        lines.append(f"- {kind}: {verdict} "
                     f"({len(met)} of {len(fractions)} under {100 * TARGET_STEP_FRACTION:.0f}%; worst: {worst.replace(PREPROCESSED, '')} "
                     f"at {100 * fractions[worst]:.1f}% of a {report['results'][worst]['step']} step)")
    return lines


def main(argv=None):
    (args,) = parse_bench_arguments(HfArgumentParser(CollatorBenchArguments), argv)
    datasets.disable_caching()
    info, load_before = machine_info(), load_average()
    print(f"# MaskVL collator and tagging benchmark\n\nMachine: {describe_machine(info)}; load average before: "
          f"{load_before}\nBatch {args.batch_size}, {args.image_size}x{args.image_size} images, "
          f"{args.patch_size}x{args.patch_size} patches, captions tagged to at most {args.max_length} tokens\n",
          flush=True)
    report = run(args)
    print(f"## Collators ({report['rounds_note']}; max foreign load {(report['max_foreign_load'] or 0):.2f} cores)\n")
    print(collator_table(report) + "\n")
    print(steps_table(report) + "\n")
    caveat = "" if report["quiet"] else " (measured without enough quiet rounds: rerun on an idle machine)"
    print(f"Target: collator under {100 * TARGET_STEP_FRACTION:.0f}% of a tiny training step{caveat}\n"
          + "\n".join(target_lines(report)) + "\n")
    print(f"## Caption tagging ({args.tagging_examples} synthetic captions per measurement, "
          f"{args.tagging_repeats} measurements)\n")
    print(tagging_table(report) + "\n")
    print(f"Load average after: {load_average()}")
    write_json(args.output_json, {"machine": info, "arguments": asdict(args), "load_average_before": load_before,
                                  "load_average_after": load_average(), **report})
    return report


if __name__ == "__main__":
    main()
