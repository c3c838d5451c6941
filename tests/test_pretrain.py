"""Pre-training (train_scripts/pretrain.py -> maskvl_train.pretraining): arguments, presets, learning, outputs,
resume, data paths."""

import json
import math
import os
import tarfile
from pathlib import Path

import pytest
import torch
import yaml
from isolation import run_isolated
from maskvl_processing import MaskVLDataCollator, train_wordpiece_tokenizer
from maskvl_processing.synthetic_scenes import make_synthetic_dataset
from maskvl_train import pretraining as pretrain
from maskvl_train.arguments import DataArguments, MaskingArguments, ModelArguments, PretrainingArguments, parse_args
from maskvl_train.checkpoints import resolve_checkpoint
from maskvl_train.scrub import shareable_arguments
from maskvl_train.trainer import MaskVLPreTrainer
from transformers import TrainerCallback

from modeling_maskvl import MaskVLConfig


def tiny_args(output_dir, *extra, steps=3, examples=40):
    """Command line of a tiny, fast run (32-px images, a few steps, no intermediate eval or checkpoints)."""
    return [
        "--output_dir", str(output_dir), "--preset", "maskvlm-tiny", "--image_size", "32",
        "--synthetic_num_examples", str(examples),
        "--eval_size", "16", "--baseline_examples", str(examples), "--max_steps", str(steps),
        "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16", "--logging_steps", "1",
        "--eval_strategy", "no", "--save_strategy", "no", "--tokenizer_vocab_size", "200",
        "--disable_tqdm", "true", "--seed", "0", *extra,
    ]  # fmt: skip


def training_logs(trainer) -> list[dict]:
    return [entry for entry in trainer.state.log_history if "loss" in entry]


def parameters(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


# ---- arguments -----------------------------------------------------------------------------------------
def test_arguments_from_yaml_and_json_files_with_command_line_overrides(tmp_path):
    values = {"preset": "mlim-tiny", "max_steps": 7, "text_masking": "objects", "learning_rate": 0.01,
              "eval_size": 33, "output_dir": str(tmp_path / "run")}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(values))
    (tmp_path / "run.json").write_text(json.dumps(values))
    for name in ("run.yaml", "run.json"):
        model, data, masking, training = parse_args(argv=[str(tmp_path / name), "--max_steps", "9"])
        assert (model.preset, masking.text_masking, data.eval_size) == ("mlim-tiny", "objects", 33)
        assert training.learning_rate == 0.01 and training.max_steps == 9  # the command line wins
        assert training.output_dir == str(tmp_path / "run")


QUICK_RECIPE = Path(__file__).resolve().parents[1] / "train_scripts" / "recipes" / "quick.yaml"


def test_quick_recipe_holds_the_documented_settings_and_runs(tmp_path):
    model, data, _, training = parse_args(argv=[str(QUICK_RECIPE)])
    assert json.loads(model.config_overrides) == {"itc_pooling": "cls"}
    assert (data.synthetic_num_examples, training.max_steps) == (4000, 2000)
    assert training.output_dir == "outputs/pretrain_quick"
    assert (model.preset, training.per_device_train_batch_size, training.learning_rate) == ("maskvlm-small", 32, 2e-3)
    # flags after the file override it; the recipe's model change reaches the saved config
    out = tmp_path / "recipe"
    pretrain.main([str(QUICK_RECIPE), *tiny_args(out, steps=2)])
    assert json.loads((out / "config.json").read_text())["itc_pooling"] == "cls"


def test_defaults_are_the_small_cpu_run_that_uses_the_image():
    model, data, masking, training = parse_args(argv=[])
    assert model.preset == "maskvlm-small" and training.output_dir == "outputs/pretrain"
    assert model.image_size is None  # the preset's own 64 px
    assert MaskVLConfig.from_preset(model.preset, **model.config_overrides_dict()).itc_pooling == "mean"
    assert (data.synthetic_num_examples, training.max_steps, training.per_device_train_batch_size) == (12000, 6000, 32)
    assert masking.itm_negatives == "auto"
    assert training.remove_unused_columns is False
    assert isinstance(training, PretrainingArguments)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--text_masking", "nouns"], "'nouns'"),
        (["--image_masking", "grid"], "'grid'"),
        (["--text_mask_rate", "1.5"], "--text_mask_rate"),
        (["--max_seq_length", "2"], "--max_seq_length"),
        (["--train_dir", "a", "--webdataset", "b"], "at most one data source"),
        (["--config_overrides", "[1, 2]"], "--config_overrides"),
    ],
)
def test_bad_arguments_raise_errors_naming_them(argv, message):
    with pytest.raises(ValueError, match=message):
        parse_args(argv=argv)


