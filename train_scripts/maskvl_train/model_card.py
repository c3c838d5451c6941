"""Model cards for MaskVL checkpoints, rendered from ``model_cards/maskvl_model_card.md``.

The pre-training script calls :func:`write_model_card` at the end of training (with the run's
:func:`pretraining_summary`); ``publish.py`` renders the card again with the Hub repo id and the evaluation
scripts' JSON results::

    from maskvl_train.model_card import write_model_card
    write_model_card(output_dir, training_summary={
        "preset": "maskvlm-tiny", "dataset": None, "text_masking": "objects", "image_masking": "block",
        "joint_masking": "maskvlm", "max_steps": 200, "num_train_examples": 2000, "seed": 0,
        "metrics": {"eval_loss": 3.1, "eval_mlm_accuracy": 0.41, "frequency_baseline_accuracy": 0.12},
    }, eval_results={"image_necessity": {...}})

The card is a ``huggingface_hub.ModelCard``: YAML metadata (license, ``library_name``, ``pipeline_tag``, tags,
data sets, base models, ``model-index`` results, widget) and sections on the model, how to load it, the
training data and masking, metrics, limitations and citations. Nothing machine-specific goes in it: local
paths become their last component, and :func:`check_no_machine_details` refuses a card that still holds a
local path, the user name or a Hub token.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from maskvl_processing.pipelines_maskvl import FILL_MASK_TASK, MATCHING_TASK, VQA_TASK

from .checkpoints import read_safetensors_header
from .scrub import check_no_machine_details, last_component, looks_local, scrub

TEMPLATE = Path(__file__).resolve().parents[2] / "model_cards" / "maskvl_model_card.md"
SUMMARY_FILE = "training_summary.json"
EXAMPLE_IMAGE_URL = "https://huggingface.co/datasets/huggingface/documentation-images/resolve/main/coco_sample.png"
EXAMPLE_QUESTION = "How many cats are there?"
EXAMPLE_LABELS = ["a photo of cats", "a photo of a dog", "a photo of a car"]

PRESET_DESCRIPTIONS = {
    "maskvlm": "MaskVLM, Kwon et al. 2023: ViT + BERT towers, cross-modality encoders, MLM + MIM + ITC + ITM",
    "mlim": "MLIM, Arici et al. 2021: single-stream transformer, conv patch embedder, MLM + pixel reconstruction",
    "lxmert": "LXMERT-style co-attention model as in Bitton et al. 2021, MLM + ITM",
}
TEXT_MASKING_DESCRIPTIONS = {
    "random": "each token masked independently (BERT 80/10/10)",
    "whole_word": "whole words masked at random",
    "stop_words": "one stop-word or punctuation mark per caption (Bitton et al. 2021, evaluation mask)",
    "content_words": "one content word per caption, all its occurrences (Bitton et al. 2021)",
    "objects": "one object noun per caption, all its occurrences (Bitton et al. 2021)",
    "attributes": "one attribute adjective per caption (Bitton et al. 2021)",
    "relationships": "one relation word (verb / preposition) per caption (Bitton et al. 2021)",
    "top_concrete": "one of the three most concrete words, weighted 0.55 / 0.30 / 0.15 (Bitton et al. 2021)",
}
IMAGE_MASKING_DESCRIPTIONS = {
    "none": "images are not masked",
    "random": "random patches (MAE-style ratio)",
    "block": "block-wise masking (BEiT-style blocks of patches; MaskVLM masks 32x32-pixel blocks at 224 px)",
}
JOINT_MASKING_DESCRIPTIONS = {
    "independent": "text and image masked independently",
    "maskvlm": "one modality masked per pair, reconstructed from the other (MaskVLM)",
    "mlim": "modality-aware masking: heavy image, heavy text or light both, per sample (MLIM)",
}
METRIC_DESCRIPTIONS = {
    "eval_loss": "total pre-training loss (weighted sum of the objectives) on the held-out split",
    "eval_mlm_loss": "masked-language-modelling cross-entropy on the held-out split",
    "eval_mim_loss": "masked-image-modelling pixel loss on the held-out split",
    "eval_itc_loss": "image-text contrastive loss on the held-out split",
    "eval_itm_loss": "image-text matching loss on the held-out split",
    "eval_mlm_accuracy": "top-1 accuracy of the masked tokens on the held-out split, with the image",
    "eval_itm_accuracy": "image-text matching accuracy (true pairs vs pairs with a swapped image), held-out split",
    "frequency_baseline_accuracy": ("accuracy of always predicting the most frequent masked token of the "
                                    "training split (what a model that ignores the input reaches)"),
}
EVALUATION_DESCRIPTIONS = {
    "image_necessity": ("`evaluate_image_necessity.py` (Bitton et al. 2021): masked tokens scored with the real "
                        "image and with a blank image; Acc@5 with the image and the loss increase without it"),
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


# ------------------------------------------------------------------------------------------------ public API
def write_model_card(output_dir: str | os.PathLike, training_summary: dict,
                     eval_results: dict | None = None, *, repo_id: str | None = None) -> Path:
    """Render the card of the checkpoint in ``output_dir`` and write ``output_dir/README.md``.

    Also writes ``output_dir/training_summary.json`` (local paths reduced to their last component) so that
    ``publish.py`` can render the card again later with the repo id and evaluation results.
    Returns the path of the README.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = scrub_summary(training_summary)
    card = render_model_card(output_dir, summary, eval_results, repo_id=repo_id)
    (output_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    path = output_dir / "README.md"
    card.save(path)
    return path


def render_model_card(checkpoint_dir: str | os.PathLike, training_summary: dict,
                      eval_results: dict | None = None, *, repo_id: str | None = None,
                      checkpoint_name: str | None = None) -> ModelCard:
    """Build the ``ModelCard`` of a checkpoint folder (config.json is read when present).

    ``checkpoint_name`` picks this checkpoint's entry in evaluation files that cover several (default: the
    folder's name)."""
    checkpoint_dir = Path(checkpoint_dir)
    if not isinstance(training_summary, dict):
        raise TypeError(f"training_summary must be a dict, got {type(training_summary).__name__}.")
    summary = scrub_summary(training_summary)
    config = _read_json(checkpoint_dir / "config.json") or {}
    preset = summary.get("preset") or config.get("preset") or "custom"
    model_name = repo_id.split("/")[-1] if repo_id else checkpoint_dir.name
    model_ref = repo_id or f"./{checkpoint_dir.name}"
    dataset_id, dataset_description = describe_dataset(summary.get("dataset"))
    task = VQA_TASK if _is_vqa(config) else FILL_MASK_TASK
    mask_token = (_read_json(checkpoint_dir / "tokenizer_config.json") or {}).get("mask_token") or "[MASK]"
    if isinstance(mask_token, dict):
        mask_token = mask_token.get("content", "[MASK]")

    dataset = {"type": dataset_id or "local",
               "name": dataset_id or re.sub(r"[`*\[\]]", "", dataset_description.split(" (")[0])}
    eval_entries = {name: normalise_eval_result(name, result, dataset, checkpoint_name or checkpoint_dir.name)
                    for name, result in (eval_results or {}).items()}
    results = eval_results_to_model_index(summary, eval_entries, dataset)
    card_data = ModelCardData(
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="visual-question-answering" if task == VQA_TASK else "fill-mask",
        tags=_tags(preset, summary),
        datasets=[dataset_id] if dataset_id else None,
        base_model=_base_models(summary) or None,
        model_name=model_name,
        eval_results=results or None,
        widget=_widget(task, mask_token),
    )
    text, vision, cross = (config.get(k) or {} for k in ("text_config", "vision_config", "cross_modal_config"))
    heads = [name.upper() for name in ("mlm", "mim", "itc", "itm") if config.get(f"use_{name}_head")]
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=model_name,
        preset=preset,
        preset_description=PRESET_DESCRIPTIONS.get(preset.replace("-tiny", ""), "custom configuration")
        + (" -- tiny test size" if preset.endswith("-tiny") else ""),
        architecture=", ".join(config.get("architectures") or ["MaskVLForPreTraining"]),
        num_parameters=_format_count(count_parameters(checkpoint_dir)),
        text_tower=_tower(text),
        vision_tower=_tower(vision) + (f", {vision.get('patch_embedder', 'linear')} patch embedder" if vision else ""),
        fusion=(f"{cross.get('fusion_type')}, {cross.get('num_hidden_layers')} layers, hidden size "
                f"{cross.get('hidden_size')}") if cross else "unknown",
        heads=", ".join(heads) or "none",
        image_size=vision.get("image_size", "?"),
        patch_size=vision.get("patch_size", "?"),
        max_text_length=text.get("max_position_embeddings", "?"),
        usage_snippet=usage_snippet(model_ref, task, mask_token),
        # only snippets that run on this folder: pipelines only where they are saved (publish saves them)
        pipelines_snippet=(_pipelines_snippet(model_ref, _saved_pipelines(config, task), mask_token)
                           if config.get("custom_pipelines") else ""),
        pipeline_list=", ".join(f"`{t}`" for t in _saved_pipelines(config, task)),
        auto_snippet=_auto_snippet(model_ref, task),
        dataset_description=dataset_description,
        num_train_examples=summary.get("num_train_examples", "not recorded"),
        training_length=_training_length(summary),
        text_masking=_policy_name(summary.get("text_masking")),
        text_masking_description=_describe_policy(summary.get("text_masking"), TEXT_MASKING_DESCRIPTIONS),
        image_masking=_policy_name(summary.get("image_masking")),
        image_masking_description=_describe_policy(summary.get("image_masking"), IMAGE_MASKING_DESCRIPTIONS),
        joint_masking=_policy_name(summary.get("joint_masking")),
        joint_masking_description=_describe_policy(summary.get("joint_masking"), JOINT_MASKING_DESCRIPTIONS),
        seed=summary.get("seed", "not recorded"),
        metrics_section=metrics_section(summary.get("metrics") or {}, eval_entries),
        size_limitation=_size_limitation(preset, summary),
        prediction_limitation=(
            "The answers are limited to the answer vocabulary of the fine-tuning data (`config.id2label`)."
            if task == VQA_TASK else
            "The masked-word predictions reflect the captions seen in training, with their vocabulary and biases; "
            "compare predictions with and without the image (`image-fill-mask` with `compare_blank_image=True`) "
            "to see how much a prediction depends on the image."),
    )
    try:
        check_no_machine_details(str(card), extra=[str(checkpoint_dir.resolve())])
    except ValueError as error:
        raise ValueError(f"Model card of {checkpoint_dir.name}: {error}") from None
    return card


