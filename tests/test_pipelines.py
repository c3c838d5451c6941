"""Custom pipelines: the same answers as the models called by hand, batching, image inputs (PIL, path, URL),
bad inputs, and saving them into a checkpoint folder."""

import functools
import http.server
import json
import re
import threading

import pytest
import torch
from PIL import Image

from maskvl_processing import MaskVLImageProcessor, MaskVLProcessor, train_wordpiece_tokenizer
from maskvl_processing.pipelines_maskvl import (FILL_MASK_TASK, MATCHING_TASK, VQA_TASK, ImageFillMaskPipeline,
                                                ImageTextMatchingPipeline, MaskVLPipelineError,
                                                MaskVLVisualQuestionAnsweringPipeline, save_pipelines)
from maskvl_processing.synthetic_scenes import make_synthetic_dataset
from modeling_maskvl import (MaskVLConfig, MaskVLForImageTextRetrieval, MaskVLForMaskedLM, MaskVLForPreTraining,
                             MaskVLForQuestionAnswering)

IMAGE = 32


def build_processor(captions) -> MaskVLProcessor:
    tokenizer = train_wordpiece_tokenizer(captions, vocab_size=200)
    image_processor = MaskVLImageProcessor(size={"height": IMAGE, "width": IMAGE}, patch_size=8)
    return MaskVLProcessor(image_processor=image_processor, tokenizer=tokenizer)


def build_model(cls, processor, preset="maskvlm-tiny", seed=0, **overrides):
    torch.manual_seed(seed)
    config = MaskVLConfig.from_preset(preset, vision_config={"image_size": IMAGE},
                                      text_config={"vocab_size": len(processor.tokenizer)}, **overrides)
    return cls(config).eval()


@pytest.fixture(scope="module")
def scenes():
    return make_synthetic_dataset(24, seed=3, image_size=48)


@pytest.fixture(scope="module")
def processor(scenes):
    return build_processor(scenes["caption"])


