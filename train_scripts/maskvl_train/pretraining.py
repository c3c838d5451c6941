"""Masked vision-and-language pre-training of a MaskVL model with transformers' Trainer (`maskvl-pretrain`).

Linear: parse arguments -> load image-caption data -> tokenizer -> tag + tokenise (datasets.map) ->
model -> collators (masking) -> Trainer -> save a Hub-ready folder (weights, config with auto_map,
processor + tokenizer, code files, training_args.json, metrics, model card). Launch commands are in
`train_scripts/pretrain.py`.
"""

import json
import logging
import os

import datasets
import transformers
from maskvl_processing import (
    MaskVLDataCollator,
    MaskVLImageProcessor,
    MaskVLProcessor,
    load_tokenizer,
    train_wordpiece_tokenizer,
)
from transformers import set_seed

from modeling_maskvl import MaskVLConfig, MaskVLForPreTraining

from .arguments import parse_args
from .checkpoints import resolve_checkpoint
from .data import load_raw_splits, screen_examples, tag_splits, training_captions
from .image_necessity import image_use_check
from .model_card import pretraining_summary, write_model_card
from .scrub import shareable_arguments
from .seeded_masking import ExampleSeededMasking, most_frequent_masked_token
from .trainer import MaskVLPreTrainer, batch_norm_layers, precise_bn_images
from .validation import check_arguments

logger = logging.getLogger("pretrain")


# ---- model -----------------------------------------------------------------------------------------
def build_config(model_args) -> MaskVLConfig:
    """The config before the tokenizer is known (gives the image size for data and processor). A checkpoint's
    config takes the objective's `--config_overrides` (checked by `validation.check_arguments`)."""
    if model_args.model_name_or_path is not None:
        config = MaskVLConfig.from_pretrained(model_args.model_name_or_path)
        for key, value in json.loads(model_args.config_overrides or "{}").items():
            setattr(config, key, value)
        config._validate()  # the values too (an unknown mim_loss, a patch_drop_ratio outside [0, 1))
        return config
    return MaskVLConfig.from_preset(model_args.preset, **model_args.config_overrides_dict())


def build_tokenizer(model_args, train, training_args, checkpoint: str | None, on_error: str = "raise"):
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
            captions = training_captions(train, model_args.tokenizer_training_examples, on_error)  # screened
            logger.info("Training a WordPiece tokenizer (vocabulary %d) on %d captions",
                        model_args.tokenizer_vocab_size, len(captions))
            trained = train_wordpiece_tokenizer(captions, vocab_size=model_args.tokenizer_vocab_size)
            trained.save_pretrained(training_args.output_dir)
        return load_tokenizer(training_args.output_dir)


def build_model(model_args, config: MaskVLConfig, tokenizer, max_seq_length: int) -> MaskVLForPreTraining:
    """A fresh model (vocabulary = the tokenizer's), pretrained towers, or a saved MaskVL checkpoint."""
    if model_args.model_name_or_path is not None:
        model = MaskVLForPreTraining.from_pretrained(model_args.model_name_or_path, config=config)
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


def main(argv=None) -> MaskVLPreTrainer:
    # 1. arguments
    model_args, data_args, masking_args, training_args = parse_args(argv=argv)
    check_arguments(model_args, training_args)  # before any data is read
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        level=logging.INFO if training_args.should_log else logging.WARNING)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    datasets.utils.logging.set_verbosity(training_args.get_process_log_level())
    if training_args.gradient_checkpointing and training_args.ddp_find_unused_parameters is None:
        # maskvlm skips the MLM or MIM pass when a batch has no row of that kind: DDP must allow unused weights
        training_args.ddp_find_unused_parameters = True
    checkpoint = resolve_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir,
                                    require_optimizer=not training_args.save_only_model)
    set_seed(training_args.seed)
    data_seed = training_args.data_seed if training_args.data_seed is not None else training_args.seed

    # 2. data, tokenizer, tagging
    config = build_config(model_args)
    image_size = config.vision_config.image_size
    with training_args.main_process_first(desc="loading data"):
        raw = load_raw_splits(data_args, image_size, data_seed)
    tokenizer = build_tokenizer(model_args, raw["train"], training_args, checkpoint,
                                "skip" if data_args.skip_bad_examples else "raise")
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

    precise_bn_pixels = None
    if batch_norm_layers(model.maskvl.vision_model):  # precise BatchNorm: a fixed set of training images
        precise_bn_pixels = precise_bn_images(
            train_dataset, ExampleSeededMasking(MaskVLDataCollator(**collator_kwargs), seed=training_args.seed + 2),
            training_args.precise_bn_examples)

    # 5. train
    trainer = MaskVLPreTrainer(
        model=model, args=training_args, train_dataset=train_dataset, eval_dataset=eval_dataset,
        data_collator=train_collator, eval_data_collator=eval_collator, processing_class=processor,
        baseline_token_id=baseline_id, precise_bn_pixels=precise_bn_pixels,
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
        summary = pretraining_summary(model, data_args, masking, training_args, metrics, num_train, num_eval)
        write_model_card(output_dir, summary)
        if "eval_mlm_accuracy" in metrics:
            print(f"held-out masked-token accuracy {metrics['eval_mlm_accuracy']:.3f} vs frequency baseline "
                  f"{metrics.get('eval_frequency_baseline_accuracy', float('nan')):.3f} (always "
                  f"{tokenizer.convert_ids_to_tokens(baseline_id)!r}); model saved to {output_dir}")
        if model.config.use_mlm_head and data_args.image_use_check and isinstance(raw["validation"], datasets.Dataset):
            held_out = raw["validation"]
            if data_args.skip_bad_examples:  # the rows the run skipped (unreadable lines, blank captions) skip here too
                held_out, _ = screen_examples(held_out, split="validation", caption_column="caption")
            use = image_use_check(output_dir, held_out, data_args, training_args.per_device_eval_batch_size)
            for name, row in use.items():
                metrics[f"eval_image_acc1_{name}"], metrics[f"eval_blank_acc1_{name}"] = row["acc1_with"], row["acc1_blank"]
                metrics[f"eval_delta_loss_{name}"] = row["delta_loss"]
            trainer.save_metrics("eval", metrics)
            print("image use (held-out Acc@1 with the image / with a blank image): " + "; ".join(
                f"{name} words {row['acc1_with']:.3f} / {row['acc1_blank']:.3f} ({100 * row['gap']:+.1f} points, "
                f"Δ loss {row['delta_loss']:+.2f} nats)" for name, row in use.items()))
    return trainer


if __name__ == "__main__":
    main()
