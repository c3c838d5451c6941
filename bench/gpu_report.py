"""Summary of `bench/gpu_check.sh`: samples/s, peak memory and MFU of the pre-training run and of the bench step.

MFU (model FLOPs utilisation) = counted model FLOPs per second / the GPU's bf16 dense peak. Model FLOPs are the
matmul-class FLOPs of one training step (forward + backward, 2 per multiply-add) counted by
``torch.utils.flop_counter.FlopCounterMode`` (``bench_measure.count_flops``) on batches made by the pre-training
script's collator with its default masking, for the model the run saved (its ``config.json``), at the run's
per-device batch size. The pre-training rate is the Trainer's ``train_samples_per_second`` (the whole loop: data
loading, masking, optimizer, logging). Its peak memory is the Trainer's memory tracker
(``--skip_memory_metrics false``): the allocation at ``Trainer.__init__`` + what training left allocated + how far
above that it peaked (``torch.cuda`` allocator on a GPU, process RSS on a CPU).

    python bench/gpu_report.py --pretrain_dir OUT/pretrain --train_step_json OUT/train_step.json --device cuda
    python bench/gpu_report.py ... --device cpu --peak_tflops 0.1     # the dry run: an assumed peak
"""

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser

from bench_measure import bf16_dense_peak_flops, markdown_table, resolve_device, step_flops, write_json
from bench_setup import TrainStep

from maskvl_processing import CaptionTagger, MaskVLDataCollator, MaskVLImageProcessor, load_tokenizer
from maskvl_processing.synthetic_scenes import make_synthetic_dataset
from maskvl_train.arguments import MaskingArguments
from modeling_maskvl import MaskVLConfig, MaskVLForPreTraining


@dataclass
class GpuReportArguments:
    pretrain_dir: str = field(metadata={"help": "Output folder of the pre-training run (config.json, train_results.json)."})
    train_step_json: str | None = field(default=None, metadata={"help": "JSON written by bench/train_step.py."})
    device: str = field(default="cuda", metadata={"help": "cuda (bf16 autocast) or cpu (the dry run)."})
    peak_tflops: float | None = field(default=None, metadata={
        "help": "bf16 dense peak in TFLOP/s (default: looked up from the GPU's name; required on a CPU)."})
    flop_batches: int = field(default=2, metadata={"help": "Batches over which the FLOPs of a step are averaged."})
    output_json: str | None = field(default=None)
    output_md: str | None = field(default=None)

    def __post_init__(self):
        if self.peak_tflops is not None and self.peak_tflops <= 0:
            raise ValueError(f"--peak_tflops must be positive, got {self.peak_tflops}")
        if self.flop_batches < 1:
            raise ValueError(f"--flop_batches must be at least 1, got {self.flop_batches}")


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} does not exist (did the run finish?)")
    return json.loads(path.read_text())


def pretrain_step_flops(pretrain_dir: Path, batch_size: int, max_length: int, device: str, batches: int) -> float:
    """Counted FLOPs of one training step of the saved model's architecture (fresh weights) at ``batch_size``, on
    synthetic scenes tagged with the run's own tokenizer and masked like the pre-training script masks."""
    config = MaskVLConfig.from_pretrained(pretrain_dir)
    tokenizer = load_tokenizer(str(pretrain_dir))
    image_processor = MaskVLImageProcessor.from_pretrained(pretrain_dir)
    scenes = make_synthetic_dataset(batches * batch_size, seed=0, image_size=config.vision_config.image_size)
    tagged = scenes.map(CaptionTagger(tokenizer, max_length=max_length), batched=True, with_indices=True)
    keep = ("image", "input_ids", "word_ids", "token_word_class", "token_concreteness")
    features = [{key: row[key] for key in keep} for row in tagged]
    collator = MaskVLDataCollator(tokenizer, image_processor, seed=0, max_length=max_length,
                                  **MaskingArguments().collator_kwargs(config))
    step_batches = [collator(features[i * batch_size:(i + 1) * batch_size]) for i in range(batches)]
    torch.manual_seed(0)
    model = MaskVLForPreTraining(config).train()
    return step_flops(TrainStep("pretrain", model, step_batches, device))


