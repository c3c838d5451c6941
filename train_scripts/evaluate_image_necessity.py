"""Image necessity (Bitton et al. 2021): how much does a checkpoint use the image to fill in masked words?

Launch (CPU is fine). The data flags are the pre-training script's `DataArguments`; evaluation data
default to the embedded synthetic set's `test` stream (seed `--data_seed`, default 42 like
pre-training), which shares no scene with pre-training's `train` / `validation` streams; `--eval_size`
(default 500) pairs, rendered at the checkpoint's image size. Real data without `--eval_split` use the
same held-out pairs as pre-training (same `--eval_size` and seed).

    python train_scripts/evaluate_image_necessity.py --checkpoint outputs/pretrain --output_dir outputs/necessity
    python train_scripts/evaluate_image_necessity.py --checkpoint runs/random runs/objects runs/content \
        --output_dir outputs/necessity_matrix
    python train_scripts/evaluate_image_necessity.py --checkpoint ckpt --output_dir out \
        --train_dir data/coco --eval_split validation             # real data: imagefolder + metadata.jsonl
    python train_scripts/evaluate_image_necessity.py config.yaml --eval_size 200   # file, then overrides

Outputs in `--output_dir`:

* `image_necessity.json` — schema (version 1)::

    {"schema_version": 1, "task": "image_necessity",
     "eval_data": {"source": str, "split": str, "num_examples": int, "seed": int},
     "settings": {"eval_masks": [str], "mask_rate": float, "seed": int, "variants": ["blank", "mismatched"],
                  "prompts": [str], "prompt_top_k": [int]},
     "checkpoints": [{"checkpoint": path, "name": str, "pretraining_policy": str | null,
        "masks": {mask: {"num_captions_scored": int, "num_tokens": int,
                         "with_image": {"loss", "exp_loss", "acc@1", "acc@5"},
                         "blank": {...same...}, "mismatched": {...same...},
                         "delta_blank": {"loss", "exp_loss", "acc@1", "acc@5"}, "delta_mismatched": {...}}},
        "object_detection": {prompt: {"precision@1", "precision@5", "precision@10", "num_images"}} | null,
        "model_index": [model-index result entries]}],
     "accuracy_matrix": {"metric": "acc@5", "variant": "with_image", "rows": [mask], "columns": [name],
                         "values": [[float]]}}

  Accuracies are fractions in [0, 1]; `loss` in nats; NaN is written as null.
* `image_necessity.md` — per checkpoint, the paper's table (exp loss and Acc@5: with image /
  without image / Δ), the accuracy matrix and the object-detection table.
* `image_necessity_delta_loss.png` — bar chart of Δ loss (blank and mismatched) by evaluation mask.
"""

from maskvl_train.image_necessity import main

if __name__ == "__main__":
    main()
