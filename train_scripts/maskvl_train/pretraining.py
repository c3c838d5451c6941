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

import json
import logging
import os
from dataclasses import asdict

import datasets
import transformers
from maskvl_processing import (
    CaptionTagger,
    MaskVLDataCollator,
    MaskVLImageProcessor,
    MaskVLProcessor,
    load_tokenizer,
    train_wordpiece_tokenizer,
)
from maskvl_processing.pretraining_data import load_image_text_dataset, train_eval_split
from maskvl_trainer import ExampleSeededMasking, MaskVLPreTrainer, most_frequent_masked_token
from pretrain_args import parse_args
from training_guards import non_text_token_ids, screen_examples, without_image_decoding
from transformers import set_seed
from transformers.trainer_utils import get_last_checkpoint

from modeling_maskvl import MaskVLConfig, MaskVLForPreTraining

logger = logging.getLogger("pretrain")

ID_COLUMN = "example_id"
TAGGED_COLUMNS = CaptionTagger.output_columns + (ID_COLUMN,)


# ---- data ------------------------------------------------------------------------------------------
def load_raw_splits(data_args, image_size: int, seed: int) -> dict:
    """{"train": ..., "validation": ...} with `image` and `caption` columns (map-style or streaming)."""
    source = dict(
        dataset_name=data_args.dataset_name, dataset_config_name=data_args.dataset_config_name,
        train_dir=data_args.train_dir, webdataset=data_args.webdataset, streaming=data_args.streaming,
        image_column=data_args.image_column, caption_column=data_args.caption_column, cache_dir=data_args.cache_dir,
        synthetic_image_size=image_size, seed=seed,
    )
    synthetic = not (data_args.dataset_name or data_args.train_dir or data_args.webdataset)
    train = load_image_text_dataset(split=data_args.train_split, synthetic_num_examples=data_args.synthetic_num_examples,
                                    **source)
    if synthetic:  # an independent random stream: no scene is shared with the training split
        evaluation = load_image_text_dataset(split="validation", synthetic_num_examples=data_args.eval_size, **source)
    elif data_args.eval_split is not None:
        evaluation = load_image_text_dataset(split=data_args.eval_split, **source)
    else:
        held_out = train_eval_split(train, data_args.eval_size, seed=seed)
        train, evaluation = held_out["train"], held_out["validation"]
    splits = {"train": train, "validation": evaluation}
    for name, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples)):
        if limit is not None:
            ds = splits[name]
            splits[name] = ds.take(limit) if isinstance(ds, datasets.IterableDataset) else ds.select(range(min(limit, len(ds))))
    return splits


def training_captions(train, limit: int) -> list[str]:
    """Up to `limit` training captions (for the tokenizer)."""
    if isinstance(train, datasets.Dataset):
        return train.select(range(min(limit, len(train))))["caption"]
    return [row["caption"] for row in train.select_columns(["caption"]).take(limit)]


def tag_batch(batch: dict, indices: list[int], tagger: CaptionTagger) -> dict:
    """Batched map function: word classes + word-pieces (`CaptionTagger`) and the example id."""
    out = tagger(batch, indices)
    out[ID_COLUMN] = list(indices)
    return out