def pretraining_summary(model, data_args, masking, training_args, metrics, num_train, num_eval) -> dict:
    """The pre-training run as the model card reports it (`write_model_card`); local paths are reduced there."""
    def policy(kind):
        return {"name": masking[f"{kind}_policy"], **masking[f"{kind}_policy_kwargs"]}

    final = {k: v for k, v in metrics.items() if k.endswith(("loss", "accuracy")) and "baseline" not in k}
    final["frequency_baseline_accuracy"] = metrics.get("eval_frequency_baseline_accuracy")
    return {
        "preset": model.config.preset,
        "dataset": data_args.dataset_name or data_args.train_dir or data_args.webdataset or "synthetic_scenes",
        "dataset_description": data_args.source_description,
        "text_masking": policy("text"), "image_masking": policy("image"), "joint_masking": policy("joint"),
        "itm_negatives": masking["itm_negatives"] or "none",  # "in_batch", a swap probability, or "none"
        "max_steps": training_args.max_steps,
        "num_train_epochs": None if training_args.max_steps > 0 else training_args.num_train_epochs,
        "metrics": final, "num_train_examples": num_train, "num_eval_examples": num_eval, "seed": training_args.seed,
    }


def usage_snippet(model_ref: str, task: str = FILL_MASK_TASK, mask_token: str = "[MASK]") -> str:
    """The three lines that load the checkpoint and answer (shown first in the card, run by the tests)."""
    if task == VQA_TASK:
        call = f'pipe({EXAMPLE_IMAGE_URL!r}, question={EXAMPLE_QUESTION!r})'
    else:
        call = f'pipe({EXAMPLE_IMAGE_URL!r}, text="two {mask_token} lying on a pink blanket")'
    return "\n".join([
        "from transformers import pipeline",
        f'pipe = pipeline("{task}", model="{model_ref}", trust_remote_code=True)',
        f"print({call})",
    ])


