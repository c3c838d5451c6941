"""Strategy comparison (train_scripts/compare_strategies.py -> maskvl_train.strategy_comparison): identical
pre-training flags except masking / fraction / seed, nested pre-training subsets, interval-judged findings, and a
tiny end-to-end run over fractions and seeds."""

import json

import pytest
from maskvl_train import strategy_comparison as compare
from maskvl_train.arguments import DataArguments
from maskvl_train.data import load_raw_splits
from PIL import Image


def _flag(command, name):
    return command[command.index(name) + 1]


def test_runs_share_every_flag_except_masking_fraction_and_seed(tmp_path):
    args = compare.CompareArguments(output_dir=str(tmp_path), strategies=list(compare.STRATEGIES))
    varying = {"--output_dir", "--train_fraction", "--seed"}

    def shared(command, strategy):
        head = command[: len(command) - len(compare.STRATEGIES[strategy])]
        return [x for i, x in enumerate(head) if x not in varying and (i == 0 or head[i - 1] not in varying)]

    reference = shared(compare.pretrain_command(args, "random15", 1.0, 0, "tok"), "random15")
    for strategy in compare.STRATEGIES:
        for fraction, seed in ((0.1, 0), (0.5, 2)):
            command = compare.pretrain_command(args, strategy, fraction, seed, "tok")
            assert command[len(command) - len(compare.STRATEGIES[strategy]):] == compare.STRATEGIES[strategy]
            assert shared(command, strategy) == reference
            assert _flag(command, "--train_fraction") == f"{fraction:g}" and _flag(command, "--seed") == str(seed)
            assert _flag(command, "--data_seed") == str(args.data_seed)  # one pool of pairs for every run
            assert _flag(command, "--output_dir") == str(tmp_path / strategy / f"frac{fraction:g}" / f"seed{seed}")
    with pytest.raises(ValueError, match="'nouns'"):
        compare.CompareArguments(strategies=["nouns"])
    with pytest.raises(ValueError, match="pretrain_fractions"):
        compare.CompareArguments(pretrain_fractions=[0.0, 1.0])
    with pytest.raises(ValueError, match="distinct"):
        compare.CompareArguments(seeds=[1, 1])


def test_quick_preset_is_small():
    args = compare.CompareArguments(quick=True)
    assert len(args.strategies) * len(args.pretrain_fractions) * len(args.seeds) <= 8
    assert args.pretrain_max_steps < compare.CompareArguments().pretrain_max_steps


def test_pretraining_fractions_are_nested_subsets_of_one_pool():
    def captions(fraction, seed=0):
        data = DataArguments(synthetic_num_examples=40, eval_size=8, train_fraction=fraction)
        return list(load_raw_splits(data, image_size=32, seed=seed)["train"]["caption"])

    full, half, tenth = captions(1.0), captions(0.5), captions(0.1)
    assert (len(full), len(half), len(tenth)) == (40, 20, 4)
    remaining = list(full)
    for caption in half:  # a sub-multiset of the pool (captions may repeat)
        remaining.remove(caption)
    remaining = list(half)
    for caption in tenth:
        remaining.remove(caption)
    assert captions(0.5) == half  # deterministic
    with pytest.raises(ValueError, match="train_fraction"):
        DataArguments(train_fraction=1.5)


def _runs(gain: dict, seeds=(0, 1, 2), base=0.5, noise=(0.0, 0.01, -0.01), baseline_noise=(0.0, 0.01, -0.01)):
    """runs[strategy][fraction][seed] with VQA accuracy `base + gain[strategy][fraction] + noise[seed]`
    (`baseline_noise[seed]` for random15: seed-paired noise cancels in the paired difference)."""
    runs = {}
    for strategy, by_fraction in gain.items():
        runs[strategy] = {}
        for fraction, g in by_fraction.items():
            runs[strategy][fraction] = {}
            for seed in seeds:
                runs[strategy][fraction][seed] = {
                    "downstream": {"vqa_accuracy": base + g + (baseline_noise if strategy == "random15" else noise)[seed],
                                   "vqa_by_type": {}},
                    "necessity": {"objects": {"delta_loss": 0.5 + g, "delta_loss_ci95": [0.1 + g, 0.9 + g],
                                              "acc1_with": 0.6, "acc1_blank": 0.1}},
                }
    return runs


def _claims(found, text):
    return [f for f in found if text in f["claim"]]