def tag_splits(splits: dict, tokenizer, data_args) -> tuple[dict, dict]:
    """Tag and tokenise every split with `datasets.map` (cached, `num_proc`); keep `image` + token features.
    Images stay undecoded (the collator opens them; a bad file raises an error naming it). With
    --skip_bad_examples every example is checked and bad ones are dropped: returns (splits, {split: report})."""
    tagged, skipped = {}, {}
    for name, ds in splits.items():
        ds = without_image_decoding(ds)
        columns = ds.column_names or list(next(iter(ds)).keys())
        backend = data_args.tagger
        if backend == "auto":
            backend = "dataset" if {"words", "word_classes"} <= set(columns) else "pattern"
        tagger = CaptionTagger(
            tokenizer, backend=backend, max_length=data_args.max_seq_length, spacy_model=data_args.spacy_model,
            on_error="skip" if data_args.skip_bad_examples else "raise", object_vocab=data_args.object_vocab,
            attribute_vocab=data_args.attribute_vocab, relation_vocab=data_args.relation_vocab,
        )
        map_kwargs = dict(batched=True, with_indices=True, fn_kwargs={"tagger": tagger},
                          remove_columns=[c for c in columns if c != "image"])
        if isinstance(ds, datasets.Dataset):
            map_kwargs.update(num_proc=data_args.preprocessing_num_workers,
                              load_from_cache_file=not data_args.overwrite_cache, desc=f"Tagging {name} captions")
        ds = ds.map(tag_batch, **map_kwargs)
        if data_args.skip_bad_examples:
            ds, skipped[name] = screen_examples(
                ds, split=name, special_token_ids=non_text_token_ids(tokenizer), id_column=ID_COLUMN,
                num_proc=map_kwargs.get("num_proc"), load_from_cache_file=map_kwargs.get("load_from_cache_file", True))
        tagged[name] = ds
    return tagged, skipped


# ---- model -----------------------------------------------------------------------------------------
def build_config(model_args) -> MaskVLConfig:
    """The config before the tokenizer is known (gives the image size for data and processor)."""
    if model_args.model_name_or_path is not None:
        return MaskVLConfig.from_pretrained(model_args.model_name_or_path)
    return MaskVLConfig.from_preset(model_args.preset, **model_args.config_overrides_dict())


def build_tokenizer(model_args, train, training_args, checkpoint: str | None):
    """--tokenizer, else the tokenizer of the starting checkpoint / text tower, else the one of the checkpoint
    being resumed, else a WordPiece tokenizer trained on the training captions.

    WordPiece training is not deterministic (ties are broken in hash order): the tokenizer is trained once, by
    the main process, saved to --output_dir and loaded from there by every process.
    """
    source = model_args.tokenizer or model_args.model_name_or_path or model_args.init_text_from or checkpoint
    if source is not None:
        return load_tokenizer(source)
    with training_args.main_process_first(local=False, desc="training the tokenizer"):
        if training_args.process_index == 0:
            captions = training_captions(train, model_args.tokenizer_training_examples)
            logger.info("Training a WordPiece tokenizer (vocabulary %d) on %d captions",
                        model_args.tokenizer_vocab_size, len(captions))
            trained = train_wordpiece_tokenizer(captions, vocab_size=model_args.tokenizer_vocab_size)
            trained.save_pretrained(training_args.output_dir)
        return load_tokenizer(training_args.output_dir)


def build_model(model_args, config: MaskVLConfig, tokenizer, max_seq_length: int) -> MaskVLForPreTraining:
    """A fresh model (vocabulary = the tokenizer's), pretrained towers, or a saved MaskVL checkpoint."""
    if model_args.model_name_or_path is not None:
        model = MaskVLForPreTraining.from_pretrained(model_args.model_name_or_path)
    elif model_args.init_text_from or model_args.init_vision_from:
        model = MaskVLForPreTraining.from_text_vision_pretrained(
            model_args.init_text_from, model_args.init_vision_from, config=config)
    else:
        config.text_config.vocab_size = len(tokenizer)
        model = MaskVLForPreTraining(config)
    text_config = model.config.text_config
    if len(tokenizer) > text_config.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the text tower only {text_config.vocab_size}; "
                         "use the text tower's own tokenizer (--tokenizer)")
    if max_seq_length > text_config.max_position_embeddings:
        raise ValueError(f"--max_seq_length {max_seq_length} exceeds the text tower's "
                         f"max_position_embeddings {text_config.max_position_embeddings}")
    return model