def test_unknown_key_in_argument_file_is_named(tmp_path):
    (tmp_path / "bad.yaml").write_text("preset: mlim-tiny\nmax_stesp: 3\n")
    with pytest.raises(ValueError, match="max_stesp"):
        parse_args(argv=[str(tmp_path / "bad.yaml")])


@pytest.mark.parametrize(
    ("preset", "image", "joint", "itm"),
    [("maskvlm-tiny", "block", "maskvlm", "in_batch"), ("mlim-tiny", "random", "mlim", False),
     ("lxmert-tiny", "none", "independent", 0.5)],
)
def test_masking_follows_the_model_unless_given(preset, image, joint, itm):
    config = MaskVLConfig.from_preset(preset, vision_config={"image_size": 64})
    kwargs = MaskingArguments().collator_kwargs(config)
    assert (kwargs["image_policy"], kwargs["joint_policy"], kwargs["itm_negatives"]) == (image, joint, itm)
    given = MaskingArguments(text_masking="objects", text_mask_rate=0.4, joint_masking="independent",
                             itm_negatives="none").collator_kwargs(config)
    assert given["text_policy"] == "objects" and given["joint_policy_kwargs"]["text_rate"] == 0.4
    assert given["text_policy_kwargs"]["mode"] == "one" and given["joint_policy"] == "independent"
    assert given["itm_negatives"] is False


def test_masking_options_reach_the_collator_policies():
    config = MaskVLConfig.from_preset("maskvlm-tiny", vision_config={"image_size": 64})
    kwargs = MaskingArguments(text_mask_rate=0.25, image_mask_ratio=0.4, mask_block_pixels=16, joint_both_prob=0.2,
                              mask_replace_prob=0.5, random_replace_prob=0.2).collator_kwargs(config)
    assert kwargs["text_policy_kwargs"] == {"mask_replace_prob": 0.5, "random_replace_prob": 0.2}
    assert kwargs["image_policy_kwargs"] == {"block_pixels": 16}  # the rates are the joint policy's
    assert kwargs["joint_policy_kwargs"] == {"text_prob": 0.5, "both_prob": 0.2, "text_rate": 0.25, "image_ratio": 0.4}
    tokenizer = train_wordpiece_tokenizer(["a red circle", "a blue square"] * 10, vocab_size=60)
    joint = MaskVLDataCollator(tokenizer, image_size=64, patch_size=16, **kwargs).joint_policy
    assert (joint.text_rate, joint.image_ratio) == (0.25, 0.4)  # the rates every row is masked at
    independent = MaskingArguments(text_mask_rate=0.4, joint_masking="independent").collator_kwargs(config)
    joint = MaskVLDataCollator(tokenizer, image_size=64, patch_size=16, **independent).joint_policy
    assert (joint.text_rate, joint.image_ratio) == (0.4, 0.6)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        MaskingArguments(mask_block_pixels=12).collator_kwargs(config)


def test_masking_that_the_model_cannot_learn_from_is_refused():
    config = MaskVLConfig.from_preset("mlim-tiny")
    with pytest.raises(ValueError, match="ITM head"):
        MaskingArguments(itm_negative_prob=0.3).collator_kwargs(config)
    with pytest.raises(ValueError, match="only applies to --itm_negatives swap"):
        MaskingArguments(itm_negative_prob=0.3).collator_kwargs(MaskVLConfig.from_preset("maskvlm-tiny"))
    with pytest.raises(ValueError, match="needs masked_modeling_passes='separate'"):
        MaskingArguments(itm_negatives="in_batch").collator_kwargs(MaskVLConfig.from_preset("lxmert-tiny"))
    swap = MaskingArguments(itm_negatives="swap", itm_negative_prob=0.25).collator_kwargs(
        MaskVLConfig.from_preset("maskvlm-tiny"))
    assert swap["itm_negatives"] == 0.25
    with pytest.raises(ValueError, match="pixel head"):
        MaskingArguments(image_masking="block").collator_kwargs(MaskVLConfig.from_preset("lxmert-tiny"))


