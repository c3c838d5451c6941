#!/usr/bin/env bash
# GPU check of the base-size `maskvlm` preset in bf16, at most 10 minutes on one GPU:
#   1. train_scripts/pretrain.py --preset maskvlm --image_size 224 --bf16, a few hundred steps on synthetic scenes
#      (the whole training loop: data loading, masking, optimizer);
#   2. bench/train_step.py --device cuda at the base size (width 768, 12 layers, 224 px / 16 px patches, 40 tokens),
#      maskvlm (mask-token MIM, visible-only MIM, patch dropping) against FLAVA, interleaved rounds;
#   3. bench/gpu_report.py: samples/s, peak memory and MFU (counted model FLOPs / the GPU's bf16 dense peak).
#
# Usage (from the repository root, in an environment with the package installed and a CUDA build of torch):
#   bash bench/gpu_check.sh                          # writes bench/results/gpu_check/{gpu_check.md,*.json,*.log}
#   bash bench/gpu_check.sh --output_dir /tmp/gpu --steps 200 --batch_size 48
#   bash bench/gpu_check.sh --dry_run                # tiny preset on the CPU (~1 min): checks the script itself
# Environment: PYTHON (default python), PEAK_TFLOPS (bf16 dense peak for a GPU the report does not know).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
DRY_RUN=0
OUTPUT_DIR=bench/results/gpu_check
STEPS=300
BATCH=64
while [ $# -gt 0 ]; do
  case "$1" in
    --dry_run) DRY_RUN=1; shift ;;
    --output_dir) OUTPUT_DIR=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --batch_size) BATCH=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUTPUT_DIR"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false WANDB_DISABLED=true HF_HUB_OFFLINE=1

if [ "$DRY_RUN" = 1 ]; then
  DEVICE=cpu
  PRETRAIN=(--preset maskvlm-tiny --image_size 32 --max_steps 3 --per_device_train_batch_size 4
            --synthetic_num_examples 48 --eval_size 8 --baseline_examples 16 --tokenizer_vocab_size 200
            --use_cpu true)
  BENCH=(--device cpu --hidden_size 32 --num_layers 1 --num_heads 2 --image_size 32 --patch_size 8 --text_length 16
         --batch_size 4 --vocab_size 1000 --num_examples 32 --num_batches 1 --rounds 1 --warmup 0 --time_budget 5
         --models maskvlm flava)
  REPORT=(--device cpu --peak_tflops 0.1 --flop_batches 1)  # an assumed peak: the dry run checks the arithmetic
  LIMIT_PRETRAIN=240; LIMIT_BENCH=180; LIMIT_REPORT=120
else
  DEVICE=cuda
  "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check.sh: torch sees no CUDA GPU (torch ' + torch.__version__ + '); use --dry_run on a CPU')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  PRETRAIN=(--preset maskvlm --image_size 224 --bf16 true --max_steps "$STEPS" --per_device_train_batch_size "$BATCH"
            --synthetic_num_examples 2048 --eval_size 256 --baseline_examples 512 --dataloader_num_workers 8)
  BENCH=(--device cuda --hidden_size 768 --num_layers 12 --num_heads 12 --image_size 224 --patch_size 16
         --text_length 40 --batch_size "$BATCH" --vocab_size 30522 --num_examples 512 --rounds 5 --time_budget 120
         --models maskvlm maskvlm-visible maskvlm-drop50 flava)
  REPORT=(--device cuda ${PEAK_TFLOPS:+--peak_tflops "$PEAK_TFLOPS"})
  LIMIT_PRETRAIN=330; LIMIT_BENCH=200; LIMIT_REPORT=60   # 9.8 minutes in all, at most
fi

echo "== 1/3 pretrain.py ($DEVICE)"
timeout "$LIMIT_PRETRAIN" "$PYTHON" train_scripts/pretrain.py "${PRETRAIN[@]}" --output_dir "$OUTPUT_DIR/pretrain" \
  --eval_strategy no --save_strategy no --logging_steps 50 --skip_memory_metrics false \
  --disable_tqdm true 2>&1 | tee "$OUTPUT_DIR/pretrain.log" | grep -v "^\s*$" | tail -n 25

echo "== 2/3 train_step.py ($DEVICE)"
timeout "$LIMIT_BENCH" "$PYTHON" bench/train_step.py "${BENCH[@]}" --no_scaling \
  --output_json "$OUTPUT_DIR/train_step.json" 2>&1 | tee "$OUTPUT_DIR/train_step.md" | grep -v "^\s*$" | tail -n 30

echo "== 3/3 report"
timeout "$LIMIT_REPORT" "$PYTHON" bench/gpu_report.py --pretrain_dir "$OUTPUT_DIR/pretrain" "${REPORT[@]}" \
  --train_step_json "$OUTPUT_DIR/train_step.json" --output_json "$OUTPUT_DIR/gpu_check.json" \
  --output_md "$OUTPUT_DIR/gpu_check.md"
