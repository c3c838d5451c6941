"""Publish a MaskVL training output folder to the Hugging Face Hub.

Validate the folder, stage exactly the files to upload (weights, config, code, processor, tokenizer, custom
pipelines, model card), then upload them with ``huggingface_hub`` -- or, with ``--dry_run OUT``, write the
staged folder to ``OUT`` and stop::

    python train_scripts/publish.py --checkpoint runs/maskvlm-tiny --repo_id you/maskvlm-tiny --dry_run staged/
    python train_scripts/publish.py --checkpoint runs/maskvlm-tiny --repo_id you/maskvlm-tiny --private
    python train_scripts/publish.py --checkpoint runs/vqa --repo_id you/maskvl-vqa \\
        --eval_results runs/vqa/vqa_results.json --revision v1 --create_pr
    python train_scripts/publish.py publish.yaml          # the same arguments from a YAML / JSON file

Validation (every problem is reported, each naming its file): ``config.json`` of model type ``maskvl``;
safetensors weights only (pickled weights are refused; Trainer state such as ``training_args.bin`` is
never uploaded); an ``auto_map`` entry for every auto class, each pointing at a code file of the folder that
defines the class; a processor (``processor_config.json``) and tokenizer whose image size, patch size and
vocabulary agree with the model; no local paths or tokens in the text files; and the code files load on
their own (a subprocess in which the ``maskvl`` packages cannot be imported loads config, every model
class, the processor and the pipelines from the staged folder).

The token comes from the usual places (``HF_TOKEN``, ``hf auth login``); this script never prints it or
writes it anywhere.
"""

from maskvl_train.publishing import cli

if __name__ == "__main__":
    cli()
