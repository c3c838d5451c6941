"""Strategy comparison (train_scripts/compare_strategies.py -> maskvl_train.strategy_comparison): identical pre-training flags, the findings check, a tiny end-to-end run."""

import json
import shutil

import pytest
from maskvl_train import strategy_comparison as compare
from PIL import Image
from test_eval_checkpoints import pretrained_checkpoint


def test_strategies_share_every_flag_except_their_masking_flags(tmp_path):
    args = compare.CompareArguments(output_dir=str(tmp_path))
    commands = {s: compare.pretrain_command(args, s) for s in compare.STRATEGIES}
    def shared_flags(strategy):
        command = commands[strategy][: -len(compare.STRATEGIES[strategy])]
        where = command.index("--output_dir")
        assert command[where + 1] == str(tmp_path / strategy)
        return command[:where] + command[where + 2:]

    for strategy, command in commands.items():
        tail = compare.STRATEGIES[strategy]
        assert command[len(command) - len(tail):] == tail
        assert shared_flags(strategy) == shared_flags("random15")
        assert all(flag.startswith("--") and ("mask" in flag) for flag in tail[::2])
    assert {"random15", "random40", "content_words", "objects", "top_concrete", "maskvlm", "mlim"} <= set(commands)
    with pytest.raises(ValueError, match="'nouns'"):
        compare.CompareArguments(strategies=["nouns"])


def _necessity(deltas: dict) -> dict:
    """A minimal image-necessity report with the given blank-image Δ loss per strategy and mask."""
    return {"checkpoints": [{"name": s, "masks": {m: {"delta_blank": {"loss": d}} for m, d in masks.items()}}
                            for s, masks in deltas.items()]}


def _vqa(means: dict) -> dict:
    return {s: {"summary": {"0.1": {"accuracy": {"mean": m, "std": 0.01}}}} for s, m in means.items()}


def test_findings_say_whether_the_papers_claims_hold():
    paper_like = {"random": 0.2, "stop_words": 0.05, "content_words": 0.9, "objects": 1.2}
    holds = compare.findings(_necessity({"random15": paper_like, "objects": paper_like}),
                             _vqa({"random15": 0.5, "objects": 0.6}), ["random15", "objects"], "0.1")
    assert [f["holds"] for f in holds] == [True, True, True, True]
    assert "random15: +0.900 vs +0.200" in holds[0]["evidence"]
    blind = {"random": 0.0, "stop_words": 0.0, "content_words": 0.0, "objects": -0.1}
    fails = compare.findings(_necessity({"random15": blind, "objects": paper_like}),
                             _vqa({"random15": 0.7, "objects": 0.6}), ["random15", "objects"], "0.1")
    assert [f["holds"] for f in fails] == [False, False, False, False]
    assert "smallest for objects" in fails[2]["evidence"]


@pytest.mark.slow
def test_tiny_comparison_end_to_end(tmp_path):
    out = tmp_path / "compare"
    out.mkdir()
    shutil.copytree(pretrained_checkpoint("objects"), out / "objects")  # reused: already pre-trained
    report_path = tmp_path / "docs" / "comparison.md"
    result = compare.main([
        "--output_dir", str(out), "--report_path", str(report_path), "--strategies", "random15", "objects",
        "--pretrain_max_steps", "2", "--synthetic_num_examples", "48", "--tokenizer_vocab_size", "200",
        "--pretrain_batch_size", "16", "--extra_pretrain_args", "--eval_size 16 --baseline_examples 16",
        "--necessity_eval_size", "16", "--vqa_train_fraction", "0.5", "1.0", "--vqa_seeds", "0",
        "--vqa_max_train_samples", "32", "--vqa_max_test_samples", "16", "--vqa_epochs", "1",
    ])
    assert (out / "random15" / "model.safetensors").is_file() and (out / "random15.log").is_file()
    assert json.loads((out / "random15" / "training_args.json").read_text())["max_steps"] == 2
    saved = json.loads((tmp_path / "docs" / "comparison.json").read_text())
    assert saved["schema_version"] == 1 and list(saved["strategies"]) == ["random15", "objects"]
    assert saved["pretraining"]["objects"]["seconds"] is None  # reused, not re-run
    assert saved["pretraining"]["random15"]["seconds"] > 0
    assert [c["name"] for c in saved["image_necessity"]["checkpoints"]] == ["random15", "objects"]
    assert set(saved["vqa"]) == {"random15", "objects"} and set(saved["vqa"]["objects"]["summary"]) == {"0.5", "1.0"}
    assert len(saved["findings"]) == 4 and all(isinstance(f["holds"], bool) for f in saved["findings"])
    markdown = report_path.read_text()
    assert "## Findings" in markdown and "| random15 |" in markdown and "Machine:" in markdown
    for name in ("strategy_delta_loss.png", "strategy_accuracy_matrix.png", "strategy_vqa_fractions.png"):
        with Image.open(tmp_path / "docs" / "figures" / name) as image:
            assert image.size[0] > 300
        assert f"figures/{name}" in markdown
    assert result["seconds"]["total"] >= result["seconds"]["pretraining"]
