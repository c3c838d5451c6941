#!/usr/bin/env bash
# Quality of issue 16's fast paths at the quick pre-training run's budget, against the paper's path.
#
# Four runs of the quick pre-training run (`train_scripts/recipes/quick.yaml`: [CLS] ITC, 4,000 pairs, 2,000 steps,
# the budget at which docs/pretraining.md item 7 measured them; same seed and data), differing only in
#   mask_token  the paper's path (config default): the vision tower sees masked patches as its mask token
#   visible     "mim_encoder": "visible"   (MAE: MIM encodes only the unmasked patches)
#   drop50      "patch_drop_ratio": 0.5    (FLIP: half the patches out of ITC/ITM)
#   fast        both
# (--config_overrides replaces the recipe's, so each variant's JSON starts with the recipe's "itc_pooling": "cls")
# then, for each: held-out MLM / MIM / ITC / ITM loss, MLM and ITM accuracy (pretrain.py's final evaluation), retrieval
# R@k (evaluate_retrieval.py) and the image-necessity table of all four (evaluate_image_necessity.py).
# About 4 x 6 minutes on a quiet 2-core CPU; run it on an idle machine (it trains).
#
#   bash bench/fast_paths_quality.sh                        # writes outputs/fast_paths/<variant>/...
#   bash bench/fast_paths_quality.sh outputs/fp --max_steps 300 --seed 1     # extra pretrain.py arguments
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT=${1:-outputs/fast_paths}
shift || true
QUICK='"itc_pooling": "cls"'
declare -A OVERRIDES=(
  [mask_token]="{$QUICK}"
  [visible]="{$QUICK, \"mim_encoder\": \"visible\"}"
  [drop50]="{$QUICK, \"patch_drop_ratio\": 0.5}"
  [fast]="{$QUICK, \"mim_encoder\": \"visible\", \"patch_drop_ratio\": 0.5}"
)
VARIANTS=(mask_token visible drop50 fast)
for variant in "${VARIANTS[@]}"; do
  echo "== pretrain: $variant (${OVERRIDES[$variant]})"
  "$PYTHON" train_scripts/pretrain.py train_scripts/recipes/quick.yaml --output_dir "$OUT/$variant" \
    --config_overrides "${OVERRIDES[$variant]}" "$@" \
    2>&1 | tee "$OUT.$variant.log" | grep -E "eval_|train_runtime|held-out" || true
  "$PYTHON" train_scripts/evaluate_retrieval.py --checkpoint "$OUT/$variant" --output_dir "$OUT/$variant/retrieval" \
    > "$OUT/$variant/retrieval.log" 2>&1
done
checkpoints=(); for variant in "${VARIANTS[@]}"; do checkpoints+=("$OUT/$variant"); done
"$PYTHON" train_scripts/evaluate_image_necessity.py --checkpoint "${checkpoints[@]}" \
  --checkpoint_names "${VARIANTS[@]}" --output_dir "$OUT/image_necessity" 2>&1 | tail -n 40

"$PYTHON" - "$OUT" "${VARIANTS[@]}" <<'EOF'
import json, sys
from pathlib import Path

out, variants = Path(sys.argv[1]), sys.argv[2:]
keys = ["eval_mlm_loss", "eval_mim_loss", "eval_itc_loss", "eval_itm_loss", "eval_mlm_accuracy", "eval_itm_accuracy"]
print("\n| variant | " + " | ".join(k.removeprefix("eval_") for k in keys) + " | t2i R@1 | t2i R@5 | train s |")
print("|---" * (len(keys) + 4) + "|")
for variant in variants:
    evaluation = json.loads((out / variant / "eval_results.json").read_text())
    train = json.loads((out / variant / "train_results.json").read_text())
    retrieval = json.loads((out / variant / "retrieval" / "retrieval.json").read_text())
    best = retrieval["itm_rerank"] or retrieval["itc"]
    cells = [f"{evaluation[k]:.4f}" if k in evaluation else "–" for k in keys]
    cells += [f"{best['text_to_image']['R@1']:.3f}", f"{best['text_to_image']['R@5']:.3f}",
              f"{train['train_runtime']:.1f}"]
    print(f"| {variant} | " + " | ".join(cells) + " |")
EOF