@pytest.fixture(scope="module")
def image_files(scenes, tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i in range(2):
        paths.append(folder / f"scene{i}.png")
        scenes[i]["image"].save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def image_url(image_files):
    """The first image served over HTTP by a local server (URLs go through transformers' load_image)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(image_files[0].parent))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{image_files[0].name}"
    server.shutdown()


def model_inputs(processor, image, text):
    return dict(processor(images=[Image.open(image).convert("RGB")], text=[text], return_tensors="pt"))


# ------------------------------------------------------------------------------------------- fill-mask
def test_fill_mask_gives_the_masked_lm_top_k(processor, image_files):
    model = build_model(MaskVLForMaskedLM, processor)
    pipe = ImageFillMaskPipeline(model=model, processor=processor, device="cpu")
    text = "a red [MASK] above a circle"
    out = pipe(str(image_files[0]), text=text, top_k=4)

    inputs = model_inputs(processor, image_files[0], text)
    with torch.no_grad():
        logits = model(**inputs).logits[0]  # (T, V)
    position = (inputs["input_ids"][0] == processor.tokenizer.mask_token_id).nonzero().item()
    scores, ids = logits.softmax(-1)[position].topk(4)
    assert [p["token"] for p in out] == ids.tolist()
    torch.testing.assert_close(torch.tensor([p["score"] for p in out]), scores)
    for prediction in out:
        assert prediction["token_str"] == processor.tokenizer.decode([prediction["token"]]).strip()
        assert "score_without_image" not in prediction


def test_fill_mask_scores_each_word_without_the_image(processor, image_files):
    model = build_model(MaskVLForMaskedLM, processor)
    pipe = ImageFillMaskPipeline(model=model, processor=processor, device="cpu")
    text = "a [MASK] circle"
    out = pipe(image_files[0], text=text, top_k=3, compare_blank_image=True)
    inputs = model_inputs(processor, image_files[0], text)
    position = (inputs["input_ids"][0] == processor.tokenizer.mask_token_id).nonzero().item()
    with torch.no_grad():
        blank = model(**{**inputs, "pixel_values": torch.zeros_like(inputs["pixel_values"])}).logits[0, position]
    expected = blank.softmax(-1)[[p["token"] for p in out]]
    torch.testing.assert_close(torch.tensor([p["score_without_image"] for p in out]), expected)
    assert any(abs(p["score"] - p["score_without_image"]) > 1e-7 for p in out)  # the image does matter


def test_fill_mask_batches_paths_pil_and_urls_alike(processor, image_files, image_url):
    model = build_model(MaskVLForMaskedLM, processor)
    pipe = ImageFillMaskPipeline(model=model, processor=processor, device="cpu")
    texts = ["a [MASK]", "a small blue [MASK] left of a red square", "the [MASK] is green"]
    images = [Image.open(image_files[0]), str(image_files[0]), image_url]
    batched = pipe(images, text=texts, top_k=3, batch_size=3)
    single = [pipe(Image.open(image_files[0]), text=t, top_k=3) for t in texts]
    assert len(batched) == 3
    for got, expected in zip(batched, single):
        assert [p["token"] for p in got] == [p["token"] for p in expected]
        torch.testing.assert_close(torch.tensor([p["score"] for p in got]),
                                   torch.tensor([p["score"] for p in expected]), rtol=1e-4, atol=1e-6)
    dicts = pipe([{"image": image_files[1], "text": texts[0]}], top_k=3)
    assert [p["token"] for p in dicts[0]] == [p["token"] for p in pipe(image_files[1], text=texts[0], top_k=3)]


def test_fill_mask_with_two_masks_answers_per_mask(processor, image_files):
    pipe = ImageFillMaskPipeline(model=build_model(MaskVLForMaskedLM, processor), processor=processor)
    out = pipe(image_files[0], text="a [MASK] circle and a [MASK]", top_k=2)
    assert len(out) == 2 and all(len(predictions) == 2 for predictions in out)
    assert out[0][0]["token"] != out[1][0]["token"] or out[0][0]["score"] != out[1][0]["score"]


@pytest.mark.parametrize("call, message", [
    (lambda pipe, img: pipe(img, text="a red circle"), "has no mask token"),
    (lambda pipe, img: pipe("/no/such/picture.png", text="a [MASK]"), "picture.png"),
    (lambda pipe, img: pipe(img, text="a [MASK]", top_k=0), "top_k"),
    (lambda pipe, img: pipe([img, img], text=["a [MASK]"]), "2 images but 1 texts"),
    (lambda pipe, img: pipe(img, text="a [MASK]" + " circle" * 80), "at most 64"),
])
def test_fill_mask_bad_input_names_the_item(processor, image_files, call, message):
    pipe = ImageFillMaskPipeline(model=build_model(MaskVLForMaskedLM, processor), processor=processor)
    with pytest.raises(MaskVLPipelineError, match=message):
        call(pipe, str(image_files[0]))


# ---------------------------------------------------------------------------------- image-text matching
def test_matching_ranks_by_itc_and_reports_itm_like_the_retrieval_model(processor, image_files):
    model = build_model(MaskVLForPreTraining, processor)
    retrieval = MaskVLForImageTextRetrieval(model.config).eval()
    missing, _ = retrieval.load_state_dict(model.state_dict(), strict=False)
    assert not missing
    pipe = ImageTextMatchingPipeline(model=model, processor=processor, device="cpu")
    labels = ["red circle", "blue square", "green triangle"]
    out = pipe(image_files[0], candidate_labels=labels, hypothesis_template="a {} .")

    texts = processor(text=[f"a {label} ." for label in labels], return_tensors="pt")
    pixels = processor(images=[Image.open(image_files[0]).convert("RGB")] * 3, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = retrieval(input_ids=texts["input_ids"], attention_mask=texts["attention_mask"],
                             pixel_values=pixels)
    by_label = {r["label"]: r for r in out}
    itc = torch.tensor([by_label[label]["itc_logit"] for label in labels])
    torch.testing.assert_close(itc, expected.logits_per_text[:, 0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.tensor([by_label[label]["itm_score"] for label in labels]),
                               expected.itm_scores, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.tensor([by_label[label]["score"] for label in labels]), itc.softmax(-1))
    assert [r["score"] for r in out] == sorted((r["score"] for r in out), reverse=True)


def test_matching_batches_images(processor, image_files, image_url):
    pipe = ImageTextMatchingPipeline(model=build_model(MaskVLForPreTraining, processor), processor=processor)
    labels = ["a red circle", "a blue square"]
    batched = pipe([image_files[0], image_url, image_files[1]], candidate_labels=labels, batch_size=3)
    for got, image in zip(batched, [image_files[0], image_files[0], image_files[1]]):
        expected = pipe(image, candidate_labels=labels)
        assert [r["label"] for r in got] == [r["label"] for r in expected]
        torch.testing.assert_close(torch.tensor([r["itc_logit"] for r in got]),
                                   torch.tensor([r["itc_logit"] for r in expected]), rtol=1e-4, atol=1e-5)


def test_matching_without_itc_ranks_by_itm(processor, image_files):
    model = build_model(MaskVLForPreTraining, processor, preset="lxmert-tiny")
    pipe = ImageTextMatchingPipeline(model=model, processor=processor)
    out = pipe(image_files[0], candidate_labels=["a red circle", "a blue square"])
    assert all(r["itc_logit"] is None for r in out)
    itm = torch.tensor([r["itm_score"] for r in out])
    torch.testing.assert_close(torch.tensor([r["score"] for r in out]), itm / itm.sum())


def test_matching_needs_an_alignment_head_and_labels(processor, image_files):
    with pytest.raises(MaskVLPipelineError, match="ITC or ITM head"):
        ImageTextMatchingPipeline(model=build_model(MaskVLForPreTraining, processor, preset="mlim-tiny"),
                                  processor=processor)
    pipe = ImageTextMatchingPipeline(model=build_model(MaskVLForPreTraining, processor), processor=processor)
    with pytest.raises(MaskVLPipelineError, match="candidate_labels"):
        pipe(image_files[0], candidate_labels=[])
    with pytest.raises(MaskVLPipelineError, match="placeholder"):
        pipe(image_files[0], candidate_labels=["a"], hypothesis_template="a photo")


# ------------------------------------------------------------------------------------------------- VQA
@pytest.mark.parametrize("problem_type", [None, "multi_label_classification"])
def test_vqa_returns_the_qa_heads_top_answers(processor, image_files, problem_type):
    answers = ["red", "blue", "circle", "two"]
    model = build_model(MaskVLForQuestionAnswering, processor, num_labels=4,
                        id2label=dict(enumerate(answers)), label2id={a: i for i, a in enumerate(answers)},
                        problem_type=problem_type)
    pipe = MaskVLVisualQuestionAnsweringPipeline(model=model, processor=processor)
    question = "what colour is the circle ?"
    out = pipe(image_files[0], question=question, top_k=2)
    with torch.no_grad():
        logits = model(**model_inputs(processor, image_files[0], question)).logits[0]
    probs = logits.sigmoid() if problem_type else logits.softmax(-1)
    scores, ids = probs.topk(2)
    assert [r["answer"] for r in out] == [answers[i] for i in ids.tolist()]
    torch.testing.assert_close(torch.tensor([r["score"] for r in out]), scores)
    batched = pipe([image_files[0], image_files[1]], question=[question, "how many shapes ?"], top_k=2, batch_size=2)
    assert [r["answer"] for r in batched[0]] == [r["answer"] for r in out]
    with pytest.raises(MaskVLPipelineError, match="non-empty string"):
        pipe(image_files[0], question="  ")


# ------------------------------------------------------------------------------------------ saving them
def test_save_pipelines_writes_config_entries_and_copies_the_code(processor, tmp_path):
    build_model(MaskVLForPreTraining, processor).save_pretrained(tmp_path)
    assert save_pipelines(tmp_path) == {FILL_MASK_TASK: {"impl": "pipelines_maskvl.ImageFillMaskPipeline",
                                                         "pt": ["AutoModelForMaskedLM"], "type": "multimodal"}}
    saved = save_pipelines(tmp_path, [FILL_MASK_TASK, MATCHING_TASK])
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["custom_pipelines"] == saved and set(saved) == {FILL_MASK_TASK, MATCHING_TASK}
    assert saved[MATCHING_TASK]["pt"] == ["AutoModelForPreTraining"]
    code = (tmp_path / "pipelines_maskvl.py").read_text()
    assert "class ImageTextMatchingPipeline" in code
    imports = re.findall(r"^(?:from|import) ([\w.]+)", code, re.MULTILINE)
    siblings = {name.lstrip(".") for name in imports if name.startswith(".")}
    assert siblings == {"errors", "image_loading"} and all((tmp_path / f"{name}.py").exists() for name in siblings)
    assert {name.split(".")[0] for name in imports if not name.startswith(".")} <= {
        "json", "os", "shutil", "PIL", "torch", "transformers"}
    with pytest.raises(ValueError, match="does not fit this checkpoint"):
        save_pipelines(tmp_path, [VQA_TASK])
    with pytest.raises(ValueError, match="Unknown MaskVL pipeline task 'captioning'"):
        save_pipelines(tmp_path, ["captioning"])


def test_registered_tasks_work_in_process_with_model_objects(processor, image_files):
    from transformers import pipeline

    from maskvl_processing.pipelines_maskvl import register_maskvl_pipelines

    register_maskvl_pipelines()
    model = build_model(MaskVLForPreTraining, processor)
    pipe = pipeline(MATCHING_TASK, model=model, processor=processor)
    assert isinstance(pipe, ImageTextMatchingPipeline)
    direct = ImageTextMatchingPipeline(model=model, processor=processor)
    labels = ["a red circle", "a blue square"]
    assert pipe(image_files[0], candidate_labels=labels) == direct(image_files[0], candidate_labels=labels)