def load_eval_results(paths) -> dict:
    """Read evaluation JSON files into ``{file stem: content}`` (the form ``eval_results`` takes)."""
    results = {}
    for path in paths:
        path = Path(path)
        try:
            results[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"Evaluation results file {path.name!r} does not exist ({path}).") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"Evaluation results file {path.name!r} is not valid JSON: {err}") from None
        if not isinstance(results[path.stem], dict):
            raise ValueError(f"Evaluation results file {path.name!r} must hold a JSON object, "
                             f"got {type(results[path.stem]).__name__}.")
    return results


def eval_results_to_model_index(training_summary: dict, eval_entries: dict, dataset: dict) -> list[EvalResult]:
    """The run's metrics (on ``dataset``) and the normalised evaluation entries as ``model-index`` results."""
    entries = []
    metrics = [{"type": _metric_type(k), "name": k, "value": round(v, 4)}
               for k, v in sorted((training_summary.get("metrics") or {}).items()) if _is_number(v)]
    if metrics:
        entries.append({"task": {"type": "fill-mask", "name": "Masked language modelling with the image"},
                        "dataset": {**dataset, "split": "validation"}, "metrics": metrics})
    for name in sorted(eval_entries):
        entries += eval_entries[name]
    results = []
    for entry in entries:
        task, data = entry["task"], entry["dataset"]
        for metric in entry["metrics"]:
            if _is_number(metric.get("value")):
                results.append(EvalResult(
                    task_type=task["type"], task_name=task.get("name"), dataset_type=data["type"],
                    dataset_name=data["name"], dataset_split=data.get("split"), metric_type=metric["type"],
                    metric_name=metric.get("name", metric["type"]), metric_value=float(metric["value"])))
    return results