def peak_memory_bytes(metrics: dict) -> tuple[float | None, str]:
    """Peak training memory from the Trainer's memory metrics (GPU allocator first, else CPU RSS)."""
    for kind, label in (("gpu", "GPU allocator"), ("cpu", "CPU RSS")):
        keys = (f"init_mem_{kind}_alloc_delta", f"train_mem_{kind}_alloc_delta", f"train_mem_{kind}_peaked_delta")
        if all(key in metrics for key in keys):
            return float(sum(max(0, metrics[key]) for key in keys)), label
    return None, "not recorded (run with --skip_memory_metrics false)"


def main(argv=None) -> dict:
    (args,) = HfArgumentParser(GpuReportArguments).parse_args_into_dataclasses(argv)
    device = resolve_device(args.device)
    if args.peak_tflops is not None:
        peak, peak_source = args.peak_tflops * 1e12, f"given: {args.peak_tflops:g} TFLOP/s"
    elif device == "cuda":
        name = torch.cuda.get_device_name()
        peak = bf16_dense_peak_flops(name)
        peak_source = f"{name}: {peak / 1e12:g} TFLOP/s bf16 dense"
    else:
        raise ValueError("--peak_tflops is required on a CPU (there is no bf16 dense peak to look up)")

    pretrain_dir = Path(args.pretrain_dir)
    metrics = read_json(pretrain_dir / "train_results.json", "pre-training metrics")
    run_args = read_json(pretrain_dir / "training_args.json", "pre-training arguments")
    batch_size, max_length = int(run_args["per_device_train_batch_size"]), int(run_args["max_seq_length"])
    flops = pretrain_step_flops(pretrain_dir, batch_size, max_length, device, args.flop_batches)
    samples_per_s = float(metrics["train_samples_per_second"])
    memory, memory_source = peak_memory_bytes(metrics)
    pretrain = {"samples_per_s": samples_per_s, "flops_per_step": flops, "batch_size": batch_size,
                "flops_per_sample": flops / batch_size, "achieved_flops_per_s": flops / batch_size * samples_per_s,
                "peak_memory_bytes": memory, "peak_memory_source": memory_source,
                "train_runtime_s": metrics.get("train_runtime")}
    pretrain["mfu"] = pretrain["achieved_flops_per_s"] / peak

    rows = [["pretrain.py (whole loop)", f"{samples_per_s:.1f}", f"{flops / batch_size / 1e9:.4g}",
             f"{pretrain['achieved_flops_per_s'] / 1e12:.4g}", f"{100 * pretrain['mfu']:.3g}%",
             "–" if memory is None else f"{memory / 2**20:.0f} ({memory_source})"]]
    bench = {}
    if args.train_step_json:
        step_report = read_json(Path(args.train_step_json), "train_step.py output")
        size = step_report["size"]
        for name, res in step_report["comparison"]["models"].items():
            sps = res["samples_per_s"]["median"]
            achieved = res["flops_per_step"] / size["batch_size"] * sps
            bench[name] = {"samples_per_s": sps, "flops_per_sample": res["flops_per_step"] / size["batch_size"],
                           "achieved_flops_per_s": achieved, "mfu": achieved / peak,
                           "peak_memory_bytes": res["memory"]["peak"], "vs_flava": res.get("vs_flava")}
            rows.append([f"train_step.py: {name}", f"{sps:.1f}", f"{bench[name]['flops_per_sample'] / 1e9:.4g}",
                         f"{achieved / 1e12:.4g}", f"{100 * bench[name]['mfu']:.3g}%",
                         f"{res['memory']['peak'] / 2**20:.0f} (params + optimizer + step peak)"])
    table = markdown_table(["run", "samples/s", "GFLOP/sample", "model TFLOP/s", "MFU", "peak memory (MB)"], rows)
    text = f"# GPU check\n\nMFU against {peak_source}.\n\n{table}\n"
    print(text)
    report = {"arguments": asdict(args), "peak_flops": peak, "peak_source": peak_source, "pretrain": pretrain,
              "train_step": bench}
    write_json(args.output_json, report)
    if args.output_md:
        Path(args.output_md).write_text(text)
    return report


if __name__ == "__main__":
    sys.exit(main() and 0)
