"""Every script's `--help` works and lists the flags README tells users about (argparse formats help texts with
`%`, so a bare `%` in a help string breaks `--help` only)."""
import subprocess
import sys

import pytest

SCRIPTS = {
    "pretrain.py": ["--preset", "--text_masking", "--config_overrides", "--webdataset", "--skip_bad_examples",
                    "--on_nonfinite_loss", "--resume_from_checkpoint", "--mask_replace_prob"],
    "finetune_vqa.py": ["--checkpoint", "--train_fraction", "--seeds", "--dataset_name", "--data_dir"],
    "evaluate_image_necessity.py": ["--checkpoint", "--output_dir", "--train_dir"],
    "evaluate_retrieval.py": ["--checkpoint", "--rerank_k", "--image_id_column"],
    "compare_strategies.py": ["--strategies", "--pretrain_max_steps", "--pretrain_fractions", "--seeds", "--quick"],
    "publish.py": ["--checkpoint", "--repo_id", "--dry_run", "--pipelines", "--eval_results"],
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_lists_the_documented_flags(repo_root, script):
    result = subprocess.run([sys.executable, str(repo_root / "train_scripts" / script), "--help"],
                            capture_output=True, text=True, timeout=300, cwd=repo_root)
    assert result.returncode == 0, result.stderr[-2000:]
    missing = [flag for flag in SCRIPTS[script] if flag not in result.stdout]
    assert not missing, f"{script} --help lacks {missing}"
