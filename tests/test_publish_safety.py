"""publish.py never ships a secret or a local path (issue 14): an allow-list of staged files (only the code modules
auto_map needs, symbolic links refused), every staged byte scanned for credential shapes, text files and safetensors
headers scanned for absolute or parent-relative paths."""

import json
import os
import re
import shutil

import pytest
from maskvl_train import publishing as publish
from test_publish import broken_copy, checkpoint, edit_json  # noqa: F401 - the fixture and helpers

AWS = "AKIA" + "Q3EXAMPLE7" + "Z2X4W5"
SECRETS = {  # a credential shape each: (file, change), the secret must be refused wherever it sits
    "aws_key_in_training_args": ("training_args.json", lambda d: d.update(note=f"key {AWS}")),
    "generic_api_key_in_config": ("config.json", lambda d: d.update(api_key="q8Zr2Lm9Tx4Vb7Nc")),
    "private_key_in_tokenizer_config": ("tokenizer_config.json",
                                        lambda d: d.update(comment="-----BEGIN RSA PRIVATE KEY-----\nMIIE")),
    "github_token_in_summary": ("training_summary.json", lambda d: d.update(ci="ghp_" + "a1B2" * 9)),
}
PATHS = {
    "srv": "/srv/datasets/coco/train2017",
    "opt": "/opt/ml/input/data",
    "windows": "C:\\Users\\someone\\data",
    "file_url": "file:///mnt/shared/run",
    "parent_relative": "../../private/run-7",
}


def dry_run(folder, tmp_path):
    return publish.main(["--checkpoint", str(folder), "--repo_id", "someone/m", "--dry_run", str(tmp_path / "out"),
                         "--skip_load_check", "true"])


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_a_credential_shape_in_any_staged_file_is_refused(checkpoint, tmp_path, name):  # noqa: F811
    file, change = SECRETS[name]
    folder = broken_copy(checkpoint, tmp_path, lambda f: edit_json(f / file, change))
    with pytest.raises(publish.CheckpointError, match=re.escape(file) + ": contains an? ") as error:
        dry_run(folder, tmp_path)
    assert AWS not in str(error.value) and "q8Zr2Lm9Tx4Vb7Nc" not in str(error.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", sorted(PATHS))
def test_an_absolute_or_parent_relative_path_is_refused(checkpoint, tmp_path, name):  # noqa: F811
    folder = broken_copy(checkpoint, tmp_path, lambda f: edit_json(f / "training_args.json",
                                                                  lambda d: d.update(train_dir=PATHS[name])))
    with pytest.raises(publish.CheckpointError, match=r"training_args\.json: contains an? [\w:/ -]*(path|URL)"):
        dry_run(folder, tmp_path)


def test_safetensors_metadata_is_scanned(checkpoint, tmp_path):  # noqa: F811
    from safetensors.torch import load_file, save_file

    for metadata, message in (({"source": "/srv/runs/exp3/checkpoint-40"}, "an absolute path"),
                              ({"token": "hf_" + "Zx7" * 10}, "a Hugging Face token")):
        folder = tmp_path / f"case-{message.split()[-1]}"
        shutil.copytree(checkpoint, folder)
        weights = folder / "model.safetensors"
        save_file(load_file(weights), weights, metadata={"format": "pt", **metadata})
        with pytest.raises(publish.CheckpointError, match=rf"model\.safetensors: contains {message}"):
            publish.main(["--checkpoint", str(folder), "--repo_id", "someone/m", "--dry_run",
                          str(tmp_path / f"out-{message.split()[-1]}"), "--skip_load_check", "true"])


def test_only_the_code_auto_map_needs_is_staged(checkpoint, tmp_path):  # noqa: F811
    def add_files(folder):
        (folder / "my_notes.py").write_text("TOKEN = 'nothing to see'\n")
        (folder / "deploy_helper.py").write_text("import os\n")

    folder = broken_copy(checkpoint, tmp_path, add_files)
    out = dry_run(folder, tmp_path)
    staged = sorted(p.name for p in out.glob("*.py"))
    assert "my_notes.py" not in staged and "deploy_helper.py" not in staged
    assert set(publish.needed_code_files(folder)) <= set(staged)
    config = json.loads((folder / "config.json").read_text())
    modules = {target.rpartition(".")[0] + ".py" for target in config["auto_map"].values()}
    assert modules <= set(staged)


def test_a_symbolic_link_is_refused_not_followed(checkpoint, tmp_path):  # noqa: F811
    outside = tmp_path / "elsewhere" / "tokenizer_config.json"  # any file of the machine could be linked
    outside.parent.mkdir()
    shutil.copyfile(checkpoint / "tokenizer_config.json", outside)

    def link(folder):
        os.remove(folder / "tokenizer_config.json")
        os.symlink(outside, folder / "tokenizer_config.json")

    folder = broken_copy(checkpoint, tmp_path, link)
    with pytest.raises(publish.CheckpointError, match=r"tokenizer_config\.json: is a symbolic link"):
        dry_run(folder, tmp_path)
