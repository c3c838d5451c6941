"""Inference pipelines for MaskVL checkpoints, saved with them as remote code.

Three tasks, each a ``transformers.Pipeline`` (preprocess -> _forward -> postprocess):

* ``image-fill-mask`` (:class:`ImageFillMaskPipeline`, ``AutoModelForMaskedLM``): image + text with a mask
  token -> top-k words with scores; ``compare_blank_image=True`` also scores each word with a blank image
  (image necessity per prediction, Bitton et al. 2021).
* ``image-text-matching`` (:class:`ImageTextMatchingPipeline`, ``AutoModelForPreTraining``): image + candidate
  texts -> ranking by ITC similarity (softmax over the candidates) plus the ITM match probability where the
  checkpoint has that head; with short labels and ``hypothesis_template`` it is zero-shot image classification.
* ``visual-question-answering`` (:class:`MaskVLVisualQuestionAnsweringPipeline`,
  ``AutoModelForVisualQuestionAnswering``): image + question -> top-k answers of the QA head.

Images may be PIL images, local paths or URLs; local files and PIL images are loaded by the same loader as
the training data (``image_loading.load_image``: EXIF orientation applied, pixel cap, special files refused),
URLs and base64 strings by transformers' ``load_image``; a list of inputs is batched
with ``batch_size=...``; ``device=...`` picks CPU or GPU as for every pipeline.

This file imports only torch, PIL, transformers and its flat siblings ``image_loading`` / ``errors``:
``save_pipelines`` copies them next to the weights
and writes ``custom_pipelines`` into ``config.json``, so that on the Hub::

    pipe = pipeline("image-fill-mask", model="owner/name", trust_remote_code=True)

With the package installed, :func:`register_maskvl_pipelines` registers the tasks in-process.
"""

import json
import os
import shutil

import PIL.Image
import torch
from transformers import Pipeline
from transformers.image_utils import load_image
from transformers.pipelines import PIPELINE_REGISTRY

from .errors import MaskVLDataError
from .image_loading import load_image as load_image_file

FILL_MASK_TASK = "image-fill-mask"
MATCHING_TASK = "image-text-matching"
VQA_TASK = "visual-question-answering"


class MaskVLPipelineError(ValueError):
    """Bad input to a MaskVL pipeline; the message names the offending item."""


def _load_rgb(image, timeout=None) -> PIL.Image.Image:
    """PIL image, path or URL -> decoded, upright PIL image (a clear error names the image that failed).
    Local files and PIL images go through the training data's loader; the processor converts to RGB as in
    training (transparency composited onto white)."""
    if image is None:
        raise MaskVLPipelineError("No image given: pass a PIL image, a local path or a URL.")
    if isinstance(image, os.PathLike):
        image = os.fspath(image)
    try:
        if isinstance(image, str) and not os.path.lexists(image):  # a URL or base64 data: transformers fetches it
            image = load_image(image, timeout=timeout)
        return load_image_file(image, "image")
    except MaskVLDataError as error:
        raise MaskVLPipelineError(f"Could not load image: {error}") from error
    except Exception as error:  # load_image raises ValueError / OSError / requests errors
        shown = image if isinstance(image, (str, os.PathLike)) else type(image).__name__
        raise MaskVLPipelineError(f"Could not load image {shown!r}: {error}") from error


def _split_inputs(image, text, text_name: str):
    """Accept ``pipe(image, text=...)``, ``pipe({"image": ..., text_name: ...})`` and lists of either."""
    if isinstance(image, dict):
        if "image" not in image or text_name not in image:
            raise MaskVLPipelineError(f"Input dict must have keys 'image' and {text_name!r}; got {sorted(image)}.")
        return image
    if isinstance(image, (list, tuple)):  # a list of images with one text or one text per image
        if text is None and all(isinstance(item, dict) for item in image):
            return [_split_inputs(item, None, text_name) for item in image]
        texts = text if isinstance(text, (list, tuple)) else [text] * len(image)
        if len(texts) != len(image):
            raise MaskVLPipelineError(f"Got {len(image)} images but {len(texts)} {text_name}s.")
        return [{"image": i, text_name: t} for i, t in zip(image, texts)]
    return {"image": image, text_name: text}