def test_findings_hold_only_when_the_interval_excludes_zero():
    args = compare.CompareArguments(strategies=["random15", "objects"], pretrain_fractions=[0.1, 1.0], seeds=[0, 1, 2],
                                    retrieval_eval_size=0)
    clear = compare.findings(_runs({"random15": {0.1: 0.0, 1.0: 0.0}, "objects": {0.1: 0.1, 1.0: 0.02}}), args)
    beats = _claims(clear, "objects beats random15 on easy-VQA")[0]
    assert beats["holds"] and "+0.100" in beats["evidence"]
    assert _claims(clear, "gain over random15 on easy-VQA accuracy is larger at 0.1")[0]["holds"]
    assert _claims(clear, "needs the image for objects")[0]["holds"]
    # a gain smaller than the seed noise does not hold, and neither does a loss
    noisy = compare.findings(_runs({"random15": {0.1: 0.0, 1.0: 0.0}, "objects": {0.1: 0.004, 1.0: 0.0}},
                                   noise=(0.0, 0.05, -0.05)), args)
    assert not _claims(noisy, "objects beats random15 on easy-VQA")[0]["holds"]
    worse = compare.findings(_runs({"random15": {0.1: 0.0, 1.0: 0.0}, "objects": {0.1: -0.1, 1.0: 0.0}}), args)
    assert not _claims(worse, "objects beats random15 on easy-VQA")[0]["holds"]
    blind = _runs({"random15": {0.1: 0.0, 1.0: -0.5}, "objects": {0.1: 0.0, 1.0: -0.5}})
    assert not _claims(compare.findings(blind, args), "random15 at 1 of the data needs the image")[0]["holds"]


@pytest.mark.slow
def test_tiny_comparison_over_fractions_and_seeds_end_to_end(tmp_path):
    out = tmp_path / "compare"
    report_path = tmp_path / "docs" / "comparison.md"
    result = compare.main([
        "--output_dir", str(out), "--report_path", str(report_path), "--strategies", "random15", "objects",
        "--pretrain_fractions", "0.5", "1.0", "--seeds", "0", "1", "--preset", "maskvlm-tiny",
        "--pretrain_max_steps", "2", "--synthetic_num_examples", "48", "--tokenizer_vocab_size", "300",
        "--pretrain_batch_size", "8", "--extra_pretrain_args", "--eval_size 16 --baseline_examples 16 --image_size 32",
        "--necessity_eval_size", "16", "--vqa_max_train_samples", "32", "--vqa_max_test_samples", "16",
        "--vqa_epochs", "1", "--retrieval_eval_size", "16",
    ])
    run = out / "objects" / "frac0.5" / "seed1"
    assert (run / "model.safetensors").is_file()
    args = json.loads((run / "training_args.json").read_text())
    assert args["max_steps"] == 2 and args["train_fraction"] == 0.5 and args["data_seed"] == 42
    saved = json.loads((tmp_path / "docs" / "comparison.json").read_text())
    assert saved["schema_version"] == 2 and list(saved["strategies"]) == ["random15", "objects"]
    assert set(saved["runs"]["objects"]) == {"0.5", "1"} and set(saved["runs"]["objects"]["0.5"]) == {"0", "1"}
    cell = saved["summary"]["objects"]["0.5"]["vqa_accuracy"]
    assert cell["n"] == 2 and cell["ci95"][0] <= cell["mean"] <= cell["ci95"][1]
    downstream = saved["runs"]["random15"]["1"]["0"]["downstream"]
    assert 0 <= downstream["R@5"] <= 1 and downstream["vqa_oov_token_rate"] == 0.0  # shared tokenizer knows the questions
    assert saved["runs"]["random15"]["1"]["0"]["necessity"]["objects"]["delta_loss_ci95"] is not None
    assert any("beats random15" in f["claim"] for f in saved["findings"])
    assert all(isinstance(f["holds"], bool) for f in saved["findings"])
    markdown = report_path.read_text()
    assert "## Findings" in markdown and "| objects |" in markdown and "Machine:" in markdown
    with Image.open(tmp_path / "docs" / "figures" / "strategy_pretrain_fractions.png") as image:
        assert image.size[0] > 300
    assert "figures/strategy_pretrain_fractions.png" in markdown
    assert result["seconds"]["total"] >= result["seconds"]["pretraining"]


def test_downstream_results_are_reused_from_the_output_dir(tmp_path, monkeypatch):
    """A parallel process (one strategy each) leaves downstream.json; the last run over the grid reads it back
    and fine-tunes nothing; with --reuse_pretraining false it evaluates again."""
    args = compare.CompareArguments(output_dir=str(tmp_path), retrieval_eval_size=0)
    calls = []

    def fake_vqa(argv):
        calls.append(argv)
        return {"summary": {"1.0": {"accuracy": {"mean": 0.5}, "accuracy_by_type": {"shape": {"mean": 0.75}}}},
                "oov": {"token_rate": 0.0}}

    monkeypatch.setattr(compare.vqa_finetuning, "main", fake_vqa)
    first = compare.evaluate_downstream(args, "objects/frac1/seed0", str(tmp_path / "ckpt"), 0)
    assert first == {"vqa_accuracy": 0.5, "vqa_by_type": {"shape": 0.75}, "vqa_oov_token_rate": 0.0}
    assert compare.evaluate_downstream(args, "objects/frac1/seed0", str(tmp_path / "ckpt"), 0) == first
    assert len(calls) == 1
    args.reuse_pretraining = False
    compare.evaluate_downstream(args, "objects/frac1/seed0", str(tmp_path / "ckpt"), 0)
    assert len(calls) == 2
