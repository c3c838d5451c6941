"""Tiny hand-built checkpoints (model + processor in one folder) shared by the evaluation tests.

`tiny_checkpoint(name)` builds each one once per test session: a WordPiece tokenizer trained on
synthetic captions, a 32-px `maskvlm-tiny` (or other preset) `MaskVLForPreTraining` with seeded
random weights, and a `MaskVLProcessor`, saved together like the pre-training script's output.
"""

import functools
import tempfile

import torch
from maskvl_processing import MaskVLImageProcessor, MaskVLProcessor, train_wordpiece_tokenizer
from maskvl_processing.synthetic_scenes import make_synthetic_dataset
from transformers import AutoModelForMaskedLM

from modeling_maskvl import MaskVLConfig, MaskVLForPreTraining

IMAGE_SIZE = 32


@functools.cache
def tiny_tokenizer():
    captions = make_synthetic_dataset(300, seed=11, image_size=IMAGE_SIZE)["caption"]
    return train_wordpiece_tokenizer(captions, vocab_size=200)


@functools.cache
def tiny_checkpoint(name: str = "random", preset: str = "maskvlm-tiny", seed: int = 0) -> str:
    """Path of a saved tiny checkpoint; `name` only tells checkpoints apart (different seeds)."""
    tokenizer = tiny_tokenizer()
    folder = tempfile.mkdtemp(prefix=f"maskvl-eval-{name}-")
    processor = MaskVLProcessor(
        image_processor=MaskVLImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, patch_size=8),
        tokenizer=tokenizer,
    )
    config = MaskVLConfig.from_preset(preset, vision_config={"image_size": IMAGE_SIZE},
                                      text_config={"vocab_size": len(tokenizer)})
    torch.manual_seed(seed)
    MaskVLForPreTraining(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_tiny_checkpoint_loads_as_fill_mask_model_with_its_processor():
    folder = tiny_checkpoint()
    processor = MaskVLProcessor.from_pretrained(folder)
    model = AutoModelForMaskedLM.from_pretrained(folder).eval()
    inputs = processor(images=[torch.zeros(3, 40, 40).numpy().transpose(1, 2, 0)], text=["a red circle ."])
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], len(processor.tokenizer))


@functools.cache
def pretrained_checkpoint(text_masking: str = "objects") -> str:
    """Output folder of a few steps of the real pre-training script (`pretrain.main`) on synthetic data."""
    from maskvl_train import pretraining as pretrain

    folder = tempfile.mkdtemp(prefix=f"maskvl-pretrained-{text_masking}-")
    pretrain.main([
        "--output_dir", folder, "--max_steps", "4", "--synthetic_num_examples", "64", "--eval_size", "16",
        "--tokenizer_vocab_size", "200", "--baseline_examples", "32", "--per_device_train_batch_size", "16",
        "--eval_steps", "100", "--save_steps", "100", "--disable_tqdm", "true", "--text_masking", text_masking,
    ])
    return folder
