"""Image-text retrieval of a MaskVL checkpoint: R@1/5/10 with ITC scores and with ITM re-ranking.

Launch:

    python train_scripts/evaluate_retrieval.py --checkpoint outputs/pretrain --output_dir outputs/retrieval
    python train_scripts/evaluate_retrieval.py --checkpoint ckpt --output_dir out \
        --dataset_name nlphuji/flickr30k --eval_split test --caption_column caption --eval_size 1000
    python train_scripts/evaluate_retrieval.py --checkpoint ckpt --output_dir out --train_dir data/coco_val \
        --eval_split train --image_id_column image_id     # one row per caption, rows grouped by image

Output `OUTPUT_DIR/retrieval.json` — schema (version 1)::

    {"schema_version": 1, "task": "image_text_retrieval", "checkpoint": str,
     "eval_data": {"source", "split", "num_examples", "seed"}, "num_images": int, "num_texts": int,
     "settings": {"rerank_k": int, "ks": [1, 5, 10]},
     "itc": {"image_to_text": {"R@1", "R@5", "R@10"}, "text_to_image": {...}, "mean_recall": float},
     "itm_rerank": {...same as itc...} | null (no ITM head),
     "model_index": [model-index result entries]}

and `retrieval.md`. Recalls are fractions in [0, 1].
"""

from maskvl_train.retrieval import main

if __name__ == "__main__":
    main()
