"""Compare masking strategies against the amount of pre-training data, over seeds (the papers' axis).

Every strategy is pre-trained on nested fractions of one pool of pairs (`--pretrain_fractions`, drawn with the
fixed `--data_seed`: the 10% subset is inside the 25% one), for every `--seeds` value, all with the same number of
steps; each checkpoint is then scored by image necessity (bootstrap 95% intervals over masked tokens), easy-VQA
fine-tuning on the whole fine-tuning pool (overall and per question type) and retrieval R@1/5. Tables give the mean
over seeds with a Student-t 95% interval; a finding holds only when its interval excludes zero.

Launch (from the repository root):

    python train_scripts/compare_strategies.py --output_dir outputs/compare \\
        --report_path docs/strategy_comparison.md --figures_dir docs/figures
    python train_scripts/compare_strategies.py --quick --output_dir outputs/compare_quick    # about 9 minutes (2-core CPU)
    python train_scripts/compare_strategies.py compare.yaml       # arguments from a YAML / JSON file

    # pre-train in two processes (2 cores), then evaluate everything in a third run that reuses them
    python train_scripts/compare_strategies.py --output_dir OUT --strategies random15 --pretrain_only &
    python train_scripts/compare_strategies.py --output_dir OUT --strategies objects --pretrain_only &
    wait; python train_scripts/compare_strategies.py --output_dir OUT --strategies random15 objects

Re-running with the same `--output_dir` reuses finished pre-training runs (`--reuse_pretraining`).

Outputs: `OUTPUT_DIR/<strategy>/frac<f>/seed<s>/` (checkpoints, `.log` next to each), `OUTPUT_DIR/tokenizer/` (shared
by every run: pre-training captions + easy-VQA questions), `OUTPUT_DIR/image_necessity/`,
`OUTPUT_DIR/downstream/<run>/{vqa,retrieval}/`, and next to the report `strategy_comparison.json` — schema
(version 2)::

    {"schema_version": 2, "task": "strategy_comparison", "command": str, "machine": str, "settings": {...},
     "strategies": {name: [pretrain flags]}, "findings": [{"claim", "holds", "evidence"}],
     "summary": {strategy: {fraction: {metric: {"mean", "std", "ci95", "n", "values"}}}},
     "runs": {strategy: {fraction: {seed: {"pretraining", "necessity", "downstream"}}}},
     "seconds": {"pretraining", "evaluation", "total"}}

and the report (`--report_path`, default `OUTPUT_DIR/strategy_comparison.md`) with its figure
(`--figures_dir`): easy-VQA accuracy, retrieval R@5 and object-word Δ loss against the pre-training fraction.
Console script: `maskvl-compare-strategies`.
"""

from maskvl_train.strategy_comparison import main

if __name__ == "__main__":
    main()
