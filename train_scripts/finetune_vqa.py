"""Fine-tune a MaskVL pre-training checkpoint for visual question answering; report test accuracy.

Launch:

    python train_scripts/finetune_vqa.py --checkpoint outputs/pretrain --output_dir outputs/vqa
    python train_scripts/finetune_vqa.py --checkpoint outputs/pretrain --output_dir outputs/vqa \
        --train_fraction 0.1 0.2 0.5 1.0 --seeds 0 1 2 --max_train_samples 4000
    accelerate launch --config_file train_scripts/accelerate_configs/cpu.yaml train_scripts/finetune_vqa.py \
        --checkpoint ckpt --dataset_name HuggingFaceM4/VQAv2 --test_split validation --max_answers 3129
    python train_scripts/finetune_vqa.py vqa.yaml --seeds 0 1     # arguments from a file, then overrides

Output `OUTPUT_DIR/vqa_results.json` — schema (version 1)::

    {"schema_version": 1, "task": "visual_question_answering", "checkpoint": str,
     "dataset": {"name": str, "train_split": str, "test_split": str, "train_pool": int, "test_size": int,
                 "label_type": "hard" | "soft", "answers": [str]},
     "oov": {"unk_token": str, "token_rate": float, "question_rate": float, "num_questions": int},
     "settings": {"train_fraction": [float], "seeds": [int], "subset_seed": int, "num_train_epochs": float,
                  "learning_rate": float, "per_device_train_batch_size": int},
     "runs": [{"train_fraction": float, "seed": int, "num_train_examples": int, "accuracy": float,
               "accuracy_by_type": {type: float}, "train_loss": float, "train_seconds": float}],
     "summary": {"<fraction>": {"accuracy": {"mean", "std", "min", "max", "n"},
                                "accuracy_by_type": {type: {"mean", "std", "min", "max", "n"}}}},
     "model_index": [model-index result entries]}

plus `vqa_results.md` (a table of mean ± std per fraction and question type). Accuracies are
fractions in [0, 1]; `std` is the sample standard deviation over seeds (0 with one seed).
"""

from maskvl_train.vqa_finetuning import main

if __name__ == "__main__":
    main()
