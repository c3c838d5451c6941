"""A real 2-process DDP pre-training run on the CPU (gloo), launched like a user would with accelerate."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import json, os, sys
import torch
import torch.distributed as dist
from maskvl_train import pretraining as pretrain

report_dir = sys.argv[1]
trainer = pretrain.main(sys.argv[2:])
rank = trainer.args.process_index
weights = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
torch.save(weights, os.path.join(report_dir, f"rank{rank}.pt"))
with open(os.path.join(report_dir, f"rank{rank}.json"), "w") as handle:
    json.dump({"rank": rank, "world_size": trainer.args.world_size,
               "dist_world_size": dist.get_world_size() if dist.is_initialized() else 1,
               "backend": dist.get_backend() if dist.is_initialized() else None,
               "global_step": trainer.state.global_step}, handle)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_cpu_ddp_keeps_replicas_equal(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent(PROBE))
    reports = tmp_path / "reports"
    reports.mkdir()
    config = REPO_ROOT / "train_scripts" / "accelerate_configs" / "cpu_ddp_2proc.yaml"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
        "--main_process_port", str(free_port()), str(probe), str(reports),
        "--output_dir", str(tmp_path / "out"), "--image_size", "32", "--synthetic_num_examples", "64",
        "--eval_size", "16", "--baseline_examples", "64", "--max_steps", "4", "--per_device_train_batch_size", "8",
        "--logging_steps", "2", "--eval_strategy", "no", "--save_strategy", "no", "--tokenizer_vocab_size", "200",
        "--disable_tqdm", "true",
    ]  # fmt: skip
    env = {key: value for key, value in os.environ.items() if key not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]

    ranks = [json.loads((reports / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["dist_world_size"] for r in ranks] == [2, 2]
    assert [r["backend"] for r in ranks] == ["gloo", "gloo"] and [r["global_step"] for r in ranks] == [4, 4]
    replica0, replica1 = (torch.load(reports / f"rank{rank}.pt") for rank in (0, 1))
    torch.testing.assert_close(replica1, replica0, rtol=0, atol=0)
    assert (tmp_path / "out" / "model.safetensors").is_file()  # saved once, by the main process
