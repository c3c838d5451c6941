"""Sharded training, run for real: FSDP2 on 2 CPU processes (gloo), launched by accelerate with the project's
`fsdp.yaml`, trains, saves, resumes and ends where a DDP run ends. The accelerate configs that cannot run here
(DeepSpeed needs a GPU) are checked by loading them.

Why the worker and not the Trainer: accelerate 1.15 enables FSDP only on accelerator devices, so on a CPU the
Trainer with an FSDP config silently trains DDP; see tests/sharded_training_worker.py.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from modeling_maskvl import MaskVLConfig, MaskVLForPreTraining

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "train_scripts" / "accelerate_configs"
WORKER = Path(__file__).resolve().parent / "sharded_training_worker.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_process_config(tmp_path: Path, name: str) -> Path:
    """The project's config `name` on 2 CPU processes: only the process count, precision and port change."""
    config = yaml.safe_load((CONFIGS / name).read_text())
    config.update(num_processes=2, mixed_precision="no", main_process_port=free_port())
    path = tmp_path / f"2proc_{name}"
    path.write_text(yaml.safe_dump(config))
    return path


def launch(config: Path, out: Path, steps: int, resume: Path | None = None) -> list[dict]:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), str(WORKER),
               str(out), str(steps)] + ([str(resume)] if resume else [])
    env = {key: value for key, value in os.environ.items() if key not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(command, cwd=out.parent, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads((out / f"report_rank{rank}.json").read_text()) for rank in (0, 1)]


@pytest.mark.slow
def test_fsdp_trains_saves_resumes_and_matches_ddp(tmp_path):
    from sharded_training_worker import make_config

    fsdp_config = two_process_config(tmp_path, "fsdp.yaml")
    first = launch(fsdp_config, tmp_path / "fsdp_part1", 2)
    resumed = launch(fsdp_config, tmp_path / "fsdp_part2", 2, resume=tmp_path / "fsdp_part1" / "state.pt")
    ddp = launch(two_process_config(tmp_path, "cpu_ddp_2proc.yaml"), tmp_path / "ddp", 4)

    for report in first + resumed:  # really sharded: each rank holds about half of the parameters
        assert report["sharded"] and report["world_size"] == 2 and report["backend"] == "gloo"
        assert report["local_numel"] < 0.6 * report["full_numel"]
    assert sum(r["local_numel"] for r in first) == first[0]["full_numel"]
    assert [r["wrapper"] for r in ddp] == ["DistributedDataParallel"] * 2 and not ddp[0]["sharded"]
    assert [r["step"] for r in resumed] == [4, 4]

    # the same losses step by step (the resumed steps too), on each rank
    for rank in (0, 1):
        sharded_losses = first[rank]["losses"] + resumed[rank]["losses"]
        torch.testing.assert_close(torch.tensor(sharded_losses), torch.tensor(ddp[rank]["losses"]),
                                   rtol=1e-5, atol=1e-5)

    # the same weights at the end. AdamW divides by sqrt(v): parameters whose gradient is mathematically zero
    # (attention key biases) move by amplified rounding noise, so tensors are compared at the scale of one step
    # (lr 1e-3) and the whole model by the norm of its difference relative to how far training moved it.
    fsdp_weights = torch.load(tmp_path / "fsdp_part2" / "state.pt", weights_only=True)["model"]
    ddp_weights = torch.load(tmp_path / "ddp" / "state.pt", weights_only=True)["model"]
    torch.manual_seed(0)
    initial = MaskVLForPreTraining(make_config()).state_dict()
    assert fsdp_weights.keys() == ddp_weights.keys() == initial.keys()
    difference = moved = 0.0
    for key, ddp_tensor in ddp_weights.items():
        torch.testing.assert_close(fsdp_weights[key], ddp_tensor, rtol=0, atol=1e-3, msg=key)
        difference += float((fsdp_weights[key].double() - ddp_tensor.double()).pow(2).sum())
        moved += float((ddp_tensor.double() - initial[key].double()).pow(2).sum())
    assert moved > 0 and (difference / moved) ** 0.5 < 1e-2  # measured 6e-4; 1.0 without the optimizer state

    # the sharded run's weights load as an ordinary checkpoint
    loaded = MaskVLForPreTraining.from_pretrained(tmp_path / "fsdp_part2" / "checkpoint")
    for key, tensor in loaded.state_dict().items():
        torch.testing.assert_close(tensor, fsdp_weights[key], rtol=0, atol=0, msg=key)


def load_accelerate_config(name: str):
    from accelerate.commands.config.config_args import ClusterConfig

    return ClusterConfig.from_yaml_file(str(CONFIGS / name))


def test_every_accelerate_config_loads_with_accelerate():
    names = sorted(path.name for path in CONFIGS.glob("*.yaml"))
    assert {"fsdp.yaml", "deepspeed_zero2.yaml", "cpu_ddp_2proc.yaml"} <= set(names)
    for name in names:
        config = load_accelerate_config(name)
        assert config.num_processes >= 1, name


def test_fsdp_config_wraps_every_transformer_layer_of_every_preset():
    """Dry construction: accelerate's FSDP2 plugin from fsdp.yaml's fields, and the layer classes it names against
    the presets' models (a class name that matches nothing would leave those layers in the root unit)."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    fsdp = load_accelerate_config("fsdp.yaml").fsdp_config
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2, auto_wrap_policy="transformer_based_wrap",
        transformer_cls_names_to_wrap=fsdp["fsdp_transformer_layer_cls_to_wrap"].split(","),
        reshard_after_forward=fsdp["fsdp_reshard_after_forward"], state_dict_type=fsdp["fsdp_state_dict_type"])
    names = set(plugin.transformer_cls_names_to_wrap)
    for preset in ("maskvlm-tiny", "mlim-tiny", "lxmert-tiny"):
        model = MaskVLForPreTraining(MaskVLConfig.from_preset(preset))
        classes = {type(module).__name__ for module in model.modules()}
        layers = {name for name in classes if name.endswith("Layer")}  # BertLayer, ViTLayer, MaskVLFusionLayer
        assert layers <= names, f"{preset}: layers {sorted(layers - names)} are not FSDP units"
        assert names & classes, preset
        # FSDP2 refuses scalar parameters (`fully_shard doesn't support scalar parameters`)
        scalars = [name for name, parameter in model.named_parameters() if parameter.dim() == 0]
        assert not scalars, f"{preset}: scalar parameters {scalars}"