def _shared_parameters(task: str, unexpected: dict, timeout=None, top_k=None) -> tuple[dict, dict]:
    """The (preprocess, postprocess) parameters of every pipeline: ``timeout`` of image loading and ``top_k``
    (a positive integer); an argument the pipeline does not know is a TypeError naming ``task``."""
    if unexpected:
        raise TypeError(f"{task} got unexpected arguments {sorted(unexpected)}.")
    preprocess = {} if timeout is None else {"timeout": timeout}
    postprocess = {}
    if top_k is not None:
        if not isinstance(top_k, int) or top_k < 1:
            raise MaskVLPipelineError(f"top_k must be a positive integer, got {top_k!r}.")
        postprocess["top_k"] = top_k
    return preprocess, postprocess


def _max_text_length(model) -> int:
    return model.config.text_config.max_position_embeddings


class _PairBatch:
    """Per-input values that must not be padded or stacked by the pipeline's collate function."""

    def __init__(self, **values):
        self.__dict__.update(values)


def _unwrap(value) -> list:
    """``_PairBatch`` (batch_size=1) or list of them (batched) -> list."""
    return value if isinstance(value, list) else [value]


def _item(value):
    """One input's share of a ``_forward`` output in ``postprocess``: the pipeline hands over the whole list
    with ``batch_size=1`` and the unbatched element (tensors with a leading 1) when batching."""
    return value[0] if isinstance(value, (list, torch.Tensor)) else value


