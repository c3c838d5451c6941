"""Robustness of training runs: non-finite losses, NaN weights, crash-safe checkpoints, SIGKILL + resume, and no
access token or machine-local path in what a run writes (maskvl_train.trainer / checkpoints / arguments,
wired into pre-training through MaskVLPreTrainer and PretrainingArguments)."""

import copy
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
import safetensors.torch
import torch
from maskvl_train import pretraining as pretrain
from maskvl_train.checkpoints import STAGING_DIR, IncompleteCheckpointError, checkpoint_problems, last_complete_checkpoint
from maskvl_train.trainer import MaskVLPreTrainer, NonFiniteLossError, NonFiniteWeightsError
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

import modeling_maskvl.modeling_maskvl as modeling

def tiny_args(output_dir, *extra, steps=4, save_steps=None):
    saving = ["--save_strategy", "no"] if save_steps is None else [
        "--save_strategy", "steps", "--save_steps", str(save_steps), "--save_total_limit", "10"]
    return [
        "--output_dir", str(output_dir), "--image_size", "32", "--synthetic_num_examples", "40", "--eval_size", "8",
        "--baseline_examples", "40", "--max_steps", str(steps), "--per_device_train_batch_size", "8",
        "--per_device_eval_batch_size", "16", "--logging_steps", "1", "--eval_strategy", "no",
        "--tokenizer_vocab_size", "200", "--disable_tqdm", "true", "--seed", "0", *saving, *extra,
    ]  # fmt: skip


