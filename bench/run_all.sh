#!/usr/bin/env bash
# Run the three MaskVL benchmarks one after the other (about 10 minutes on a quiet 2-core CPU) and keep
# their tables (bench/results/*.md), raw numbers (*.json) and the scaling figure. Run it on an idle machine:
# the scripts report how much CPU other processes took and keep only quiet rounds when they can.
#   bash bench/run_all.sh            # from the repository root
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
python bench/train_step.py --output_json bench/results/train_step.json --plot bench/results/scaling.png \
    | tee bench/results/train_step.md
python bench/collator.py --output_json bench/results/collator.json | tee bench/results/collator.md
python bench/efficiency.py --profile maskvlm vilt --output_json bench/results/efficiency.json \
    | tee bench/results/efficiency.md
