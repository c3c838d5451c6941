"""Issue 14, training side: arguments checked before any data is read, resume refusing what it cannot restore, a
full disk named as such."""

import errno
import os
import shutil

import pytest
import torch
from maskvl_train import pretraining as pretrain
from maskvl_train.checkpoints import IncompleteCheckpointError, checkpoint_problems
from maskvl_train.validation import check_config_overrides
from test_robustness_training import tiny_args as training_tiny_args


def tiny_args(output_dir, *extra, steps=2, save_steps=None):
    """The robustness-training tiny run (one definition), two steps by default."""
    return training_tiny_args(output_dir, *extra, steps=steps, save_steps=save_steps)


# ---- arguments ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("extra", "message"), [
    (["--learning_rate", "-0.001"], r"--learning_rate -0\.001 must be a positive number"),
    (["--learning_rate", "nan"], r"--learning_rate nan must be a positive number"),
    (["--weight_decay", "nan"], r"--weight_decay nan must be a number >= 0"),
    (["--per_device_train_batch_size", "0"], r"--per_device_train_batch_size 0 must be >= 1"),
    (["--per_device_eval_batch_size", "0"], r"--per_device_eval_batch_size 0 must be >= 1"),
    (["--gradient_accumulation_steps", "0"], r"--gradient_accumulation_steps 0 must be >= 1"),
    (["--dataloader_num_workers", "-1"], r"--dataloader_num_workers -1 must be >= 0"),
    (["--max_steps", "-1", "--num_train_epochs", "0"], r"--num_train_epochs 0\.0 must be positive"),
    (["--max_steps", "0"], r"--max_steps 0 trains nothing"),
    (["--config_overrides", '{"mim_weigth": 0.5}'], r"unknown key 'mim_weigth' in --config_overrides; did you mean "
                                                    r"'mim_weight'"),
    (["--config_overrides", '{"text_config": {"num_hiden_layers": 2}}'],
     r"unknown key 'num_hiden_layers' in --config_overrides text_config; did you mean 'num_hidden_layers'"),
])
def test_bad_training_arguments_are_refused_before_any_data_is_read(tmp_path, extra, message):
    missing = tmp_path / "no-such-folder"  # reading the data would fail with FileNotFoundError
    with pytest.raises(ValueError, match=message):
        pretrain.main(tiny_args(tmp_path / "out", "--train_dir", str(missing), *extra))
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")  # nothing written


def checkpoint_args(output_dir, steps=2):
    """tiny_args without --image_size: a run from --model_name_or_path takes its size from the checkpoint."""
    args = tiny_args(output_dir, steps=steps)
    at = args.index("--image_size")
    return args[:at] + args[at + 2:]


@pytest.mark.parametrize(("extra", "message"), [
    (["--config_overrides", '{"projection_dim": 16}'], r"--config_overrides 'projection_dim': with "
                                                      r"--model_name_or_path .* only the objective's fields can change"),
    (["--config_overrides", '{"itc_weight": 1.0, "vision_config": {"patch_size": 8}}'], r"'vision_config'"),
    (["--hidden_size", "32"], r"--hidden_size cannot change the size of --model_name_or_path"),
])
def test_architecture_changes_of_a_checkpoint_are_refused_before_anything_is_loaded(tmp_path, extra, message):
    args = checkpoint_args(tmp_path / "out")
    with pytest.raises(ValueError, match=message):  # the checkpoint does not exist: nothing was loaded
        pretrain.main(args + ["--model_name_or_path", str(tmp_path / "no-such-checkpoint"), *extra])


def test_a_bad_objective_value_on_a_checkpoint_is_refused(saved_run, tmp_path):
    args = checkpoint_args(tmp_path / "stage2")
    with pytest.raises(ValueError, match=r"MaskVLConfig\.mim_loss='huber'"):
        pretrain.main(args + ["--model_name_or_path", str(saved_run), "--config_overrides", '{"mim_loss": "huber"}'])


def test_a_checkpoint_trains_on_with_the_objective_overridden(saved_run, tmp_path):
    """A second stage (e.g. MLM + MIM first, then ITC and ITM switched on) changes the loss weights it is given."""
    args = checkpoint_args(tmp_path / "stage2")
    trainer = pretrain.main(args + ["--model_name_or_path", str(saved_run),
                                    "--config_overrides", '{"itc_weight": 0.0, "mlm_weight": 2.0}'])
    assert trainer.model.config.itc_weight == 0.0 and trainer.model.config.mlm_weight == 2.0
    saved = pretrain.MaskVLConfig.from_pretrained(tmp_path / "stage2")
    assert (saved.itc_weight, saved.mlm_weight, saved.mim_weight) == (0.0, 2.0, 1.0)
    logged = [e for e in trainer.state.log_history if "mlm_loss" in e]
    assert logged
    for entry in logged:  # the total is the newly weighted sum of the parts
        parts = 2.0 * entry["mlm_loss"] + entry.get("mim_loss", 0.0) + entry.get("itm_loss", 0.0)
        assert entry["loss"] == pytest.approx(parts, rel=1e-3)


def test_known_config_overrides_pass():
    check_config_overrides({"mim_weight": 0.5, "vision_config": {"image_size": 32}}, "maskvlm-tiny")


# ---- resume ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "run"
    pretrain.main(tiny_args(out, steps=2, save_steps=1))
    return out