def with_callbacks(monkeypatch, *callbacks):
    """Make pretrain.main build its trainer with these extra callbacks."""

    class WithCallbacks(MaskVLPreTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            for callback in callbacks:
                self.add_callback(callback)

    monkeypatch.setattr(pretrain, "MaskVLPreTrainer", WithCallbacks)


class NaNPixelsAt(TrainerCallback):
    """Poisons row 0 of the batch's pixel values at one optimizer step (the batch reaches the model as is)."""

    def __init__(self, step):
        self.step, self.handle = step, None

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 == self.step:
            def poison(module, positional, inputs):
                inputs["pixel_values"] = inputs["pixel_values"].clone()
                inputs["pixel_values"][0] = float("nan")
                return positional, inputs

            self.handle = model.register_forward_pre_hook(poison, with_kwargs=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.handle is not None:
            self.handle.remove()
            self.handle = None


def weights(folder) -> torch.Tensor:
    tensors = safetensors.torch.load_file(os.path.join(folder, "model.safetensors"))
    return torch.cat([tensors[name].flatten().float() for name in sorted(tensors)])


# ---- non-finite losses -------------------------------------------------------------------------------------
def test_inf_loss_part_stops_the_run_naming_step_and_part(tmp_path, monkeypatch):
    """An inf ITC loss at step 3 (a monkeypatched loss): the error names step 3 and `itc` (and not the finite
    parts); checkpoints 1-2 are complete, nothing of step 3 is saved, no final model is written."""
    calls = {"n": 0}
    real = modeling.contrastive_loss

    def contrastive_loss(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("inf") if calls["n"] == 3 else loss

    monkeypatch.setattr(modeling, "contrastive_loss", contrastive_loss)
    with pytest.raises(NonFiniteLossError, match=r"step 3: non-finite part\(s\) itc: mlm=[\d.]+, .*itc=(inf|nan)") as error:
        pretrain.main(tiny_args(tmp_path, save_steps=1))
    assert "checkpoint-2" in str(error.value)  # where to resume from
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith("checkpoint")) == ["checkpoint-1", "checkpoint-2"]
    assert not (tmp_path / "model.safetensors").exists()
    assert checkpoint_problems(tmp_path / "checkpoint-2") == []


@pytest.fixture(scope="module")
def skip_run(tmp_path_factory):
    """4 steps, checkpoint every step, NaN pixel values in step 2, --on_nonfinite_loss skip. The ITC batch
    norm is on, so its running statistics (buffers, updated by the forward pass) must be restored too."""
    out = tmp_path_factory.mktemp("skip-run")
    with pytest.MonkeyPatch.context() as monkeypatch:
        with_callbacks(monkeypatch, NaNPixelsAt(2))
        trainer = pretrain.main(tiny_args(out, "--on_nonfinite_loss", "skip", "--config_overrides",
                                          '{"itc_feature_norm": "batch"}', save_steps=1))
    return trainer, out


def test_skipped_nan_batch_changes_no_weight_and_is_counted(skip_run):
    trainer, out = skip_run
    assert trainer.state.global_step == 4
    assert [step for step, _ in trainer.nonfinite_batches] == [2]
    assert "pixel_values not finite in batch rows [0]" in trainer.nonfinite_batches[0][1]
    assert json.loads((out / "train_results.json").read_text())["nonfinite_skipped_batches"] == 1
    after = {step: weights(out / f"checkpoint-{step}") for step in (1, 2, 3)}
    assert torch.equal(after[1], after[2])  # step 2 skipped: no update, no momentum, no weight decay
    tensors = safetensors.torch.load_file(os.path.join(out, "checkpoint-2", "model.safetensors"))
    assert "maskvl.text_projection_norm.running_mean" in tensors  # the BN buffers are among the compared weights
    assert not torch.equal(after[2], after[3])  # training went on
    assert all(torch.isfinite(w).all() for w in after.values()) and torch.isfinite(weights(out)).all()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 4 and all(entry["loss"] == entry["loss"] for entry in logged)  # no NaN in the logs


def test_nonfinite_gradient_with_finite_loss_stops(tmp_path, monkeypatch):
    class InfGradientAt(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kwargs):
            if state.global_step + 1 == 2:
                parameter = next(p for p in model.parameters() if p.requires_grad)
                self.handle = parameter.register_hook(lambda grad: grad * float("inf"))

        def on_step_end(self, args, state, control, **kwargs):
            if getattr(self, "handle", None) is not None:
                self.handle.remove()
                self.handle = None

    with_callbacks(monkeypatch, InfGradientAt())
    with pytest.raises(NonFiniteLossError, match=r"non-finite gradient norm \((nan|inf)\) at step 2"):
        pretrain.main(tiny_args(tmp_path, steps=3))
    assert not (tmp_path / "model.safetensors").exists()


def test_nan_weights_are_never_saved(skip_run, tmp_path):
    trainer, _ = skip_run
    trainer = copy.copy(trainer)
    trainer.model = copy.deepcopy(trainer.model)
    name, parameter = next(iter(trainer.model.named_parameters()))
    with torch.no_grad():
        parameter.view(-1)[0] = float("nan")
    with pytest.raises(NonFiniteWeightsError, match=rf"refusing to save .* \({name}\)"):
        trainer.save_model(str(tmp_path / "final"))
    assert not (tmp_path / "final").exists()
    trainer.args = copy.copy(trainer.args)
    trainer.args.output_dir = str(tmp_path / "run")
    with pytest.raises(NonFiniteWeightsError, match=r"refusing to save checkpoint-4"):
        trainer._save_checkpoint(trainer.model, None)
    assert not (tmp_path / "run").exists()


# ---- checkpoints ------------------------------------------------------------------------------------------
def break_checkpoint(source, target, how):
    shutil.copytree(source, target)
    if how == "no_trainer_state":
        os.remove(target / "trainer_state.json")
    elif how == "truncated_weights":
        data = (target / "model.safetensors").read_bytes()
        (target / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif how == "truncated_optimizer":
        data = (target / "optimizer.pt").read_bytes()
        (target / "optimizer.pt").write_bytes(data[: len(data) - 100])
    elif how == "no_optimizer":
        os.remove(target / "optimizer.pt")


@pytest.mark.parametrize(
    ("how", "problem"),
    [("no_trainer_state", "trainer_state.json is missing"), ("truncated_weights", "model.safetensors is truncated"),
     ("truncated_optimizer", "optimizer.pt is truncated"), ("no_optimizer", "optimizer.pt is missing")],
)
def test_incomplete_checkpoint_is_detected_and_never_resumed(skip_run, tmp_path, how, problem):
    """What a crash mid-write leaves with transformers' own (non-atomic) save: `get_last_checkpoint` picks it, and
    `Trainer.train` would resume from it silently (step 0 without trainer_state.json, a fresh optimizer without
    optimizer.pt). Ours: `last_complete_checkpoint` skips it and resuming from it raises naming the problem."""
    trainer, out = skip_run
    shutil.copytree(out / "checkpoint-3", tmp_path / "checkpoint-3")
    break_checkpoint(out / "checkpoint-4", tmp_path / "checkpoint-4", how)
    assert any(problem in p for p in checkpoint_problems(tmp_path / "checkpoint-4"))
    assert checkpoint_problems(tmp_path / "checkpoint-3") == []
    assert get_last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")  # transformers would take it
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-3")
    with pytest.raises(IncompleteCheckpointError, match=rf"{problem}.*latest complete checkpoint is .*checkpoint-3"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-4"))


def test_pickled_training_arguments_hold_no_token_or_path(skip_run, tmp_path):
    trainer, out = skip_run
    args = copy.copy(trainer.args)
    args.hub_token, args.output_dir = "hf_fakePickleToken0001", str(tmp_path / "somewhere" / "run")
    restored = pickle.loads(pickle.dumps(args))
    assert restored.hub_token is None and restored.output_dir == "run" and restored.learning_rate == args.learning_rate
    assert copy.deepcopy(args).hub_token == "hf_fakePickleToken0001"  # copies keep everything (pushing needs it)
    saved = torch.load(out / "checkpoint-4" / "training_args.bin", weights_only=False)
    assert not os.path.isabs(saved.output_dir)


# ---- SIGKILL, crash while saving, resume; secrets ------------------------------------------------------------
DRIVER = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    from maskvl_train import pretraining as pretrain
    from maskvl_train.trainer import MaskVLPreTrainer
    from transformers import Trainer, TrainerCallback

    kill_at, where = int(os.environ["KILL_AT_STEP"]), os.environ["KILL_WHERE"]

    class KillAfterStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if where == "step" and state.global_step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)  # between checkpoints

    class Killed(MaskVLPreTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(KillAfterStep())

        def _save_optimizer_and_scheduler(self, output_dir):
            if where == "save" and self.state.global_step == kill_at:  # weights written, optimizer half written
                with open(os.path.join(output_dir, "optimizer.pt"), "wb") as handle:
                    handle.write(b"PK" + b"x" * 1000)
                    handle.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
            super()._save_optimizer_and_scheduler(output_dir)

    pretrain.MaskVLPreTrainer = Killed
    pretrain.main(sys.argv[1:])
    """
)


def run_killed(tmp_path, argv, kill_at, where, env):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    result = subprocess.run([sys.executable, str(driver), *argv], check=False, capture_output=True, text=True,
                            timeout=300, env={**env, "KILL_AT_STEP": str(kill_at), "KILL_WHERE": where})
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.slow
def test_sigkill_and_crash_while_saving_then_resume_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    """8 steps, a checkpoint every 2 (crossing an epoch boundary, with dropout, joint masking and ITM negatives):
    SIGKILL after step 5; resume, SIGKILL while checkpoint-6 is being written; resume again to step 8. The
    final weights equal an uninterrupted run's. Also: no access token (HF_TOKEN and --hub_token), tmp path, home
    folder or user name in any file of the output folder, nor the token in the logs."""
    token, cli_token, user = "hf_fakeEnvTokenXYZ123456", "hf_fakeCliTokenABC987654", "maskvlfuzzuser"
    home = tmp_path / f"home-{user}"
    home.mkdir()
    env = {**os.environ, "HF_TOKEN": token, "HOME": str(home), "USER": user, "LOGNAME": user}
    for key, value in (("HF_TOKEN", token), ("HOME", str(home)), ("USER", user), ("LOGNAME", user)):
        monkeypatch.setenv(key, value)
    out = tmp_path / "run"
    argv = tiny_args(out, "--hub_token", cli_token, steps=8, save_steps=2)
    logs = run_killed(tmp_path, argv, kill_at=5, where="step", env=env)
    assert sorted(os.listdir(out)).count("checkpoint-4") == 1 and not (out / "checkpoint-6").exists()
    assert checkpoint_problems(out / "checkpoint-4") == []

    logs += run_killed(tmp_path, [*argv, "--resume_from_checkpoint", "auto"], kill_at=6, where="save", env=env)
    staged = out / STAGING_DIR / "checkpoint-6"
    assert (staged / "model.safetensors").exists() and not (staged / "trainer_state.json").exists()  # mid-write
    assert not (out / "checkpoint-6").exists()  # never looks complete
    assert last_complete_checkpoint(out) == str(out / "checkpoint-4")

    steps = []

    class Record(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            steps.append(state.global_step)

    with_callbacks(monkeypatch, Record())
    resumed = pretrain.main([*argv, "--resume_from_checkpoint", "auto"])
    assert steps == [5, 6, 7, 8] and resumed.state.global_step == 8
    assert not (out / STAGING_DIR).exists() and checkpoint_problems(out / "checkpoint-6") == []

    straight = pretrain.main(tiny_args(tmp_path / "straight", "--tokenizer", str(out), steps=8, save_steps=2))
    a = torch.cat([p.detach().flatten() for p in straight.model.parameters()])
    b = torch.cat([p.detach().flatten() for p in resumed.model.parameters()])
    assert not torch.equal(a, torch.cat([p.flatten() for p in type(straight.model).from_pretrained(
        out / "checkpoint-4").parameters()]))
    torch.testing.assert_close(b, a, rtol=0, atol=1e-6)

    # secrets: every file of the output folder, binary ones included (pickles, safetensors headers)
    forbidden = [token, cli_token, str(tmp_path), str(home), user, os.getcwd()]
    for root, _, files in os.walk(out):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                data = handle.read()
            for secret in forbidden:
                assert secret.encode() not in data, (os.path.join(root, name), secret)
    assert token not in logs and cli_token not in logs