# ---- checkpoints and outputs -----------------------------------------------------------------------
def resolve_checkpoint(value: str | None, output_dir: str) -> str | None:
    """--resume_from_checkpoint: None / "false" -> start fresh; "auto" / "latest" / "true" -> the latest
    checkpoint of `output_dir` (None when there is none); otherwise a checkpoint folder that must exist."""
    if value is None or str(value).lower() in ("", "false", "no", "none"):
        last = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
        if last is not None:
            logger.warning("%s holds %s; starting from scratch. Pass --resume_from_checkpoint auto to continue it.",
                           output_dir, os.path.basename(last))
        return None
    if str(value).lower() in ("auto", "latest", "true", "yes"):
        last = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
        logger.info("Resuming from %s", last if last else f"scratch (no checkpoint in {output_dir})")
        return last
    if not os.path.isdir(value):
        raise FileNotFoundError(f"--resume_from_checkpoint {value!r} is not a checkpoint folder")
    return value


def shareable_arguments(*dataclasses_) -> dict:
    """All arguments as a JSON-able dict without tokens or machine-local paths (for the Hub)."""
    out = {}
    for args in dataclasses_:
        values = args.to_dict() if hasattr(args, "to_dict") else asdict(args)
        for key, value in values.items():
            if key.endswith("_token") or key in ("output_dir", "logging_dir", "hub_token", "push_to_hub_token"):
                continue
            if isinstance(value, str) and os.path.isabs(value):
                value = os.path.basename(os.path.normpath(value))
            out[key] = value
    return json.loads(json.dumps(out, default=str))


def training_summary(model, data_args, masking, training_args, metrics, num_train, num_eval) -> dict:
    """What the model card reports (`model_card.write_model_card`); local paths are reduced there."""
    def policy(kind):
        return {"name": masking[f"{kind}_policy"], **masking[f"{kind}_policy_kwargs"]}

    final = {k: v for k, v in metrics.items() if k.endswith(("loss", "accuracy")) and "baseline" not in k}
    final["frequency_baseline_accuracy"] = metrics.get("eval_frequency_baseline_accuracy")
    return {
        "preset": model.config.preset,
        "dataset": data_args.dataset_name or data_args.train_dir or data_args.webdataset or "synthetic_scenes",
        "dataset_description": data_args.source_description,
        "text_masking": policy("text"), "image_masking": policy("image"), "joint_masking": policy("joint"),
        "itm_negative_prob": masking["itm_negatives"] or 0.0,
        "max_steps": training_args.max_steps,
        "num_train_epochs": None if training_args.max_steps > 0 else training_args.num_train_epochs,
        "metrics": final, "num_train_examples": num_train, "num_eval_examples": num_eval, "seed": training_args.seed,
    }


