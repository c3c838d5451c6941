"""VQA accuracy as an `evaluate` metric (local module: `evaluate.load("train_scripts/maskvl_train/vqa_accuracy")`).

Inputs: `predictions` — predicted answer ids (int); `references` — the gold answer id (int, -100 =
an answer outside the vocabulary, never right) or, for VQAv2-style data, soft scores over the answer
vocabulary (list of floats, `min(1, #annotators / 3)`); optional `question_types` (list of str).

Output: `accuracy` (mean score, in [0, 1]) and, with `question_types`, `accuracy_by_type`
({type: mean score}) and `count_by_type`.
"""

import datasets
import evaluate

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted answer ids.
    references (list of int, or list of list of float): gold ids or soft scores.
    question_types (list of str, optional): group of each question.
Returns:
    accuracy (float), accuracy_by_type (dict), count_by_type (dict).
Example:
    >>> metric = evaluate.load("train_scripts/maskvl_train/vqa_accuracy")
    >>> metric.compute(predictions=[1, 0], references=[1, 2])["accuracy"]
    0.5
"""


class VQAAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
                datasets.Features({
                    "predictions": datasets.Value("int64"),
                    "references": datasets.Sequence(datasets.Value("float32")),
                }),
            ],
        )

    def _compute(self, predictions, references, question_types=None):
        scores = []
        for index, (predicted, reference) in enumerate(zip(predictions, references)):
            if isinstance(reference, (list, tuple)):
                if not 0 <= predicted < len(reference):
                    raise ValueError(f"question {index}: predicted id {predicted} outside 0..{len(reference) - 1}")
                scores.append(float(reference[predicted]))
            else:
                scores.append(float(predicted == reference))
        out = {"accuracy": sum(scores) / len(scores) if scores else float("nan")}
        if question_types is not None:
            if len(question_types) != len(scores):
                raise ValueError(f"{len(question_types)} question types for {len(scores)} predictions")
            groups = {}
            for score, group in zip(scores, question_types):
                groups.setdefault(str(group), []).append(score)
            out["accuracy_by_type"] = {g: sum(v) / len(v) for g, v in sorted(groups.items())}
            out["count_by_type"] = {g: len(v) for g, v in sorted(groups.items())}
        return out
