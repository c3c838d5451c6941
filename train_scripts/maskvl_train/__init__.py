"""maskvl_train: the training side of MaskVL -- pre-training, evaluation, fine-tuning and publishing.

Installed from `train_scripts/maskvl_train/` (as `processing/` installs as `maskvl_processing`). Inference
users never import it: the model is `modeling_maskvl`, masking and data processing `maskvl_processing`.
The scripts `train_scripts/<name>.py` (and the console scripts `maskvl-<name>`) are thin entry points into
the `main` of one module here; nothing is imported when the package is.

| module | owns |
|---|---|
| `arguments` | argument dataclasses (model, data, masking, pre-training), parsing from the command line / files |
| `data` | image-caption loading for pre-training and evaluation, tagging, screening of bad examples |
| `vqa_data` | easy-VQA and VQAv2-format data, answer vocabulary and targets |
| `seeded_masking` | masks seeded by (seed, epoch, example ids); the most-frequent-masked-token baseline |
| `trainer` | `MaskVLPreTrainer` and its guards (non-finite losses, finite weights, atomic checkpoints) |
| `checkpoints` | checkpoint completeness checks and the resume resolver |
| `scrub` | keeping tokens and local paths out of what is written or published |
| `metrics` | pure metric functions of the evaluations |
| `model_card` | the model card of a checkpoint |
| `pretraining` | `maskvl-pretrain` (`train_scripts/pretrain.py`) |
| `image_necessity` | `maskvl-evaluate-image-necessity` (`train_scripts/evaluate_image_necessity.py`) |
| `retrieval` | `maskvl-evaluate-retrieval` (`train_scripts/evaluate_retrieval.py`) |
| `vqa_finetuning` | `maskvl-finetune-vqa` (`train_scripts/finetune_vqa.py`) |
| `strategy_comparison` | `maskvl-compare-strategies` (`train_scripts/compare_strategies.py`) |
| `publishing` | `maskvl-publish` (`train_scripts/publish.py`) |
"""