def main(argv=None) -> MaskVLPreTrainer:
    # 1. arguments
    model_args, data_args, masking_args, training_args = parse_args(argv=argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        level=logging.INFO if training_args.should_log else logging.WARNING)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    datasets.utils.logging.set_verbosity(training_args.get_process_log_level())
    if training_args.gradient_checkpointing and training_args.ddp_find_unused_parameters is None:
        # maskvlm skips the MLM or MIM pass when a batch has no row of that kind: DDP must allow unused weights
        training_args.ddp_find_unused_parameters = True
    checkpoint = resolve_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
    set_seed(training_args.seed)
    data_seed = training_args.data_seed if training_args.data_seed is not None else training_args.seed

    # 2. data, tokenizer, tagging
    config = build_config(model_args)
    image_size = config.vision_config.image_size
    with training_args.main_process_first(desc="loading data"):
        raw = load_raw_splits(data_args, image_size, data_seed)
    tokenizer = build_tokenizer(model_args, raw["train"], training_args, checkpoint)
    with training_args.main_process_first(desc="tagging captions"):
        tagged, skipped = tag_splits(raw, tokenizer, data_args)
    train_dataset, eval_dataset = tagged["train"], tagged["validation"]
    if isinstance(train_dataset, datasets.IterableDataset) and training_args.max_steps <= 0:
        raise ValueError("a streaming training set has no length: give --max_steps")

    # 3. model and processor
    model = build_model(model_args, config, tokenizer, data_args.max_seq_length)
    # `truncation=True` downstream (processor, pipelines, evaluation) must stop at the text tower's positions
    tokenizer.model_max_length = min(tokenizer.model_max_length, model.config.text_config.max_position_embeddings)
    vision = model.config.vision_config
    image_processor = MaskVLImageProcessor(size={"height": vision.image_size, "width": vision.image_size},
                                           patch_size=vision.patch_size)
    processor = MaskVLProcessor(image_processor=image_processor, tokenizer=tokenizer)
    logger.info("Model %s: %.2fM parameters, vocabulary %d, image %dpx / patch %dpx", model.config.preset,
                model.num_parameters() / 1e6, len(tokenizer), vision.image_size, vision.patch_size)

    # 4. masking: training masks depend on (seed, epoch, example ids); evaluation masks are fixed
    masking = masking_args.collator_kwargs(model.config)
    collator_kwargs = dict(tokenizer=tokenizer, image_processor=image_processor, max_length=data_args.max_seq_length,
                           on_error="skip" if data_args.skip_bad_examples else "raise", **masking)
    train_collator = ExampleSeededMasking(MaskVLDataCollator(**collator_kwargs), seed=training_args.seed)
    eval_collator = ExampleSeededMasking(MaskVLDataCollator(**collator_kwargs), seed=masking_args.eval_mask_seed)
    logger.info("Masking: %r", train_collator.collator)
    baseline_id, baseline_share = most_frequent_masked_token(
        train_dataset, ExampleSeededMasking(MaskVLDataCollator(**collator_kwargs), seed=training_args.seed + 1),
        data_args.baseline_examples)
    logger.info("Most frequent masked training token: %r (%.1f%% of masked targets)",
                tokenizer.convert_ids_to_tokens(baseline_id), 100 * baseline_share)

    # 5. train
    trainer = MaskVLPreTrainer(
        model=model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
        data_collator=train_collator, eval_data_collator=eval_collator, processing_class=processor,
        baseline_token_id=baseline_id,
    )
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model()  # weights (safetensors), config with auto_map, code files, processor + tokenizer
    for report in skipped.values():  # --skip_bad_examples: counted when the split was read
        logger.warning("bad examples %s", report.summary())
        train_result.metrics[f"skipped_examples_{report.split}"] = report.skipped
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()

    # 6. final held-out evaluation, shareable arguments, model card
    metrics = trainer.evaluate()
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)
    if trainer.is_world_process_zero():
        output_dir = training_args.output_dir
        with open(os.path.join(output_dir, "training_args.json"), "w", encoding="utf-8") as handle:
            json.dump(shareable_arguments(model_args, data_args, masking_args, training_args), handle, indent=2)
        pickled = os.path.join(output_dir, "training_args.bin")  # holds hub_token and absolute paths
        if os.path.exists(pickled):
            os.remove(pickled)
        num_train = len(train_dataset) if isinstance(train_dataset, datasets.Dataset) else None
        num_eval = len(eval_dataset) if isinstance(eval_dataset, datasets.Dataset) else None
        summary = training_summary(model, data_args, masking, training_args, metrics, num_train, num_eval)
        try:
            import model_card
        except ModuleNotFoundError as error:
            if error.name != "model_card":
                raise
            logger.info("train_scripts/model_card.py not found: no model card written")
        else:
            model_card.write_model_card(output_dir, summary)
        if "eval_mlm_accuracy" in metrics:
            print(f"held-out masked-token accuracy {metrics['eval_mlm_accuracy']:.3f} vs frequency baseline "
                  f"{metrics.get('eval_frequency_baseline_accuracy', float('nan')):.3f} (always "
                  f"{tokenizer.convert_ids_to_tokens(baseline_id)!r}); model saved to {output_dir}")
    return trainer


if __name__ == "__main__":
    main()