# ------------------------------------------------------------------------------------------ fill-mask
class ImageFillMaskPipeline(Pipeline):
    """Fill the mask token(s) of a text, conditioned on an image.

    Call: ``pipe(image, text="a [MASK] next to a circle", top_k=5, compare_blank_image=False)``; ``image`` may
    also be a list (batched) or ``{"image": ..., "text": ...}`` dicts.

    Returns, per input, a list of ``{"score", "token", "token_str", "sequence"}`` (best first) for one mask
    token, or one such list per mask token. With ``compare_blank_image=True`` each prediction also has
    ``"score_without_image"``: the probability of the same token when the image is replaced by a blank one
    (the per-channel mean colour, i.e. all-zero ``pixel_values``) -- a large drop means the word needed the image.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False

    def _sanitize_parameters(self, top_k=None, compare_blank_image=None, timeout=None, targets=None, **kwargs):
        preprocess, postprocess = _shared_parameters(FILL_MASK_TASK, kwargs, timeout, top_k)
        if targets is not None:
            raise MaskVLPipelineError("targets= is not supported by image-fill-mask; use top_k.")
        forward = {} if compare_blank_image is None else {"compare_blank_image": compare_blank_image}
        return preprocess, forward, postprocess

    def __call__(self, image, text=None, **kwargs):
        return super().__call__(_split_inputs(image, text, "text"), **kwargs)

    def preprocess(self, inputs, timeout=None):
        text = inputs["text"]
        mask = self.tokenizer.mask_token
        if not isinstance(text, str) or mask not in text:
            raise MaskVLPipelineError(f"Text {text!r} has no mask token {mask!r} to fill.")
        image = _load_rgb(inputs["image"], timeout)
        features = self.processor(images=[image], text=[text], return_tensors="pt")
        if features["input_ids"].shape[1] > _max_text_length(self.model):
            raise MaskVLPipelineError(f"Text {text!r} has {features['input_ids'].shape[1]} tokens; this model "
                                      f"reads at most {_max_text_length(self.model)}.")
        features["pixel_values"] = features["pixel_values"].to(self.dtype)
        return dict(features)

    def _forward(self, model_inputs, compare_blank_image=False):
        logits = self.model(**model_inputs).logits  # (B, T, V)
        outputs = {"input_ids": model_inputs["input_ids"], "logits": logits}
        if compare_blank_image:
            blank = torch.zeros_like(model_inputs["pixel_values"])  # normalised mean colour
            outputs["blank_logits"] = self.model(**{**model_inputs, "pixel_values": blank}).logits
        return outputs

    def postprocess(self, model_outputs, top_k=5):
        input_ids = model_outputs["input_ids"][0]  # (T,)
        positions = (input_ids == self.tokenizer.mask_token_id).nonzero().flatten().tolist()
        probs = model_outputs["logits"][0].float().softmax(-1)  # (T, V)
        blank = model_outputs.get("blank_logits")
        blank_probs = blank[0].float().softmax(-1) if blank is not None else None
        top_k = min(top_k, probs.shape[-1])
        per_mask = []
        for position in positions:
            scores, ids = probs[position].topk(top_k)
            predictions = []
            for score, token in zip(scores.tolist(), ids.tolist()):
                filled = input_ids.clone()
                filled[position] = token
                prediction = {"score": score, "token": token, "token_str": self.tokenizer.decode([token]).strip(),
                              "sequence": self.tokenizer.decode(filled, skip_special_tokens=True)}
                if blank_probs is not None:
                    prediction["score_without_image"] = blank_probs[position, token].item()
                predictions.append(prediction)
            per_mask.append(predictions)
        return per_mask[0] if len(per_mask) == 1 else per_mask


# ------------------------------------------------------------------------------------- image-text matching
class ImageTextMatchingPipeline(Pipeline):
    """Rank candidate texts for an image by ITC similarity (and ITM where the head exists).

    Call: ``pipe(image, candidate_labels=["a red circle", "a blue square"], hypothesis_template="{}")``.
    Returns, per image, ``[{"label", "score", "itc_logit", "itm_score"}]`` sorted by ``score`` (best first):
    ``score`` is the softmax over the candidates of the ITC logits (scaled cosine similarity) -- the ITM
    probability normalised over the candidates for a checkpoint without ITC; ``itm_score`` is the ITM head's
    probability that the pair matches (``None`` without an ITM head), scored independently per pair.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        config = self.model.config
        if not (config.use_itc_head or config.use_itm_head):
            raise MaskVLPipelineError(f"{MATCHING_TASK} needs a checkpoint with an ITC or ITM head; this one has "
                                      "neither (config.use_itc_head = config.use_itm_head = False).")

    def _sanitize_parameters(self, candidate_labels=None, hypothesis_template=None, timeout=None, **kwargs):
        preprocess, _ = _shared_parameters(MATCHING_TASK, kwargs, timeout)
        if candidate_labels is not None:
            preprocess["candidate_labels"] = candidate_labels
        if hypothesis_template is not None:
            preprocess["hypothesis_template"] = hypothesis_template
        return preprocess, {}, {}

    def __call__(self, image, candidate_labels=None, **kwargs):
        images = list(image) if isinstance(image, (list, tuple)) else image
        return super().__call__(images, candidate_labels=candidate_labels, **kwargs)

    def preprocess(self, image, candidate_labels=None, hypothesis_template="{}", timeout=None):
        if isinstance(candidate_labels, str):
            candidate_labels = [candidate_labels]
        if not candidate_labels or not all(isinstance(label, str) and label for label in candidate_labels):
            raise MaskVLPipelineError(f"candidate_labels must be a non-empty list of non-empty strings, "
                                      f"got {candidate_labels!r}.")
        if "{}" not in hypothesis_template:
            raise MaskVLPipelineError(f"hypothesis_template {hypothesis_template!r} has no '{{}}' placeholder.")
        pil = _load_rgb(image, timeout)
        texts = [hypothesis_template.format(label) for label in candidate_labels]
        text = self.processor(text=texts, max_length=_max_text_length(self.model), return_tensors="pt")
        pixel_values = self.processor(images=[pil], return_tensors="pt")["pixel_values"].to(self.dtype)
        return {"pixel_values": pixel_values,
                "pairs": _PairBatch(labels=list(candidate_labels), input_ids=text["input_ids"],
                                    attention_mask=text["attention_mask"])}

    def _forward(self, model_inputs):
        pixel_values = model_inputs["pixel_values"]  # (B, C, H, W)
        pairs = _unwrap(model_inputs["pairs"])
        labels, itc_logits, itm_scores = [], [], []
        for index, pair in enumerate(pairs):
            count = pair.input_ids.shape[0]
            images = pixel_values[index:index + 1].expand(count, -1, -1, -1)  # (K, C, H, W), one image per text
            out = self.model(input_ids=pair.input_ids.to(self.device),
                             attention_mask=pair.attention_mask.to(self.device), pixel_values=images)
            labels.append(tuple(pair.labels))
            # every row holds the same image, so column 0 is each text's similarity to it
            itc_logits.append(out.logits_per_text[:, 0] if out.logits_per_text is not None else None)
            itm_scores.append(out.itm_logits.float().softmax(-1)[:, 1] if out.itm_logits is not None else None)
        return {"labels": labels, "itc_logits": itc_logits, "itm_scores": itm_scores}

    def postprocess(self, model_outputs):
        labels = _item(model_outputs["labels"])
        itc, itm = _item(model_outputs["itc_logits"]), _item(model_outputs["itm_scores"])
        itc = itc.flatten().float() if itc is not None else None
        itm = itm.flatten().float() if itm is not None else None
        scores = itc.softmax(-1) if itc is not None else itm / itm.sum()
        results = [{"label": label, "score": scores[k].item(),
                    "itc_logit": itc[k].item() if itc is not None else None,
                    "itm_score": itm[k].item() if itm is not None else None} for k, label in enumerate(labels)]
        return sorted(results, key=lambda r: -r["score"])


