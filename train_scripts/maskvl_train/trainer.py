"""`MaskVLPreTrainer`: transformers' `Trainer` for MaskVL pre-training.

On top of the standard `Trainer` it

* logs every loss part (`mlm_loss`, `mim_loss`, `itc_loss`, `itm_loss`) and the masked-token accuracy
  (`mlm_accuracy`, token-weighted) averaged over the logging window and over processes;
* evaluates on a held-out split with its own collator (fixed evaluation masks) and reports the loss
  parts, `mlm_accuracy`, `itm_accuracy` and `frequency_baseline_accuracy` (always predicting the most
  frequent masked token of the training set, on the same masks);
* leaves gradient-accumulation scaling to the Trainer: the model's loss is a weighted sum of
  per-objective means and takes no `num_items_in_batch`;
* reloads checkpoint weights through `from_pretrained`: transformers 5.23's `Trainer._load_from_checkpoint`
  uses a plain `load_state_dict(strict=False)`, which misses the key renaming `save_pretrained` applies
  (ViT weights are saved under their legacy names), so a resumed run would silently keep a freshly
  initialised vision tower.

`ExampleSeededMasking` wraps a `MaskVLDataCollator` so that the masks of a batch depend only on
(seed, epoch, the batch's example ids). A run resumed from a checkpoint then draws exactly the masks of
an uninterrupted run: the collator's own generator would restart from its seed on resume, and torch's
global generator is consumed by data-loader prefetching.
"""

import itertools
import math

import numpy as np
import torch
from maskvl_processing import MaskVLDataError
from tqdm.auto import tqdm
from training_guards import GuardedTrainerMixin
from transformers import PreTrainedModel, Trainer, TrainerCallback

LOSS_PARTS = ("mlm", "mim", "itc", "itm")
# Sums kept per logging / evaluation window: (value sum, count) for each loss part, then counters.
_WINDOW_KEYS = tuple(f"{part}_loss" for part in LOSS_PARTS) + ("mlm_correct", "itm_correct", "baseline_correct")
_SLOT = {key: index for index, key in enumerate(_WINDOW_KEYS)}


class ExampleSeededMasking:
    """Collator wrapper: reseeds `collator` for every batch from (seed, epoch, example ids).

    Features must carry `id_column` (an int unique per example, e.g. the index from
    `datasets.map(..., with_indices=True)`); it is removed before the wrapped collator sees them.
    `epoch` is set by `EpochCallback` (added by `MaskVLPreTrainer`), so each epoch draws new masks.
    """

    def __init__(self, collator, seed: int, id_column: str = "example_id"):
        self.collator = collator
        self.seed = int(seed)
        self.id_column = id_column
        self.epoch = 0

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(seed={self.seed}, epoch={self.epoch}, collator={self.collator!r})"

    def __call__(self, features: list) -> dict:
        ids, stripped = [], []
        for index, feature in enumerate(features):
            if self.id_column not in feature:
                raise MaskVLDataError(
                    f"item {index} (field {self.id_column!r}): missing; available keys: {sorted(feature)}"
                )
            ids.append(int(feature[self.id_column]))
            stripped.append({key: value for key, value in feature.items() if key != self.id_column})
        entropy = [abs(self.seed), self.epoch, *ids]
        self.collator.seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 2)
        self.collator.reset_generator()
        try:
            return self.collator(stripped)
        except MaskVLDataError as error:  # "item i" is the position in the batch: name the examples too
            raise MaskVLDataError(f"{error} [batch items 0..{len(ids) - 1} are examples {ids}]") from error


class EpochCallback(TrainerCallback):
    """Tells an `ExampleSeededMasking` collator which epoch is starting (also after a resume)."""

    def __init__(self, masking: ExampleSeededMasking):
        self.masking = masking

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.masking.epoch = int(math.floor((state.epoch or 0.0) + 1e-6))


def most_frequent_masked_token(dataset, masking, num_examples: int, batch_size: int = 64) -> tuple[int, float]:
    """Run `masking` (an `ExampleSeededMasking`) over the first `num_examples` examples of `dataset` and
    return (the most frequent masked target id, its share of the masked targets).

    Images are not loaded (zero `pixel_values` stand in): only the text masks matter here.
    """
    grid = masking.collator.grid
    blank = np.zeros((3, grid.height * grid.patch_size, grid.width * grid.patch_size), dtype=np.float32)
    columns = ("input_ids", "word_ids", "token_word_class", "token_concreteness", masking.id_column)
    rows = itertools.islice(iter(dataset), num_examples)
    counts = torch.zeros(len(masking.collator.tokenizer), dtype=torch.long)
    progress = tqdm(total=num_examples, desc="Frequency baseline (masked targets)", unit="ex", leave=False)
    while True:
        chunk = [{**{k: row[k] for k in columns if k in row}, "pixel_values": blank} for row in itertools.islice(rows, batch_size)]
        if not chunk:
            break
        labels = masking(chunk)["labels"]
        counts += torch.bincount(labels[labels != -100], minlength=len(counts))
        progress.update(len(chunk))
    progress.close()
    if counts.sum() == 0:
        raise ValueError("the masking policy masked no text token in the training examples; check the masking options")
    token_id = int(counts.argmax())
    return token_id, float(counts[token_id] / counts.sum())