def normalise_eval_result(name: str, result: Any, default_dataset: dict, checkpoint_name: str | None = None) -> list:
    """One evaluation script's JSON -> model-index result entries ``{"task", "dataset", "metrics": [...]}``.

    Accepted forms, first match wins:

    * entries already in model-index form: ``{"model_index": [...]}``, or per checkpoint
      ``{"checkpoints": [{"name", "checkpoint", "model_index": [...]}, ...]}`` (``evaluate_image_necessity.py``;
      with several checkpoints the one named like the published folder is taken);
    * ``{"task": {"type", "name"}, "dataset": {"type", "name", "split"}, "metrics": {metric: number}}``;
    * any nested dict of numbers, flattened to metric names joined with ``/``.

    Local paths in data-set names are reduced to their last component.
    """
    if not isinstance(result, dict):
        raise ValueError(f"Evaluation result {name!r} must be a JSON object, got {type(result).__name__}.")
    entries = _given_model_index(name, result, checkpoint_name)
    if entries is None:
        task = result.get("task") if isinstance(result.get("task"), dict) else {}
        data = result.get("dataset") if isinstance(result.get("dataset"), dict) else {}
        flat = list(_flatten_numbers(result["metrics"] if isinstance(result.get("metrics"), dict) else result))
        entries = [{"task": {"type": task.get("type", "visual-question-answering" if "vqa" in name.lower()
                                              else "fill-mask"), "name": task.get("name", name)},
                    "dataset": {**default_dataset, **data},
                    "metrics": [{"type": metric, "name": metric, "value": value} for metric, value in flat]}]
    for entry in entries:
        if not isinstance(entry, dict) or not {"task", "dataset", "metrics"} <= set(entry):
            raise ValueError(f"Evaluation result {name!r}: model-index entries need task, dataset and metrics; "
                             f"got {entry!r:.200}.")
        entry["dataset"] = {k: last_component(v) if isinstance(v, str) and looks_local(v) else v
                            for k, v in {**default_dataset, **entry["dataset"]}.items()}
    if not any(_is_number(m.get("value")) for entry in entries for m in entry["metrics"]):
        raise ValueError(f"Evaluation result {name!r} holds no numeric metric.")
    return entries


def _given_model_index(name: str, result: dict, checkpoint_name: str | None) -> list | None:
    if isinstance(result.get("model_index"), list):
        return copy.deepcopy(result["model_index"])
    checkpoints = [c for c in result.get("checkpoints") or [] if isinstance(c, dict) and "model_index" in c]
    if not checkpoints:
        return None
    if len(checkpoints) > 1:
        checkpoints = [c for c in checkpoints if checkpoint_name in
                       (c.get("name"), last_component(str(c.get("checkpoint", ""))))]
        if len(checkpoints) != 1:
            names = [c.get("name") for c in result["checkpoints"]]
            raise ValueError(f"Evaluation result {name!r} covers several checkpoints {names}; none (or more than "
                             f"one) is named {checkpoint_name!r}. Evaluate the published checkpoint on its own.")
    return copy.deepcopy(checkpoints[0]["model_index"])