# ----------------------------------------------------------------------------------------------------- VQA
class MaskVLVisualQuestionAnsweringPipeline(Pipeline):
    """Answer a question about an image with the checkpoint's QA head (answers in ``config.id2label``).

    Call: ``pipe(image, question="what colour is the circle?", top_k=3)``. Returns, per input,
    ``[{"answer", "score"}]`` best first. Scores are a softmax over the answers, or independent sigmoids when
    the head was trained on soft scores (``config.problem_type == "multi_label_classification"``).
    """

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False

    def _sanitize_parameters(self, top_k=None, timeout=None, **kwargs):
        preprocess, postprocess = _shared_parameters(VQA_TASK, kwargs, timeout, top_k)
        return preprocess, {}, postprocess

    def __call__(self, image, question=None, **kwargs):
        return super().__call__(_split_inputs(image, question, "question"), **kwargs)

    def preprocess(self, inputs, timeout=None):
        question = inputs["question"]
        if not isinstance(question, str) or not question.strip():
            raise MaskVLPipelineError(f"Question {question!r} must be a non-empty string.")
        image = _load_rgb(inputs["image"], timeout)
        features = self.processor(images=[image], text=[question], max_length=_max_text_length(self.model),
                                  return_tensors="pt")
        features["pixel_values"] = features["pixel_values"].to(self.dtype)
        return dict(features)

    def _forward(self, model_inputs):
        return {"logits": self.model(**model_inputs).logits}  # (B, num_labels)

    def postprocess(self, model_outputs, top_k=5):
        logits = model_outputs["logits"][0].float()
        multi_label = getattr(self.model.config, "problem_type", None) == "multi_label_classification"
        probs = logits.sigmoid() if multi_label else logits.softmax(-1)
        scores, ids = probs.topk(min(top_k, probs.shape[-1]))
        id2label = self.model.config.id2label
        return [{"answer": id2label.get(i, id2label.get(str(i), str(i))), "score": s}
                for s, i in zip(scores.tolist(), ids.tolist())]