def write_complete_checkpoint(folder: Path, step: int) -> None:
    """The files `checkpoint_problems` asks for: trainer state at `step`, whole weights, optimizer, scheduler and
    RNG state."""
    from safetensors.torch import save_file

    folder.mkdir()
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    save_file({"weight": torch.zeros(2)}, str(folder / "model.safetensors"))
    torch.save({}, folder / "optimizer.pt")
    torch.save({}, folder / "scheduler.pt")
    torch.save({}, folder / "rng_state.pth")


def test_resume_checkpoint_resolution(tmp_path):
    assert resolve_checkpoint("auto", str(tmp_path / "missing")) is None
    for step in (2, 10):
        write_complete_checkpoint(tmp_path / f"checkpoint-{step}", step)
    (tmp_path / "checkpoint-12").mkdir()  # a crash while it was written: never resumed from by "auto"
    assert resolve_checkpoint("auto", str(tmp_path)) == str(tmp_path / "checkpoint-10")
    assert resolve_checkpoint("latest", str(tmp_path)) == str(tmp_path / "checkpoint-10")
    assert resolve_checkpoint(None, str(tmp_path)) is None  # not asked: start fresh
    assert resolve_checkpoint("false", str(tmp_path)) is None
    assert resolve_checkpoint(str(tmp_path / "checkpoint-2"), str(tmp_path)) == str(tmp_path / "checkpoint-2")
    with pytest.raises(FileNotFoundError, match="checkpoint-7"):
        resolve_checkpoint(str(tmp_path / "checkpoint-7"), str(tmp_path))


def test_shareable_arguments_hold_no_token_or_absolute_path(tmp_path):
    training = PretrainingArguments(output_dir=str(tmp_path / "out"), hub_token="hf_secret")
    data = DataArguments(train_dir=str(tmp_path / "images"))
    shared = shareable_arguments(ModelArguments(), data, training)
    assert "hub_token" not in shared and "output_dir" not in shared
    assert shared["train_dir"] == "images" and shared["learning_rate"] == training.learning_rate
    assert "hf_secret" not in json.dumps(shared) and str(tmp_path) not in json.dumps(shared)


# ---- training runs ---------------------------------------------------------------------------------------
EXPECTED_PARTS = {"maskvlm-tiny": {"mlm", "mim", "itc", "itm"}, "mlim-tiny": {"mlm", "mim"},
                  "lxmert-tiny": {"mlm", "itm"}}


@pytest.mark.parametrize("preset", sorted(EXPECTED_PARTS))
def test_each_preset_trains_a_few_steps_and_logs_its_loss_parts(tmp_path, preset):
    trainer = pretrain.main(tiny_args(tmp_path / preset, "--preset", preset))
    assert trainer.state.global_step == 3
    logs = training_logs(trainer)
    assert len(logs) == 3
    logged = {key[: -len("_loss")] for entry in logs for key in entry if key.endswith("_loss")}
    assert logged == EXPECTED_PARTS[preset]
    assert all(0.0 <= entry["mlm_accuracy"] <= 1.0 for entry in logs if "mlm_loss" in entry)
    final = trainer.state.log_history[-1]
    assert {f"eval_{part}_loss" for part in EXPECTED_PARTS[preset]} <= set(final)
    assert 0.0 <= final["eval_mlm_accuracy"] <= 1.0 and 0.0 < final["eval_frequency_baseline_accuracy"] < 1.0
    assert trainer.model.config.text_config.vocab_size == len(trainer.processing_class.tokenizer)


def test_gradient_accumulation_keeps_the_loss_scale(tmp_path):
    """The model's loss is a mean: with 2 accumulation steps the logged (and back-propagated) loss must be the
    mean of the micro-batches, not their sum (the classic mis-scaling when the Trainer passes num_items_in_batch)."""
    plain = pretrain.main(tiny_args(tmp_path / "plain", "--preset", "lxmert-tiny", steps=1))
    accumulated = pretrain.main(tiny_args(tmp_path / "accumulated", "--preset", "lxmert-tiny",
                                          "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2",
                                          steps=1))
    assert accumulated.model_accepts_loss_kwargs is False
    ratio = training_logs(accumulated)[0]["loss"] / training_logs(plain)[0]["loss"]
    assert 0.8 < ratio < 1.25, ratio


