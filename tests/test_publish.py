"""publish.py: validation that names each problem's file, the dry-run folder (exactly what would be uploaded)
loading without the package, and the upload call into huggingface_hub."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from isolation import run_isolated
from maskvl_processing import MaskVLImageProcessor, MaskVLProcessor, train_wordpiece_tokenizer
from maskvl_processing.synthetic_scenes import make_synthetic_dataset
from maskvl_train import publishing as publish
from maskvl_train.model_card import write_model_card
from modeling_maskvl import (MaskVLConfig, MaskVLForMaskedLM, MaskVLForPreTraining, MaskVLForQuestionAnswering,
                             MaskVLModel)

SUMMARY = {"preset": "maskvlm-tiny", "dataset": "synthetic_scenes", "text_masking": {"name": "objects"},
           "image_masking": {"name": "block"}, "joint_masking": {"name": "maskvlm"}, "max_steps": 40,
           "metrics": {"eval_loss": 5.4321, "eval_mlm_accuracy": 0.1875, "frequency_baseline_accuracy": 0.0938},
           "num_train_examples": 64, "seed": 0}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A training output folder as pretrain.py leaves it: model, processor, card, plus Trainer leftovers."""
    folder = tmp_path_factory.mktemp("runs") / "maskvlm-objects"
    scenes = make_synthetic_dataset(24, seed=5, image_size=48)
    tokenizer = train_wordpiece_tokenizer(scenes["caption"], vocab_size=200)
    torch.manual_seed(0)
    config = MaskVLConfig.from_preset("maskvlm-tiny", vision_config={"image_size": 32},
                                      text_config={"vocab_size": len(tokenizer)})
    MaskVLForPreTraining(config).save_pretrained(folder)
    MaskVLProcessor(image_processor=MaskVLImageProcessor(size={"height": 32, "width": 32}, patch_size=8),
                    tokenizer=tokenizer).save_pretrained(folder)
    write_model_card(folder, SUMMARY)
    (folder / "training_args.json").write_text(json.dumps({"learning_rate": 0.002, "seed": 0}))
    (folder / "all_results.json").write_text(json.dumps({"eval_loss": 5.4321}))
    (folder / "training_args.bin").write_bytes(b"pickle")
    (folder / "checkpoint-40").mkdir()
    (folder / "checkpoint-40" / "optimizer.pt").write_bytes(b"pickle")
    scenes[0]["image"].save(folder.parent / "scene.png")
    return folder


def broken_copy(checkpoint, tmp_path, change):
    folder = tmp_path / checkpoint.name
    shutil.copytree(checkpoint, folder)
    change(folder)
    return folder