def copy_checkpoint(saved_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(saved_run, out)
    return out


def test_resume_refuses_a_checkpoint_without_its_rng_state(saved_run, tmp_path):
    out = copy_checkpoint(saved_run, tmp_path)
    (out / "checkpoint-1" / "rng_state.pth").unlink()
    assert any("rng_state.pth is missing" in p for p in checkpoint_problems(out / "checkpoint-1"))
    with pytest.raises(IncompleteCheckpointError, match=r"checkpoint-1: it is incomplete \(rng_state\.pth is missing"):
        pretrain.main(tiny_args(out, "--resume_from_checkpoint", str(out / "checkpoint-1"), steps=2, save_steps=1))


def test_resume_refuses_weights_that_lack_tensors(saved_run, tmp_path):
    from safetensors.torch import load_file, save_file

    out = copy_checkpoint(saved_run, tmp_path)
    weights = out / "checkpoint-1" / "model.safetensors"
    tensors = {key: value for key, value in load_file(weights).items() if "vision" not in key}
    save_file(tensors, weights, metadata={"format": "pt"})
    assert checkpoint_problems(out / "checkpoint-1") == []  # a whole file: only the model knows what is missing
    with pytest.raises(IncompleteCheckpointError, match=r"its weights lack \d+ tensor\(s\) of this model \(maskvl\.vision"):
        pretrain.main(tiny_args(out, "--resume_from_checkpoint", str(out / "checkpoint-1"), steps=2, save_steps=1))


# ---- disk full ---------------------------------------------------------------------------------------------------
def test_disk_full_while_saving_a_checkpoint_is_named(tmp_path, monkeypatch):
    from transformers import trainer as transformers_trainer

    real_save = torch.save

    def full_disk_save(obj, f, *args, **kwargs):
        if str(f).endswith("optimizer.pt"):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1216 vs 1152")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(transformers_trainer.torch, "save", full_disk_save)
    out = tmp_path / "run"
    with pytest.raises(OSError, match=r"disk full while saving checkpoint-1 to .*MiB free\): nothing half-written") as error:
        pretrain.main(tiny_args(out, steps=2, save_steps=1))
    assert error.value.errno == errno.ENOSPC
    assert not (out / "checkpoint-1").exists() and not (out / ".checkpoint-staging" / "checkpoint-1").exists()


# ---- friction on a user's own folders ----------------------------------------------------------------------------
def scene_folder(root, n: int, seed: int):
    import json

    from maskvl_processing.synthetic_scenes import make_synthetic_dataset

    root.mkdir(parents=True)
    scenes = make_synthetic_dataset(n, seed=seed, image_size=32)
    with open(root / "metadata.jsonl", "w") as handle:
        for i, row in enumerate(scenes):
            row["image"].save(root / f"img_{i:03d}.png")
            handle.write(json.dumps({"file_name": f"img_{i:03d}.png", "caption": row["caption"]}) + "\n")
    return root


def test_image_size_default_matches_its_help():
    from maskvl_train.arguments import ModelArguments

    field = ModelArguments.__dataclass_fields__["image_size"]
    assert f"default {field.default}" in field.metadata["help"]
    assert ModelArguments(image_size=0).image_size is None  # "0 = the preset's own", as the help says
    assert ModelArguments(image_size=0).config_overrides_dict().get("vision_config", {}).get("image_size") is None


def test_validation_dir_is_the_evaluation_set(tmp_path):
    train = scene_folder(tmp_path / "train", 24, seed=1)
    validation = scene_folder(tmp_path / "val", 6, seed=2)
    trainer = pretrain.main(tiny_args(tmp_path / "out", "--train_dir", str(train), "--validation_dir", str(validation)))
    assert len(trainer.train_dataset) == 24 and len(trainer.eval_dataset) == 6
    with pytest.raises(ValueError, match="--validation_dir or --eval_split, not both"):
        pretrain.main(tiny_args(tmp_path / "out2", "--train_dir", str(train), "--validation_dir", str(validation),
                                "--eval_split", "test"))


def test_an_explicit_eval_split_is_not_cut_to_eval_size(tmp_path):
    from maskvl_train.arguments import DataArguments
    from maskvl_train.data import load_eval_dataset

    folder = scene_folder(tmp_path / "pairs", 12, seed=3)
    dataset, info = load_eval_dataset(DataArguments(train_dir=str(folder), eval_split="train", eval_size=5), 0, 32)
    assert len(dataset) == info["num_examples"] == 12  # the whole split asked for, not --eval_size 5
    dataset, _ = load_eval_dataset(DataArguments(train_dir=str(folder), eval_split="train", max_eval_samples=4), 0, 32)
    assert len(dataset) == 4
    dataset, _ = load_eval_dataset(DataArguments(train_dir=str(folder), validation_dir=str(folder)), 0, 32)
    assert len(dataset) == 12


def test_pretraining_card_only_shows_snippets_that_run_on_its_folder(tmp_path, monkeypatch):
    import re

    out = tmp_path / "run"
    pretrain.main(tiny_args(out))
    card = (out / "README.md").read_text()
    assert "pipeline(" not in card.split("## Training data")[0]  # no custom pipeline is saved by pre-training
    blocks = re.findall(r"```python\n(.*?)```", card.split("## Training data")[0], re.DOTALL)
    assert blocks and all("from_pretrained" in block for block in blocks)
    monkeypatch.chdir(tmp_path)  # the card names the folder as ./run
    for block in blocks:
        namespace = {}
        exec(compile(block, "model card", "exec"), namespace)  # noqa: S102 - the card's own snippet
        assert namespace["model"].config.model_type == "maskvl" and namespace["processor"] is not None