def metrics_section(metrics: dict, eval_entries: dict) -> str:
    """Markdown tables of the run's metrics and the evaluation results, each with how it was measured.

    ``eval_entries`` maps each evaluation's name to its normalised model-index entries."""
    lines = []
    numeric = {k: v for k, v in metrics.items() if _is_number(v)}
    if numeric:
        lines += ["Pre-training run, measured by the training script on its held-out split:", "",
                  "| metric | value | how it was measured |", "|---|---|---|"]
        for name, value in sorted(numeric.items()):
            lines.append(f"| `{name}` | {_format_value(value)} | {_describe_metric(name)} |")
    for result_name, entries in sorted(eval_entries.items()):
        how = EVALUATION_DESCRIPTIONS.get(result_name, f"reported by the `{result_name}` evaluation script")
        for entry in entries:
            data = entry["dataset"]
            split = f", split `{data['split']}`" if data.get("split") else ""
            lines += ["", f"**{entry['task'].get('name', result_name)}** on `{data['name']}`{split} -- {how}", "",
                      "| metric | value |", "|---|---|"]
            lines += [f"| {m.get('name', m['type'])} | {_format_value(m['value'])} |" for m in entry["metrics"]
                      if _is_number(m.get("value"))]
    return "\n".join(lines) if lines else "No metrics were recorded for this checkpoint."


def describe_dataset(dataset: Any) -> tuple[str | None, str]:
    """(Hub data set id or None, words for the card). Local paths are never written out in full."""
    if dataset in (None, "", "synthetic", "synthetic_scenes"):
        return None, ("the package's procedurally generated synthetic scenes "
                      "(`maskvl_processing.synthetic_scenes`): coloured shapes with captions")
    if isinstance(dataset, (list, tuple)):
        return None, "webdataset shards (" + ", ".join(last_component(str(d)) for d in dataset) + ")"
    text = str(dataset)
    if looks_local(text):
        return None, f"a local data set (`{last_component(text)}`)"
    if _HUB_ID.match(text):
        return text, f"[{text}](https://huggingface.co/datasets/{text})"
    return None, f"`{last_component(text)}`"


def scrub_summary(summary: dict) -> dict:
    """A copy of the summary whose local paths become ``./<last component>`` (recursively): still recognisably
    local (never taken for a Hub id), without the machine's directory layout. Tokens are left for
    :func:`check_no_machine_details` to refuse (loudly) rather than dropped."""
    return scrub(dict(summary), local_prefix="./", secrets=False)


def count_parameters(checkpoint_dir: Path) -> int | None:
    """Number of parameters in the folder's safetensors files, read from their headers (no weights loaded)."""
    total, found = 0, False
    for path in sorted(Path(checkpoint_dir).glob("*.safetensors")):
        header, _ = read_safetensors_header(path)
        for name, info in header.items():
            if name != "__metadata__":
                total += math.prod(info["shape"])
                found = True
    return total if found else None


# ------------------------------------------------------------------------------------------------ helpers
def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _is_vqa(config: dict) -> bool:
    return any("QuestionAnswering" in a for a in config.get("architectures") or [])


def _saved_pipelines(config: dict, task: str) -> list[str]:
    saved = list((config.get("custom_pipelines") or {}).keys())
    return saved or [task]


def _pipelines_snippet(model_ref: str, tasks: list[str], mask_token: str) -> str:
    lines = ["from transformers import pipeline"]
    if FILL_MASK_TASK in tasks:
        lines += ["", f'fill = pipeline("{FILL_MASK_TASK}", model="{model_ref}", trust_remote_code=True)',
                  "# top-k words for the mask, each also scored with a blank image (image necessity)",
                  f'fill({EXAMPLE_IMAGE_URL!r}, text="two {mask_token} on a blanket", top_k=5, '
                  "compare_blank_image=True)"]
    if MATCHING_TASK in tasks:
        lines += ["", f'match = pipeline("{MATCHING_TASK}", model="{model_ref}", trust_remote_code=True)',
                  "# zero-shot classification by ITC similarity (and ITM score where the head exists)",
                  f"match({EXAMPLE_IMAGE_URL!r}, candidate_labels={EXAMPLE_LABELS!r})"]
    if VQA_TASK in tasks:
        lines += ["", f'vqa = pipeline("{VQA_TASK}", model="{model_ref}", trust_remote_code=True)',
                  f"vqa([{EXAMPLE_IMAGE_URL!r}], question={EXAMPLE_QUESTION!r}, top_k=3)"]
    return "\n".join(lines)


