"""README stays true: its quick-start snippet runs as written."""

import os
import re


def test_readme_quick_start_runs(repo_root, tmp_path):
    text = (repo_root / "README.md").read_text()
    block = re.search(r"## Quick start.*?```python\n(.*?)```", text, re.S)
    assert block, "README has no quick-start python block"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        namespace = {}
        exec(compile(block.group(1), "README.md quick start", "exec"), namespace)
    finally:
        os.chdir(cwd)
    assert type(namespace["reloaded"]).__name__ == "MaskVLForPreTraining"
    assert (tmp_path / "my-maskvl" / "model.safetensors").exists()
    assert (tmp_path / "my-maskvl" / "processor_config.json").exists()


def test_readme_masking_example_runs(repo_root, capsys):
    text = (repo_root / "README.md").read_text()
    block = re.search(r"## Masking policies.*?```python\n(.*?)```", text, re.S)
    assert block, "README has no masking example"
    exec(compile(block.group(1), "README.md masking example", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed] == ["random", "whole_word", "stop_words", "content_words", "objects",
                                                     "attributes", "relationships", "top_concrete"]
    objects = next(line for line in printed if line.startswith("objects"))
    assert "'man'" in objects and "image masked" in objects


def test_readme_commands_match_ci(repo_root):
    """`.ci/run` runs README's test command verbatim."""
    readme = (repo_root / "README.md").read_text()
    ci = (repo_root / ".ci" / "run").read_text()
    commands = re.findall(r"```bash\n(python3 -m venv .*?)\n```", readme)
    test_command = [c for c in commands if "pytest" in c]
    assert len(test_command) == 1 and test_command[0] in ci


def test_readme_fill_mask_snippet_runs_on_a_published_pretraining_run(repo_root, tmp_path, capsys):
    """The main job's snippet: pretrain.py's folder -> publish.py --dry_run staged/ (README's command) -> the
    image-fill-mask pipeline with and without the picture, as README prints it."""
    from maskvl_train import pretraining as pretrain
    from maskvl_train import publishing as publish
    from test_pretrain import tiny_args

    text = (repo_root / "README.md").read_text()
    section = re.search(r"## Pre-training \(the main job\)(.*?)\n## ", text, re.S).group(1)
    command = re.search(r"```bash\n(python train_scripts/publish\.py .*?)\n```", section).group(1).split()
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block, "README's main job has no fill-mask snippet"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        pretrain.main(tiny_args(tmp_path / "outputs" / "pretrain", steps=2))
        assert command[command.index("--checkpoint") + 1] == "outputs/pretrain"
        publish.main([*command[2:], "--skip_load_check"])
        capsys.readouterr()  # only the snippet's own lines below
        exec(compile(block.group(1), "README.md fill-mask snippet", "exec"), {})
    finally:
        os.chdir(cwd)
    printed = [line for line in capsys.readouterr().out.splitlines() if "with the image" in line]
    assert len(printed) == 3, printed
    for line in printed:
        word, with_image, _, _, _, blank, _ = line.split()
        assert 0.0 <= float(with_image) <= 1.0 and 0.0 <= float(blank) <= 1.0 and word