@pytest.mark.slow
def test_loss_goes_down_and_the_output_folder_is_hub_ready(tmp_path):
    out = tmp_path / "run"
    trainer = pretrain.main(tiny_args(out, "--learning_rate", "3e-3", "--per_device_train_batch_size", "16",
                                      "--hub_token", "hf_not_a_real_token", steps=60, examples=320))
    mlm = [entry["mlm_loss"] for entry in training_logs(trainer) if "mlm_loss" in entry]  # one per step
    first, last = sum(mlm[:5]) / 5, sum(mlm[-20:]) / 20
    assert last < 0.85 * first, mlm
    uniform = math.log(trainer.model.config.text_config.vocab_size)  # loss of an untrained model
    assert trainer.state.log_history[-1]["eval_mlm_loss"] < 0.85 * uniform

    # the image-use line's rows (attribute, colour, object words) are recorded with the held-out metrics
    recorded = json.loads((out / "eval_results.json").read_text())
    for name in ("attribute", "colour", "object"):
        assert 0.0 <= recorded[f"eval_image_acc1_{name}"] <= 1.0 and 0.0 <= recorded[f"eval_blank_acc1_{name}"] <= 1.0
    names = {path.name for path in out.iterdir()}
    assert {"model.safetensors", "config.json", "processor_config.json", "tokenizer.json", "training_args.json",
            "modeling_maskvl.py", "configuration_maskvl.py", "processing_maskvl.py", "image_processing_maskvl.py",
            "eval_results.json", "README.md"} <= names
    assert "training_args.bin" not in names
    auto_map = json.loads((out / "config.json").read_text())["auto_map"]
    assert {"AutoConfig", "AutoModel", "AutoModelForPreTraining", "AutoModelForMaskedLM"} <= set(auto_map)
    for path in out.iterdir():
        if path.is_file() and path.suffix in (".json", ".md"):
            text = path.read_text()
            assert "hf_not_a_real_token" not in text, path.name
            if path.name not in ("trainer_state.json",):
                assert str(tmp_path) not in text, path.name

    result = run_isolated(
        f"""
        import json, numpy, PIL.Image, torch
        from transformers import AutoModel, AutoModelForPreTraining, AutoProcessor
        path = {str(out)!r}
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
        model = AutoModel.from_pretrained(path, trust_remote_code=True)
        pretraining = AutoModelForPreTraining.from_pretrained(path, trust_remote_code=True)
        image = PIL.Image.fromarray(numpy.full((40, 50, 3), 128, dtype=numpy.uint8))
        batch = processor(images=[image], text=["a small red circle."], return_tensors="pt")
        with torch.no_grad():
            out = model(**batch)
        print(json.dumps({{"model": type(model).__name__, "processor": type(processor).__name__,
                          "module": type(model).__module__, "pixels": list(batch["pixel_values"].shape),
                          "pooled": list(out.pooler_output.shape), "pretraining": type(pretraining).__name__}}))
        """,
        cwd=tmp_path,
    )
    assert result["model"] == "MaskVLModel" and result["processor"] == "MaskVLProcessor"
    assert result["module"].startswith("transformers_modules")  # the folder's code, not the installed package
    assert result["pixels"] == [1, 3, 32, 32] and result["pooled"][0] == 1
    assert result["pretraining"] == "MaskVLForPreTraining"


class StopAt(TrainerCallback):
    """Records the steps a run executes and stops it after `stop_at`."""

    def __init__(self, stop_at=None):
        self.stop_at, self.steps = stop_at, []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)
        if self.stop_at is not None and state.global_step >= self.stop_at:
            control.should_training_stop = True