def _auto_snippet(model_ref: str, task: str) -> str:
    auto = "AutoModelForVisualQuestionAnswering" if task == VQA_TASK else "AutoModelForMaskedLM"
    return "\n".join([
        f"from transformers import AutoProcessor, {auto}",
        "",
        f'processor = AutoProcessor.from_pretrained("{model_ref}", trust_remote_code=True)',
        f'model = {auto}.from_pretrained("{model_ref}", trust_remote_code=True)',
    ])


def _widget(task: str, mask_token: str) -> list[dict]:
    if task == VQA_TASK:
        return [{"src": EXAMPLE_IMAGE_URL, "text": EXAMPLE_QUESTION}]
    return [{"src": EXAMPLE_IMAGE_URL, "text": f"two {mask_token} lying on a pink blanket"}]


def _tags(preset: str, summary: dict) -> list[str]:
    tags = ["maskvl", "vision-language", "masked-language-modeling", "custom_code",
            preset.replace("-tiny", "")]
    for key in ("text_masking", "image_masking", "joint_masking"):
        name = _policy_name(summary.get(key))
        if name not in ("not recorded", "none"):
            tags.append(f"{key.replace('_', '-')}-{name.replace('_', '-')}")
    return list(dict.fromkeys(tags))


def _base_models(summary: dict) -> list[str]:
    names = list(summary.get("base_models") or [])
    names += [summary.get(k) for k in ("text_model_name_or_path", "vision_model_name_or_path")]
    return [n for n in dict.fromkeys(names) if isinstance(n, str) and _HUB_ID.match(n) and "/" in n
            and not looks_local(n)]


def _tower(sub: dict) -> str:
    if not sub:
        return "unknown"
    return (f"{sub.get('model_type', '?')}, {sub.get('num_hidden_layers', '?')} layers, hidden size "
            f"{sub.get('hidden_size', '?')}" + (f", vocabulary {sub['vocab_size']}" if "vocab_size" in sub else ""))


def _training_length(summary: dict) -> str:
    parts = []
    if summary.get("max_steps") not in (None, -1):
        parts.append(f"{summary['max_steps']} optimisation steps")
    for key in ("epochs", "num_train_epochs"):
        if summary.get(key) is not None:
            parts.append(f"{summary[key]} epochs")
            break
    return ", ".join(parts) or "not recorded"


def _policy_name(policy: Any) -> str:
    if policy is None:
        return "not recorded"
    if isinstance(policy, dict):
        return str(policy.get("name") or policy.get("policy") or "custom")
    return str(policy)


def _describe_policy(policy: Any, descriptions: dict) -> str:
    text = descriptions.get(_policy_name(policy), "custom policy")
    if isinstance(policy, dict):
        params = {k: v for k, v in policy.items() if k not in ("name", "policy")}
        if params:
            text += " (" + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + ")"
    return text


def _metric_type(name: str) -> str:
    """Hub metric type of a Trainer metric name: ``eval_mlm_accuracy`` -> ``accuracy``."""
    for kind in ("accuracy", "loss"):
        if name.endswith(kind):
            return kind
    return name


def _describe_metric(name: str) -> str:
    if name in METRIC_DESCRIPTIONS:
        return METRIC_DESCRIPTIONS[name]
    if name.endswith("loss"):
        return "loss on the held-out split"
    if "accuracy" in name:
        return "accuracy on the held-out split"
    return "reported by the training script"


def _size_limitation(preset: str, summary: dict) -> str:
    n = summary.get("num_train_examples")
    size = f"{n} training examples" if n is not None else "a small data set"
    if preset.endswith("-tiny"):
        return (f"This is a tiny configuration trained on {size}: it demonstrates the pipeline end to end and "
                "is not a useful vision-and-language model.")
    return (f"Trained on {size}; the papers pre-train on millions of image-text pairs. Fine-tune before "
            "using it on a downstream task.")


def _flatten_numbers(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten_numbers(value, name + "/")
        elif _is_number(value):
            yield name, float(value)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _format_value(value: float) -> str:
    return f"{value:.4g}"


def _format_count(count: int | None) -> str:
    if count is None:
        return "unknown (no safetensors weights found)"
    return f"{count / 1e6:.1f}M" if count >= 1e5 else f"{count:,}"
