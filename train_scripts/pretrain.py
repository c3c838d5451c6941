"""Masked vision-and-language pre-training of a MaskVL model with transformers' Trainer.

Linear: parse arguments -> load image-caption data -> tokenizer -> tag + tokenise (datasets.map) ->
model -> collators (masking) -> Trainer -> save a Hub-ready folder (weights, config with auto_map,
processor + tokenizer, code files, training_args.json, metrics, model card).

Launch (from the repository root):

    # default: tiny MaskVLM on the embedded synthetic scenes, ~5 minutes on a 2-core CPU
    accelerate launch train_scripts/pretrain.py
    python train_scripts/pretrain.py                           # the same, without accelerate

    # arguments from a file, then command-line overrides
    python train_scripts/pretrain.py run.yaml --max_steps 100

    # presets, masking, real data
    accelerate launch train_scripts/pretrain.py --preset mlim-tiny --text_masking objects
    accelerate launch train_scripts/pretrain.py --train_dir data/my_images --caption_column text
    accelerate launch train_scripts/pretrain.py --webdataset "shards/cc3m-{00000..00331}.tar"
    accelerate launch train_scripts/pretrain.py --dataset_name user/captions --streaming --max_steps 10000

    # resume the latest checkpoint of --output_dir (starts fresh if there is none)
    accelerate launch train_scripts/pretrain.py --resume_from_checkpoint auto

    # 2-process DDP on CPU (plain `--cpu --num_processes 2` starts ONE process)
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 train_scripts/pretrain.py
    torchrun --nproc_per_node 2 train_scripts/pretrain.py

    # GPUs: see train_scripts/accelerate_configs/ and docs/pretraining.md
    accelerate launch --config_file train_scripts/accelerate_configs/multi_gpu.yaml train_scripts/pretrain.py \
        --preset maskvlm --image_size 224 --per_device_train_batch_size 64 --bf16
"""

from maskvl_train.pretraining import main

if __name__ == "__main__":
    main()