def edit_json(path: Path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_training_output_is_valid(checkpoint):
    assert publish.validate_checkpoint(checkpoint) == []


@pytest.mark.parametrize("change, message", [
    (lambda f: (f / "processor_config.json").unlink(), r"processor_config\.json: missing"),
    (lambda f: (f / "pytorch_model.bin").write_bytes(b"x"), r"pytorch_model\.bin: pickled weights"),
    (lambda f: (f / "model.safetensors").unlink(), r"model\.safetensors: no safetensors weights"),
    (lambda f: (f / "fusion.py").unlink(), r"modeling_maskvl\.py: imports fusion\.py, which is missing"),
    (lambda f: (f / "modeling_maskvl.py").unlink(), r"config\.json: auto_map\['AutoModel'\] needs modeling_maskvl\.py"),
    (lambda f: edit_json(f / "config.json", lambda c: c["auto_map"].pop("AutoModelForMaskedLM")),
     r"config\.json: auto_map has no entry for AutoModelForMaskedLM"),
    (lambda f: edit_json(f / "config.json", lambda c: c.update(model_type="bert")), r"config\.json: model_type"),
    (lambda f: edit_json(f / "config.json", lambda c: c["text_config"].update(vocab_size=50)),
     r"tokenizer\.json: \d+ tokens but the model's vocabulary has 50"),
    (lambda f: edit_json(f / "processor_config.json", lambda c: c["image_processor"].update(size={"height": 64,
                                                                                                  "width": 64})),
     r"processor_config\.json: image size .* differs"),
    (lambda f: (f / "processing_maskvl.py").write_text("from maskvl_processing import MaskVLProcessor\n"),
     r"processing_maskvl\.py: does not define MaskVLProcessor"),
    (lambda f: (f / "tokenizer.json").unlink(), r"tokenizer\.json: no tokenizer saved"),
])
def test_each_problem_names_its_file(checkpoint, tmp_path, change, message):
    folder = broken_copy(checkpoint, tmp_path, change)
    problems = publish.validate_checkpoint(folder)
    assert any(re.search(message, p) for p in problems), problems
    with pytest.raises(publish.CheckpointError, match=message):
        publish.main(["--checkpoint", str(folder), "--repo_id", "someone/m", "--dry_run", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_a_token_in_any_staged_file_stops_the_publication(checkpoint, tmp_path):
    token = "hf_" + "Tk9" * 12
    folder = broken_copy(checkpoint, tmp_path, lambda f: edit_json(f / "training_summary.json",
                                                                  lambda s: s.update(hub_token=token)))
    with pytest.raises(publish.CheckpointError, match=r"training_summary\.json: .*token") as error:
        publish.main(["--checkpoint", str(folder), "--repo_id", "someone/m", "--dry_run", str(tmp_path / "out")])
    assert token not in str(error.value)
    assert not (tmp_path / "out").exists()  # nothing half-staged is left behind


def test_bad_arguments_are_refused(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="OWNER/NAME"):
        publish.main(["--checkpoint", str(checkpoint), "--repo_id", "no-owner", "--dry_run", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="--pipelines"):
        publish.main(["--checkpoint", str(checkpoint), "--repo_id", "a/b", "--pipelines", "captioning"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        publish.main(["--checkpoint", str(checkpoint), "--repo_id", "a/b", "--dry_run", str(tmp_path / "full"),
                      "--skip_load_check"])


@pytest.mark.slow
def test_dry_run_folder_works_without_the_package(checkpoint, tmp_path):
    """The Done-when check: staged folder -> AutoModel, AutoProcessor, pipeline(model=folder) and the card's
    three-line snippet in a process that cannot import maskvl, with the installed package's outputs."""
    out = tmp_path / "maskvlm-objects-hub"
    # publish's own package-free load check is tested on the VQA checkpoint; here the test does it itself
    assert publish.main(["--checkpoint", str(checkpoint), "--repo_id", "someone/maskvlm-objects",
                         "--dry_run", str(out), "--skip_load_check"]) == out
    staged = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    code = {p.name for p in checkpoint.glob("*.py")}
    assert {"modeling_maskvl.py", "configuration_maskvl.py", "processing_maskvl.py"} <= code
    assert staged == code | {"README.md", "config.json", "model.safetensors", "processor_config.json",
                             "tokenizer.json", "tokenizer_config.json", "training_summary.json",
                             "training_args.json", "pipelines_maskvl.py"}  # no Trainer state, no all_results
    config = json.loads((out / "config.json").read_text())
    assert list(config["custom_pipelines"]) == ["image-fill-mask"]
    card = (out / "README.md").read_text()
    assert "0.1875" in card and str(checkpoint.parent) not in card

    # the same answers from the installed package
    image = str(checkpoint.parent / "scene.png")
    text = "a red [MASK] above a circle"
    processor = MaskVLProcessor.from_pretrained(out)
    inputs = processor(images=[Image.open(image).convert("RGB")], text=[text], return_tensors="pt")
    with torch.no_grad():
        logits = MaskVLForMaskedLM.from_pretrained(out).eval()(**inputs).logits[0]
        pooled = MaskVLModel.from_pretrained(out).eval()(**inputs).pooler_output[0]
    position = (inputs["input_ids"][0] == processor.tokenizer.mask_token_id).nonzero().item()
    top = logits.softmax(-1)[position].topk(5)

    snippet = re.search(r"## How to use.*?```python\n(.*?)```", card, re.DOTALL).group(1)
    assert len(snippet.strip().splitlines()) == 3
    snippet_text = re.search(r'text="([^"]+)"', snippet).group(1)  # the card's own example sentence
    inputs = processor(images=[Image.open(image).convert("RGB")], text=[snippet_text], return_tensors="pt")
    with torch.no_grad():
        snippet_logits = MaskVLForMaskedLM.from_pretrained(out).eval()(**inputs).logits[0]
    position = (inputs["input_ids"][0] == processor.tokenizer.mask_token_id).nonzero().item()
    snippet_top = snippet_logits.softmax(-1)[position].topk(5)
    snippet = snippet.replace("someone/maskvlm-objects", str(out))
    snippet = re.sub(r"'https://[^']+'", repr(image), snippet).replace("print(", "snippet_result = (")
    result = run_isolated(f"""
        import json, torch
        from PIL import Image
        torch.set_num_threads(1)
        from transformers import AutoModel, AutoProcessor, pipeline
        folder = {str(out)!r}
        model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        inputs = processor(images=[Image.open({image!r}).convert("RGB")], text=[{text!r}], return_tensors="pt")
        with torch.no_grad():
            pooled = model(**inputs).pooler_output[0]
        pipe = pipeline(model=folder, trust_remote_code=True)
        predictions = pipe({image!r}, text={text!r}, top_k=5)
        {snippet.strip().replace(chr(10), chr(10) + ' ' * 8)}
        try:
            import modeling_maskvl  # noqa: F401
            importable = True
        except ImportError:
            importable = False
        print(json.dumps({{"modules": [type(o).__module__ for o in (model, processor, pipe, pipe.model)],
                          "classes": [type(o).__name__ for o in (model, processor, pipe)],
                          "pooled": pooled.tolist(), "tokens": [p["token"] for p in predictions],
                          "scores": [p["score"] for p in predictions],
                          "snippet_tokens": [p["token"] for p in snippet_result], "importable": importable}}))
    """, cwd=tmp_path)
    assert result["importable"] is False
    assert all(module.startswith("transformers_modules.") for module in result["modules"]), result["modules"]
    assert result["classes"] == ["MaskVLModel", "MaskVLProcessor", "ImageFillMaskPipeline"]
    torch.testing.assert_close(torch.tensor(result["pooled"]), pooled, rtol=1e-5, atol=1e-6)
    assert result["tokens"] == top.indices.tolist()
    torch.testing.assert_close(torch.tensor(result["scores"]), top.values, rtol=1e-5, atol=1e-7)
    assert result["snippet_tokens"] == snippet_top.indices.tolist()


class FakeHfApi:
    """Records the calls publish.py makes into huggingface_hub (there is no network here)."""

    calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        files = {str(p.relative_to(kwargs["folder_path"])): p.read_bytes()
                 for p in Path(kwargs["folder_path"]).rglob("*") if p.is_file()}
        self.calls.append(("upload_folder", kwargs["repo_id"], {**kwargs, "files": files}))
        return type("CommitInfo", (), {"commit_url": "https://huggingface.co/someone/m/commit/abc", "pr_url": None})()


def test_upload_is_create_repo_plus_upload_folder_and_never_shows_the_token(checkpoint, tmp_path, monkeypatch,
                                                                            capsys):
    token = "hf_" + "Zq7" * 12
    monkeypatch.setattr(publish, "HfApi", FakeHfApi)
    monkeypatch.setattr(publish, "get_token", lambda: token)
    FakeHfApi.calls = []
    (tmp_path / "args.yaml").write_text(f"checkpoint: {checkpoint}\nrepo_id: someone/maskvlm-objects\n"
                                        "private: true\nrevision: v1\nskip_load_check: true\n")
    assert publish.main([str(tmp_path / "args.yaml")]) == "https://huggingface.co/someone/m/commit/abc"
    names = [call[0] for call in FakeHfApi.calls]
    assert names == ["create_repo", "create_branch", "upload_folder"]
    assert FakeHfApi.calls[0][2] == {"private": True, "exist_ok": True, "repo_type": "model"}
    assert FakeHfApi.calls[1][2]["branch"] == "v1"
    upload = FakeHfApi.calls[2][2]
    assert upload["revision"] == "v1" and upload["create_pr"] is False
    assert {"README.md", "model.safetensors", "config.json", "pipelines_maskvl.py"} <= set(upload["files"])
    assert "training_args.bin" not in upload["files"] and not any("checkpoint-40" in f for f in upload["files"])
    output = capsys.readouterr()
    assert token not in output.out + output.err
    assert not any(token.encode() in content for content in upload["files"].values())

    monkeypatch.setattr(publish, "get_token", lambda: None)
    with pytest.raises(RuntimeError, match="hf auth login"):
        publish.main(["--checkpoint", str(checkpoint), "--repo_id", "someone/m", "--skip_load_check", "--create_pr"])


@pytest.mark.slow
def test_pretraining_output_publishes_with_its_real_metrics(tmp_path):
    """pretrain.py's folder as it leaves it -> publish --dry_run -> the card carries the run's own numbers."""
    from huggingface_hub import ModelCard
    from maskvl_train import pretraining as pretrain

    run = tmp_path / "run"
    pretrain.main(["--output_dir", str(run), "--image_size", "32", "--synthetic_num_examples", "40",
                   "--eval_size", "16", "--baseline_examples", "40", "--max_steps", "2",
                   "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16",
                   "--eval_strategy", "no", "--save_strategy", "no", "--tokenizer_vocab_size", "200",
                   "--disable_tqdm", "true", "--seed", "0", "--dataloader_pin_memory", "false"])
    out = publish.main(["--checkpoint", str(run), "--repo_id", "someone/tiny-run", "--dry_run",
                        str(tmp_path / "hub"), "--skip_load_check"])
    trainer_metrics = json.loads((run / "eval_results.json").read_text())
    card = ModelCard.load(out / "README.md")
    reported = {r.metric_name: r.metric_value for r in card.data.eval_results}
    for name in ("eval_loss", "eval_mlm_accuracy", "eval_mlm_loss"):
        assert reported[name] == pytest.approx(trainer_metrics[name], abs=1e-4), name
    assert reported["frequency_baseline_accuracy"] == pytest.approx(
        trainer_metrics["eval_frequency_baseline_accuracy"], abs=1e-4)
    text = (out / "README.md").read_text()
    assert "someone/tiny-run" in text and str(tmp_path) not in text
    assert not (out / "training_args.bin").exists() and not (out / "trainer_state.json").exists()


@pytest.mark.slow
def test_vqa_checkpoint_publishes_its_vqa_pipeline_through_the_load_check(checkpoint, tmp_path, monkeypatch):
    """A fine-tuned QA checkpoint: only the VQA pipeline is saved, and publish's package-free load check (on by
    default) loads the QA architecture, the processor and that pipeline from the staged folder."""
    folder = tmp_path / "maskvl-vqa"
    shutil.copytree(checkpoint, folder, ignore=shutil.ignore_patterns("model.safetensors", "config.json"))
    answers = ["red", "blue", "circle"]
    config = MaskVLConfig.from_pretrained(checkpoint, num_labels=3, id2label=dict(enumerate(answers)),
                                          label2id={a: i for i, a in enumerate(answers)})
    MaskVLForQuestionAnswering(config).save_pretrained(folder)
    calls = []
    real_check = publish.check_loads_without_package

    def recorded_check(staging, tasks):
        calls.append(tasks)
        return real_check(staging, tasks)

    monkeypatch.setattr(publish, "check_loads_without_package", recorded_check)
    out = publish.main(["--checkpoint", str(folder), "--repo_id", "someone/maskvl-vqa", "--dry_run",
                        str(tmp_path / "hub")])
    assert calls == [["visual-question-answering"]]  # the check ran, and passed
    assert list(json.loads((out / "config.json").read_text())["custom_pipelines"]) == ["visual-question-answering"]
    card = (out / "README.md").read_text()
    assert "pipeline_tag: visual-question-answering" in card and "question='How many cats are there?'" in card
