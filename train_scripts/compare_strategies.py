"""Compare masking strategies end to end: pre-train each, measure image necessity, fine-tune on easy-VQA.

Launch (the default small run; ~30 minutes on a 2-core CPU):

    python train_scripts/compare_strategies.py --output_dir outputs/compare \
        --report_path docs/strategy_comparison.md --figures_dir docs/figures
    python train_scripts/compare_strategies.py --strategies random15 objects --pretrain_max_steps 50  # quick look
    python train_scripts/compare_strategies.py compare.yaml       # arguments from a YAML / JSON file

Re-running with the same `--output_dir` reuses finished pre-training runs (`--reuse_pretraining`).

Outputs: `OUTPUT_DIR/<strategy>/` (checkpoints, pre-training logs), `OUTPUT_DIR/image_necessity/`
(the image-necessity script's outputs), `OUTPUT_DIR/vqa/<strategy>/vqa_results.json`,
and `strategy_comparison.json` next to the report — schema (version 1)::

    {"schema_version": 1, "task": "strategy_comparison", "command": str, "machine": str,
     "settings": {...every argument...}, "strategies": {name: [pretrain flags]},
     "pretraining": {name: {"seconds": float, "eval_mlm_accuracy": float | null, "eval_loss": float | null}},
     "image_necessity": <image_necessity.json>, "vqa": {name: <vqa_results.json>},
     "findings": [{"claim": str, "holds": bool, "evidence": str}], "seconds": {"pretraining", "image_necessity",
     "vqa", "total"}}

and the report (`--report_path`, default `OUTPUT_DIR/strategy_comparison.md`) with its figures
(`--figures_dir`): Δ loss by evaluation mask and strategy, accuracy matrix, easy-VQA accuracy
against the training fraction.
"""

from maskvl_train.strategy_comparison import main

if __name__ == "__main__":
    main()
