"""Worker of tests/test_sharded_training.py: a few training steps of MaskVLForPreTraining on 2 CPU processes (gloo).

Launched by ``accelerate launch --config_file <config> tests/sharded_training_worker.py OUT_DIR STEPS [RESUME]``.
The launch config decides the wrapping: under an FSDP config (accelerate sets ``ACCELERATE_USE_FSDP`` and the
``FSDP_*`` variables from its ``fsdp_config``) the model is sharded by accelerate's own ``fsdp2_prepare_model``
with the plugin those variables describe; otherwise it is wrapped in ``DistributedDataParallel``.

Why not the Trainer: accelerate 1.15 turns FSDP on only for accelerator devices (``AcceleratorState`` sets
``DistributedType.FSDP`` inside its GPU/XPU/NPU branch), so on a CPU ``Trainer`` with an FSDP config silently
trains plain DDP (``use_cpu=True``) or refuses ("Using fsdp only works in distributed training."). torch's FSDP2
itself runs on the CPU over gloo, so the loop here is the Trainer's step without the Trainer.

Every rank trains on its own deterministic batches (seeded by step and rank). With RESUME, the run starts from
the full (unsharded) model + optimizer state saved by an earlier run. The end state is written by rank 0:
``OUT_DIR/state.pt`` (full model and optimizer state dicts, step) and ``OUT_DIR/report_rank{r}.json``.
"""

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist

from modeling_maskvl import MaskVLConfig, MaskVLForPreTraining

BATCH, TEXT_LEN, IMAGE_SIZE, VOCAB = 4, 12, 32, 1024


def make_config() -> MaskVLConfig:
    no_dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}  # same numbers in DDP and FSDP
    return MaskVLConfig.from_preset("maskvlm-tiny", text_config=no_dropout,
                                    vision_config={"image_size": IMAGE_SIZE, **no_dropout})


def make_batch(step: int, rank: int, num_patches: int) -> dict:
    """A deterministic batch for (step, rank): every pass of the separate-pass step runs (MLM, MIM, ITM, ITC)."""
    g = torch.Generator().manual_seed(1000 * step + rank)
    input_ids = torch.randint(5, VOCAB, (BATCH, TEXT_LEN), generator=g)
    labels = torch.full_like(input_ids, -100)
    text_rows, image_rows = torch.tensor([0, 1]), torch.tensor([2, 3])
    positions = torch.randint(1, TEXT_LEN - 1, (2, 3), generator=g)
    labels[text_rows[:, None], positions] = input_ids[text_rows[:, None], positions]
    input_ids[text_rows[:, None], positions] = 4  # [MASK]
    bool_masked_pos = torch.zeros(BATCH, num_patches, dtype=torch.bool)
    bool_masked_pos[image_rows] = torch.rand(2, num_patches, generator=g) < 0.6
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "pixel_values": torch.randn(BATCH, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g),
            "bool_masked_pos": bool_masked_pos, "labels": labels, "itm_labels": torch.tensor([1, 1, 1, 0])}


def shard_like_accelerate(model: torch.nn.Module) -> torch.nn.Module:
    """accelerate's FSDP2 preparation, with the plugin that the launch config's ``fsdp_config`` describes."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model

    plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* variables that `accelerate launch` set
    if plugin.fsdp_version != 2:
        raise ValueError(f"the launch config asks for FSDP version {plugin.fsdp_version}; this worker runs FSDP2")
    accelerator = SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin), device=torch.device("cpu"),
                                  mixed_precision="no", is_main_process=dist.get_rank() == 0)
    return fsdp2_prepare_model(accelerator, model)


def main(out_dir: str, steps: int, resume: str | None = None):
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    sharded = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    torch.manual_seed(0)
    model = MaskVLForPreTraining(make_config()).train()
    full_numel = sum(p.numel() for p in model.parameters())
    if sharded:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

        wrapped = shard_like_accelerate(model)
    else:
        wrapped = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    optimizer = torch.optim.AdamW(wrapped.parameters(), lr=1e-3, weight_decay=0.01, foreach=False)
    start = 0
    if resume:
        saved = torch.load(resume, weights_only=True)
        if sharded:
            set_state_dict(wrapped, optimizer, model_state_dict=saved["model"], optim_state_dict=saved["optimizer"],
                           options=StateDictOptions(full_state_dict=True))
        else:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
        start = saved["step"]
    local_numel = sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in wrapped.parameters())

    losses = []
    for step in range(start, start + steps):
        out = wrapped(**make_batch(step, rank, model.config.num_patches))
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(out.loss.detach()))

    if sharded:
        model_state, optim_state = get_state_dict(wrapped, optimizer,
                                                  options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    else:
        model_state, optim_state = model.state_dict(), optimizer.state_dict()
    out_path = Path(out_dir)
    if rank == 0:
        out_path.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model_state, "optimizer": optim_state, "step": start + steps}, out_path / "state.pt")
        # the sharded run's weights make an ordinary checkpoint
        plain = MaskVLForPreTraining(make_config())
        plain.load_state_dict(model_state)
        plain.save_pretrained(out_path / "checkpoint")
    dist.barrier()
    report = {"rank": rank, "world_size": world, "backend": dist.get_backend(), "sharded": sharded,
              "wrapper": type(wrapped).__name__, "full_numel": full_numel, "local_numel": local_numel,
              "losses": losses, "step": start + steps}
    (out_path / f"report_rank{rank}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