@pytest.mark.slow
def test_resume_from_checkpoint_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    """8 steps straight == 4 steps, stop, `--resume_from_checkpoint auto`, 4 more (crossing an epoch boundary,
    with dropout, ITM negatives and joint masking on): same final weights. Fails if the masks restart from the
    collator's seed, if the vision tower is not reloaded (Trainer's plain load_state_dict misses the ViT key
    renaming of save_pretrained), or if the resumed run trains a new tokenizer."""
    callbacks = []

    def trainer_with(stop_at):
        class Recorded(MaskVLPreTrainer):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                callbacks.append(StopAt(stop_at))
                self.add_callback(callbacks[-1])

        monkeypatch.setattr(pretrain, "MaskVLPreTrainer", Recorded)

    common = ["--save_strategy", "steps", "--save_steps", "4", "--save_total_limit", "3"]
    trainer_with(4)
    pretrain.main(tiny_args(tmp_path / "resumed", *common, steps=8))
    assert (tmp_path / "resumed" / "checkpoint-4").is_dir()
    # WordPiece training is not deterministic: the uninterrupted run reuses the interrupted run's tokenizer,
    # the resumed run (no --tokenizer) must pick it up from the checkpoint by itself.
    trainer_with(None)
    straight = pretrain.main(tiny_args(tmp_path / "straight", *common, "--tokenizer", str(tmp_path / "resumed"),
                                       steps=8))
    trainer_with(None)
    resumed = pretrain.main(tiny_args(tmp_path / "resumed", *common, "--resume_from_checkpoint", "auto", steps=8))

    assert callbacks[0].steps == [1, 2, 3, 4] and callbacks[2].steps == [5, 6, 7, 8]  # really resumed
    assert callbacks[1].steps == list(range(1, 9))
    assert resumed.state.global_step == 8 and resumed.state.epoch == straight.state.epoch
    a, b = parameters(straight.model), parameters(resumed.model)
    at_stop = parameters(type(straight.model).from_pretrained(tmp_path / "resumed" / "checkpoint-4"))
    assert not torch.equal(a, at_stop)  # the last 4 steps changed the weights
    torch.testing.assert_close(b, a, rtol=0, atol=1e-6)


# ---- real-data paths -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scenes():
    ds = make_synthetic_dataset(36, seed=5, image_size=32)
    return [(row["image"], row["caption"]) for row in ds]


def write_imagefolder(root: Path, scenes) -> Path:
    root.mkdir(parents=True)
    with open(root / "metadata.jsonl", "w") as handle:
        for index, (image, caption) in enumerate(scenes):
            image.save(root / f"{index:03d}.png")
            handle.write(json.dumps({"file_name": f"{index:03d}.png", "text": caption}) + "\n")
    return root


def write_shard(path: Path, scenes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for index, (image, caption) in enumerate(scenes):
            image.save(path.parent / "tmp.png")
            tar.add(path.parent / "tmp.png", arcname=f"{index:06d}.png")
            (path.parent / "tmp.json").write_text(json.dumps({"caption": caption, "id": index}))
            tar.add(path.parent / "tmp.json", arcname=f"{index:06d}.json")
    os.remove(path.parent / "tmp.png")
    os.remove(path.parent / "tmp.json")
    return path


def test_local_imagefolder_trains(tmp_path, scenes):
    folder = write_imagefolder(tmp_path / "images", scenes)
    trainer = pretrain.main(tiny_args(tmp_path / "out", "--train_dir", str(folder), "--caption_column", "text",
                                      "--eval_size", "8", steps=2))
    assert trainer.state.global_step == 2
    assert len(trainer.train_dataset) == len(scenes) - 8 and len(trainer.eval_dataset) == 8
    summary = json.loads((tmp_path / "out" / "training_args.json").read_text())
    assert summary["train_dir"] == "images"


def test_webdataset_shards_train(tmp_path, scenes):
    write_shard(tmp_path / "shards" / "train-000.tar", scenes[:18])
    write_shard(tmp_path / "shards" / "train-001.tar", scenes[18:])
    trainer = pretrain.main(tiny_args(tmp_path / "out", "--webdataset", str(tmp_path / "shards" / "train-{000..001}.tar"),
                                      "--eval_size", "8", "--preset", "mlim-tiny", steps=2))
    assert trainer.state.global_step == 2
    assert len(trainer.train_dataset) + len(trainer.eval_dataset) == len(scenes)


def test_missing_caption_column_is_named(tmp_path, scenes):
    folder = write_imagefolder(tmp_path / "images", scenes[:4])
    with pytest.raises(ValueError, match="'caption'"):
        pretrain.main(tiny_args(tmp_path / "out", "--train_dir", str(folder), "--eval_size", "2"))