# ------------------------------------------------------------------------------------ registration & saving
PIPELINES = {
    FILL_MASK_TASK: (ImageFillMaskPipeline, "AutoModelForMaskedLM"),
    MATCHING_TASK: (ImageTextMatchingPipeline, "AutoModelForPreTraining"),
    VQA_TASK: (MaskVLVisualQuestionAnsweringPipeline, "AutoModelForVisualQuestionAnswering"),
}


def register_maskvl_pipelines() -> None:
    """Register the three tasks with transformers' ``PIPELINE_REGISTRY`` (in this process)."""
    import transformers

    for task, (pipeline_class, auto_name) in PIPELINES.items():
        if PIPELINE_REGISTRY.supported_tasks.get(task, {}).get("impl") is pipeline_class:
            continue
        PIPELINE_REGISTRY.register_pipeline(task, pipeline_class=pipeline_class,
                                            pt_model=getattr(transformers, auto_name), type="multimodal")


def applicable_tasks(config: dict) -> list[str]:
    """The tasks a checkpoint can serve, from its config.json dict (primary task first)."""
    architectures = config.get("architectures") or []
    if any("QuestionAnswering" in name for name in architectures):
        return [VQA_TASK]
    tasks = [FILL_MASK_TASK] if config.get("use_mlm_head", True) else []
    if config.get("use_itc_head") or config.get("use_itm_head"):
        tasks.append(MATCHING_TASK)
    return tasks


def save_pipelines(save_directory, tasks=None) -> dict:
    """Make a saved MaskVL folder serve ``tasks`` as custom pipelines (default: its primary task).

    Copies this module into the folder and writes ``custom_pipelines`` into its ``config.json`` -- what
    ``Pipeline.save_pretrained`` does, without re-saving the weights through a task model (which would drop the
    other heads). ``pipeline(model=folder, trust_remote_code=True)`` needs no task name when exactly one task
    is saved; with several, name the task. Returns the ``custom_pipelines`` dict.
    """
    config_path = os.path.join(save_directory, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{save_directory!r} has no config.json; save the model there first.")
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    possible = applicable_tasks(config)
    tasks = list(tasks) if tasks is not None else possible[:1]
    for task in tasks:
        if task not in PIPELINES:
            raise ValueError(f"Unknown MaskVL pipeline task {task!r}; choose from {sorted(PIPELINES)}.")
        if task not in possible:
            raise ValueError(f"Pipeline task {task!r} does not fit this checkpoint (architectures "
                             f"{config.get('architectures')}); it can serve {possible}.")
    module = os.path.splitext(os.path.basename(__file__))[0]
    config["custom_pipelines"] = {task: {"impl": f"{module}.{PIPELINES[task][0].__name__}",
                                         "pt": [PIPELINES[task][1]], "type": "multimodal"} for task in tasks}
    here = os.path.dirname(os.path.abspath(__file__))
    for name in (os.path.basename(__file__), "image_loading.py", "errors.py"):  # this file and its siblings
        target = os.path.join(save_directory, name)
        if os.path.abspath(target) != os.path.join(here, name):
            shutil.copyfile(os.path.join(here, name), target)
    with open(config_path, "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2, sort_keys=True)
        handle.write("\n")
    return config["custom_pipelines"]


__all__ = [
    "FILL_MASK_TASK", "MATCHING_TASK", "VQA_TASK", "PIPELINES", "ImageFillMaskPipeline", "ImageTextMatchingPipeline",
    "MaskVLVisualQuestionAnsweringPipeline", "MaskVLPipelineError", "register_maskvl_pipelines",
    "applicable_tasks", "save_pipelines",
]
