"""Retrieval (train_scripts/evaluate_retrieval.py -> maskvl_train.retrieval): caption grouping, oracle retrieval and ITM re-ranking, end-to-end runs."""

import json

import datasets
import pytest
import torch
from maskvl_train import retrieval
from maskvl_train.metrics import rerank_top_k, retrieval_recall_at_k
from PIL import Image
from test_eval_checkpoints import pretrained_checkpoint, tiny_checkpoint


def test_several_captions_per_image_from_lists_or_shared_ids():
    lists = datasets.Dataset.from_dict({"caption": [["a", "b"], ["c"], ["d", "e", "f"]]})
    rows, texts, owner = retrieval.group_pairs(lists, None)
    assert rows == [0, 1, 2] and texts == list("abcdef") and owner == [0, 0, 1, 2, 2, 2]
    coco = datasets.Dataset.from_dict({"caption": ["a", "b", "c", "d"], "image_id": [7, 9, 7, 9]})
    rows, texts, owner = retrieval.group_pairs(coco, "image_id")
    assert rows == [0, 1] and owner == [0, 1, 0, 1]
    with pytest.raises(ValueError, match="'img'"):
        retrieval.group_pairs(coco, "img")
    with pytest.raises(Exception, match="row 1"):
        retrieval.group_pairs(datasets.Dataset.from_dict({"caption": ["ok", "  "]}), None)


class OracleITM:
    """ITM that knows the pairs: text id in input_ids[:, 1], image id in pixel_values[:, 0, 0, 0]."""

    def itm_scores(self, input_ids, attention_mask, pixel_values):
        return (input_ids[:, 1] == pixel_values[:, 0, 0, 0].long()).float()


def test_perfect_itc_gets_recall_one_and_oracle_itm_fixes_rankings_inside_the_top_k():
    owner = torch.tensor([0, 0, 1, 2, 3])  # 5 captions of 4 images (image 0 has two)
    perfect = torch.nn.functional.one_hot(owner, 4).float()  # (Nt, Ni) similarity
    result = retrieval.recalls(perfect.argsort(dim=1, descending=True), perfect.t().argsort(dim=1, descending=True),
                               owner, 4)
    assert result["text_to_image"]["R@1"] == 1.0 and result["image_to_text"]["R@1"] == 1.0
    assert result["mean_recall"] == 1.0
    # a bad ITC score puts the true image 2nd for every caption; oracle ITM on the top 2 repairs it
    bad = perfect + torch.nn.functional.one_hot((owner + 1) % 4, 4) * 2.0
    ranking = bad.argsort(dim=1, descending=True, stable=True)
    assert retrieval_recall_at_k(ranking, perfect.bool(), (1,))["R@1"] == 0.0
    text_inputs = {"input_ids": torch.stack([torch.zeros(5, dtype=torch.long), owner], dim=1),
                   "attention_mask": torch.ones(5, 2, dtype=torch.long)}
    pixel_values = torch.arange(4).float()[:, None, None, None].expand(4, 3, 2, 2)
    scores = retrieval.itm_scores_of_top_k(OracleITM(), bad, 2, True, text_inputs, pixel_values, batch_size=3)
    reranked = rerank_top_k(bad, 2, scores)
    assert retrieval_recall_at_k(reranked, perfect.bool(), (1,))["R@1"] == 1.0


def test_checkpoint_without_contrastive_head_is_refused(tmp_path):
    with pytest.raises(ValueError, match="use_itc_head"):
        retrieval.main(["--checkpoint", tiny_checkpoint("mlim", preset="mlim-tiny"), "--output_dir", str(tmp_path)])


@pytest.mark.slow
def test_end_to_end_on_pretraining_output(tmp_path):
    result = retrieval.main(["--checkpoint", pretrained_checkpoint("objects"), "--output_dir", str(tmp_path),
                             "--eval_size", "24", "--rerank_k", "4"])
    saved = json.loads((tmp_path / "retrieval.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert saved["num_images"] == saved["num_texts"] == 24 and saved["eval_data"]["split"] == "test"
    for scores in ("itc", "itm_rerank"):
        for direction in ("image_to_text", "text_to_image"):
            values = [saved[scores][direction][f"R@{k}"] for k in (1, 5, 10)]
            assert values == sorted(values) and all(0.0 <= v <= 1.0 for v in values)
    # re-ranking only reorders the top 4: R@5 and R@10 cannot change
    assert saved["itm_rerank"]["text_to_image"]["R@10"] == saved["itc"]["text_to_image"]["R@10"]
    assert saved["model_index"][0]["task"]["type"] == "image-text-retrieval"
    assert "| ITC |" in (tmp_path / "retrieval.md").read_text()


@pytest.mark.slow
def test_coco_style_imagefolder_with_shared_image_ids(tmp_path):
    folder = tmp_path / "coco"
    folder.mkdir()
    lines = []
    for i, colour in enumerate(["red", "blue", "green", "yellow", "purple", "black"]):
        Image.new("RGB", (40, 30), colour).save(folder / f"{i}.png")
        for caption in (f"a {colour} picture.", f"all {colour}."):
            lines.append(json.dumps({"file_name": f"{i}.png", "caption": caption, "image_id": i}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    result = retrieval.main(["--checkpoint", pretrained_checkpoint("objects"), "--output_dir", str(tmp_path / "out"),
                             "--train_dir", str(folder), "--eval_split", "train", "--image_id_column", "image_id",
                             "--eval_size", "12", "--rerank_k", "3"])
    assert result["num_images"] == 6 and result["num_texts"] == 12
    # rows sharing an image id are one image: 6 candidates, so every caption finds its image in the top 10
    assert result["itc"]["text_to_image"]["R@10"] == 1.0 and result["itm_rerank"]["text_to_image"]["R@10"] == 1.0