class MaskVLPreTrainer(GuardedTrainerMixin, Trainer):
    """`Trainer` that logs the loss parts and evaluates held-out masked-token accuracy.

    Args (besides `Trainer`'s):
        eval_data_collator: collator of the evaluation set (e.g. an `ExampleSeededMasking` with a fixed
            seed, so every evaluation scores the same masks); default: the training collator.
        baseline_token_id: the most frequent masked token of the training set; evaluation then reports
            `frequency_baseline_accuracy`.
    """

    def __init__(self, *args, eval_data_collator=None, baseline_token_id: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_data_collator = eval_data_collator
        self.baseline_token_id = baseline_token_id
        # The loss is a weighted sum of per-objective means (the model takes no `num_items_in_batch`):
        # the Trainer must divide it by the number of accumulation steps itself.
        self.model_accepts_loss_kwargs = False
        self._train_window = self._new_window()
        self._eval_window = None
        if isinstance(self.data_collator, ExampleSeededMasking):
            self.add_callback(EpochCallback(self.data_collator))

    # ---- windows of summed metrics -----------------------------------------------------------------
    def _new_window(self) -> torch.Tensor:
        return torch.zeros(len(_WINDOW_KEYS), 2, dtype=torch.float64, device=self.args.device)  # (K, [sum, count])

    def _accumulate(self, window: torch.Tensor, outputs, inputs) -> None:
        parts = outputs.loss_breakdown
        for part in LOSS_PARTS:
            value = getattr(parts, part, None)
            if value is not None:
                window[_SLOT[f"{part}_loss"]] += torch.stack([value.detach().double(), value.new_ones((), dtype=torch.float64)])
        labels = outputs.mlm_labels
        if labels is not None and labels.numel():
            predictions = outputs.mlm_logits.detach().argmax(dim=-1)  # (M,)
            window[_SLOT["mlm_correct"]] += torch.stack([(predictions == labels).sum().double(), labels.new_tensor(labels.numel(), dtype=torch.float64)])
            if self.baseline_token_id is not None:
                hits = (labels == self.baseline_token_id).sum().double()
                window[_SLOT["baseline_correct"]] += torch.stack([hits, labels.new_tensor(labels.numel(), dtype=torch.float64)])
        itm_labels = inputs.get("itm_labels")
        if outputs.itm_logits is not None and itm_labels is not None:
            correct = (outputs.itm_logits.detach().argmax(dim=-1) == itm_labels).sum().double()
            window[_SLOT["itm_correct"]] += torch.stack([correct, itm_labels.new_tensor(itm_labels.numel(), dtype=torch.float64)])

    def _window_metrics(self, window: torch.Tensor, prefix: str = "") -> dict[str, float]:
        """Averages of a window summed over processes; parts absent from every batch are left out."""
        window = self.accelerator.reduce(window, reduction="sum") if self.accelerator.num_processes > 1 else window
        names = {"mlm_correct": "mlm_accuracy", "itm_correct": "itm_accuracy", "baseline_correct": "frequency_baseline_accuracy"}
        metrics = {}
        for key, (total, count) in zip(_WINDOW_KEYS, window.tolist()):
            if count > 0:
                metrics[prefix + names.get(key, key)] = total / count
        return metrics

    # ---- training ----------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The model's weighted total loss; stashes the loss parts of training batches for `log`."""
        outputs = model(**inputs)
        if model.training:
            self._accumulate(self._train_window, outputs, inputs)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the window averages of the loss parts and masked-token accuracy to training logs."""
        if "loss" in logs:  # a training log (evaluation logs carry eval_loss)
            logs.update(self._window_metrics(self._train_window))
            self._train_window.zero_()
        super().log(logs, start_time)

    # ---- checkpoints --------------------------------------------------------------------------------
    def _plain_model(self, model=None) -> PreTrainedModel | None:
        """The unwrapped `PreTrainedModel` when weights are loaded by the Trainer itself (not FSDP / DeepSpeed)."""
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            return None
        unwrapped = self.accelerator.unwrap_model(model if model is not None else self.model)
        return unwrapped if isinstance(unwrapped, PreTrainedModel) else None

    def _load_weights(self, model: PreTrainedModel, checkpoint: str) -> None:
        """Load `checkpoint`'s weights into `model` with the key conversions of `from_pretrained` (strict)."""
        loaded = type(model).from_pretrained(checkpoint, dtype=model.dtype)
        model.load_state_dict(loaded.state_dict(), strict=True)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        plain = self._plain_model(model)
        if plain is None:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._load_weights(plain, resume_from_checkpoint)

    def _load_best_model(self):
        plain = self._plain_model()
        if plain is None:
            return super()._load_best_model()
        self._load_weights(plain, self.state.best_model_checkpoint)

    # ---- evaluation --------------------------------------------------------------------------------
    def get_eval_dataloader(self, eval_dataset=None):
        """The evaluation loader, collated by `eval_data_collator` when one is given."""
        if self.eval_data_collator is None:
            return super().get_eval_dataloader(eval_dataset)
        train_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        """Trainer's loop (eval loss), plus the loss parts, accuracies and the frequency baseline."""
        self._eval_window = self._new_window()
        try:
            output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys,
                                             metric_key_prefix)
            output.metrics.update(self._window_metrics(self._eval_window, prefix=f"{metric_key_prefix}_"))
        finally:
            self._eval_window = None
        return output

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Loss only (no logits are gathered); the parts and accuracies go to the evaluation window."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            outputs = model(**inputs)
        if self._eval_window is not None:
            self._accumulate(self._eval_window, outputs, inputs)
        loss = None if outputs.loss is None else outputs.loss.detach()
        return loss, None, None
