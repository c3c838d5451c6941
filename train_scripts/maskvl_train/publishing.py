"""Publishing a MaskVL training output folder to the Hugging Face Hub: validate, stage, check, upload.

`publish(PublishArguments(...))` validates the folder (every problem named with its file), stages exactly
the files to upload (weights, config, processor, tokenizer, custom pipelines, model card, and only the code
modules the `auto_map` entries need with their sibling imports -- an allow-list, never every `*.py`; symbolic
links are refused, not followed), checks every staged byte (`scan_staged_files`: credential shapes -- Hub,
AWS, GitHub, OpenAI, Slack tokens, generic `api_key = ...` assignments, private-key blocks -- in every file
including the weights; local, absolute or parent-relative paths -- `/srv/...`, `/opt/...`, `C:\...`,
`file://`, `../` -- in the text files and the safetensors headers) and that the code files load without the
`maskvl` packages, then uploads with ``huggingface_hub`` or writes the dry-run folder. Launch commands: `train_scripts/publish.py`
(console script `maskvl-publish`).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import HfApi, get_token
from tqdm.auto import tqdm
from transformers import HfArgumentParser

from maskvl_processing.pipelines_maskvl import PIPELINES, applicable_tasks, save_pipelines

from .checkpoints import read_safetensors_header
from .model_card import SUMMARY_FILE, load_eval_results, render_model_card, scrub_summary
from .scrub import check_no_machine_details, looks_local

# Every auto class a MaskVL checkpoint must answer to (config.json's auto_map).
REQUIRED_AUTO_CLASSES = ("AutoConfig", "AutoModel", "AutoModelForPreTraining", "AutoModelForMaskedLM",
                         "AutoModelForVisualQuestionAnswering")
# Files copied from the checkpoint when present (code files, weights and evaluation results are added apart).
COPIED_FILES = ("config.json", "processor_config.json", "preprocessor_config.json", "tokenizer.json",
                "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "added_tokens.json",
                "generation_config.json", SUMMARY_FILE, "training_args.json")
PICKLED_WEIGHTS = re.compile(r"^(pytorch_model.*\.bin|model.*\.(pt|pth|ckpt|pkl))$")
TRAINER_STATE = re.compile(r"^(training_args\.bin|optimizer\.pt|scheduler\.pt|scaler\.pt|rng_state.*\.pth)$")


class CheckpointError(ValueError):
    """The checkpoint folder cannot be published; the message lists every problem found."""


@dataclass
class PublishArguments:
    checkpoint: str = field(metadata={"help": "Training output folder (model, processor, tokenizer saved there)."})
    repo_id: str = field(metadata={"help": "Hub repository, OWNER/NAME."})
    dry_run: str | None = field(default=None, metadata={
        "help": "Write the folder that would be uploaded to this (new or empty) directory and upload nothing."})
    private: bool = field(default=False, metadata={"help": "Create the repository as private."})
    revision: str | None = field(default=None, metadata={"help": "Branch to upload to (created if missing)."})
    create_pr: bool = field(default=False, metadata={"help": "Open a pull request instead of committing."})
    pipelines: list[str] | None = field(default=None, metadata={
        "help": f"Custom pipelines to save, from {sorted(PIPELINES)}. Default: the checkpoint's primary task only, "
                "so that pipeline(model=repo, trust_remote_code=True) needs no task name."})
    eval_results: list[str] = field(default_factory=list, metadata={
        "help": "Evaluation JSON files (e.g. image_necessity.json) folded into the card's model-index."})
    commit_message: str = field(default="Upload MaskVL checkpoint", metadata={"help": "Hub commit message."})
    skip_load_check: bool = field(default=False, metadata={
        "help": "Skip loading the staged folder in a package-free subprocess (a few seconds)."})

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", self.repo_id or ""):
            raise ValueError(f"--repo_id must look like OWNER/NAME, got {self.repo_id!r}.")
        if self.dry_run is not None and Path(self.dry_run).resolve() == Path(self.checkpoint).resolve():
            raise ValueError("--dry_run must be a new folder, not the checkpoint folder itself.")
        unknown = [task for task in self.pipelines or [] if task not in PIPELINES]
        if unknown:
            raise ValueError(f"--pipelines {unknown} unknown; choose from {sorted(PIPELINES)}.")


# ------------------------------------------------------------------------------------------------- steps
def validate_checkpoint(checkpoint: Path) -> list[str]:
    """Problems that make ``checkpoint`` unpublishable (empty list when it is fine)."""
    if not checkpoint.is_dir():
        return [f"{checkpoint.name}: checkpoint folder does not exist ({checkpoint})."]
    problems = []
    config = _read_json(checkpoint / "config.json", problems)
    if config is None:
        return problems + ["config.json: missing -- save the model with save_pretrained first."]
    if config.get("model_type") != "maskvl":
        problems.append(f"config.json: model_type is {config.get('model_type')!r}, expected 'maskvl'.")
    problems += _check_weights(checkpoint)
    problems += _check_auto_map(checkpoint, "config.json", config.get("auto_map") or {}, REQUIRED_AUTO_CLASSES)
    problems += _check_processor(checkpoint, config)
    return problems


def needed_code_files(checkpoint: Path) -> list[str]:
    """The code modules a checkpoint needs: those named by the `auto_map` of config.json, processor_config.json
    (and its image processor), preprocessor_config.json and tokenizer_config.json, plus their flat sibling
    imports (`from .x import`), transitively. Any other `*.py` in the folder is not published."""
    modules = set()
    for name in ("config.json", "processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        try:
            data = json.loads((checkpoint / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        maps = [data.get("auto_map") or {}, (data.get("image_processor") or {}).get("auto_map") or {}]
        for auto_map in maps:
            for target in auto_map.values():
                for item in target if isinstance(target, (list, tuple)) else [target]:
                    if isinstance(item, str) and "--" not in item:
                        modules.add(item.rpartition(".")[0])
    needed, todo = set(), sorted(modules)
    while todo:
        module = todo.pop()
        path = checkpoint / f"{module}.py"
        if module in needed or not path.is_file():
            continue
        needed.add(module)
        todo += re.findall(r"^\s*from \.(\w+) import", path.read_text(encoding="utf-8"), re.MULTILINE)
    return sorted(f"{module}.py" for module in needed)


def stage_folder(checkpoint: Path, staging: Path, args: PublishArguments) -> list[Path]:
    """Copy the publishable files (an allow-list) into ``staging``, add pipelines and the card; returns the staged
    files. A symbolic link among them is refused (its target could be any file of the machine)."""
    names = [n for n in COPIED_FILES if (checkpoint / n).is_file()]
    names += needed_code_files(checkpoint)
    names += sorted(p.name for p in checkpoint.glob("*.safetensors")) + sorted(
        p.name for p in checkpoint.glob("*.safetensors.index.json"))
    links = [name for name in names if (checkpoint / name).is_symlink()]
    if links:
        raise CheckpointError(_problem_list(checkpoint, [f"{name}: is a symbolic link (to {os.readlink(checkpoint / name)!r}); "
                                                         "refusing to follow it -- copy the real file in" for name in links]))
    for name in tqdm(names, desc="staging files", unit="file"):
        shutil.copyfile(checkpoint / name, staging / name, follow_symlinks=False)
    _scrub_config(staging / "config.json")

    config = json.loads((staging / "config.json").read_text(encoding="utf-8"))
    save_pipelines(staging, args.pipelines if args.pipelines else applicable_tasks(config)[:1])

    eval_results = {name: scrub_summary(result) for name, result in load_eval_results(args.eval_results).items()}
    if eval_results:
        (staging / "evaluation").mkdir()
        for name, result in eval_results.items():
            (staging / "evaluation" / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    summary_path = staging / SUMMARY_FILE
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    summary = scrub_summary(summary or {"preset": config.get("preset")})
    summary_path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    card = render_model_card(staging, summary, eval_results, repo_id=args.repo_id, checkpoint_name=checkpoint.name)
    card.save(staging / "README.md")
    return sorted(p for p in staging.rglob("*") if p.is_file())


def check_staged_text(staging: Path) -> list[str]:
    """No local paths, user names or tokens in any staged text file."""
    problems = []
    for path in sorted(staging.rglob("*")):
        if path.is_file() and path.suffix in (".json", ".md", ".py", ".txt", ".yaml"):
            try:  # the code files are the package's own: a user name there is a word of the code, not a leak
                check_no_machine_details(path.read_text(encoding="utf-8"), user_name=path.suffix != ".py")
            except ValueError as error:
                problems.append(f"{path.relative_to(staging)}: {error}")
    return problems


# Credential shapes refused in every staged byte (text files, weights, safetensors headers).
CREDENTIALS = {
    "a Hugging Face token": re.compile(rb"hf_[A-Za-z0-9]{20,}"),
    "an AWS access key id": re.compile(rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "an AWS secret key": re.compile(rb"aws_secret_access_key\W{0,4}[A-Za-z0-9/+=]{30,}", re.IGNORECASE),
    "a GitHub token": re.compile(rb"\bgh[pousr]_[A-Za-z0-9]{30,}"),
    "an OpenAI-style key": re.compile(rb"\bsk-[A-Za-z0-9_-]{20,}"),
    "a Slack token": re.compile(rb"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "a private key block": re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "an API key or secret": re.compile(
        rb"(?i)(?:api[_-]?key|apikey|secret[_-]?key|access[_-]?token|auth[_-]?token|password|passwd|secret)"
        rb"[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9_\-./+=]{12,}"),
}
# Paths of a machine refused in the staged text and safetensors headers.
LOCAL_PATHS = {
    "an absolute path": re.compile(r"(?<![\w.:/~\\-])/(?:[\w.-]+/)+[\w.-]*"),
    "a Windows path": re.compile(r"(?<![\w])[A-Za-z]:\\"),
    "a file:// URL": re.compile(r"file://", re.IGNORECASE),
    "a parent-relative path": re.compile(r"(?<![\w.])\.\./"),
    "a home-relative path": re.compile(r"(?<![\w])~/"),
}
TEXT_SUFFIXES = (".json", ".md", ".py", ".txt", ".yaml", ".yml", ".cfg", ".jinja")


def _staged_text(path: Path) -> str | None:
    """The text to check for paths: a text file, the header of a safetensors file, else None."""
    if path.suffix == ".safetensors":
        try:
            header, _ = read_safetensors_header(path)
        except (OSError, ValueError):
            return ""
        return json.dumps(header.get("__metadata__", {})) + "\n" + "\n".join(k for k in header if k != "__metadata__")
    if path.suffix in TEXT_SUFFIXES:
        return path.read_bytes().decode("utf-8", errors="replace")
    return None


def scan_staged_files(staging: Path) -> list[str]:
    """Problems in the staged files: a credential shape in any byte of any file; a local, absolute or parent-relative
    path in a text file or a safetensors header. The messages never show the secret itself."""
    problems = []
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        name = path.relative_to(staging)
        with open(path, "rb") as handle:
            tail = b""
            while chunk := handle.read(1 << 24):  # 16 MiB at a time, overlapping, so no match is cut in two
                found = next((what for what, pattern in CREDENTIALS.items() if pattern.search(tail + chunk)), None)
                if found:
                    problems.append(f"{name}: contains {found}; refusing to publish it.")
                    break
                tail = chunk[-256:]
        text = _staged_text(path)
        if text:
            for what, pattern in LOCAL_PATHS.items():
                match = pattern.search(text)
                if match:
                    problems.append(f"{name}: contains {what} ({match.group()[:60]!r}); refusing to publish it.")
                    break
    return problems


def check_loads_without_package(staging: Path, tasks: list[str]) -> list[str]:
    """Load config, every auto class, the processor and the pipelines from ``staging`` in a subprocess where
    ``modeling_maskvl`` / ``maskvl_processing`` cannot be imported; returns the problems found."""
    code = _ISOLATED_LOAD.format(folder=str(staging.resolve()), auto_classes=list(REQUIRED_AUTO_CLASSES[1:]),
                                 tasks=tasks)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")  # loading only: no use for intra-op threads
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(staging.parent), env=env, capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1:] or ["(no error output)"]
        return [f"code files: the staged folder does not load on its own: {last[0]}"]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return [f"{name}: {problem}" for name, problem in report.items() if problem]


def upload(staging: Path, args: PublishArguments) -> str:
    """create_repo + upload_folder; returns the commit URL. The token is read by huggingface_hub itself."""
    if get_token() is None:
        raise RuntimeError("No Hugging Face token found: run `hf auth login` or set HF_TOKEN.")
    api = HfApi()
    api.create_repo(args.repo_id, private=args.private, exist_ok=True, repo_type="model")
    if args.revision is not None and not args.create_pr:
        api.create_branch(args.repo_id, branch=args.revision, exist_ok=True)
    info = api.upload_folder(repo_id=args.repo_id, folder_path=str(staging), revision=args.revision,
                             create_pr=args.create_pr, commit_message=args.commit_message)
    return str(getattr(info, "pr_url", None) or getattr(info, "commit_url", info))


def publish(args: PublishArguments) -> Path | str:
    """Validate, stage, check, then write the dry-run folder (returned) or upload (commit URL returned)."""
    checkpoint = Path(args.checkpoint)
    problems = validate_checkpoint(checkpoint)
    if problems:
        raise CheckpointError(_problem_list(checkpoint, problems))
    dry_run = Path(args.dry_run) if args.dry_run is not None else None
    if dry_run is not None and dry_run.exists() and any(dry_run.iterdir()):
        raise FileExistsError(f"--dry_run folder {dry_run} is not empty; choose a new folder.")
    with tempfile.TemporaryDirectory(prefix="maskvl-publish-") as tmp:
        staging = Path(tmp) / args.repo_id.split("/")[1]
        staging.mkdir()
        stage_folder(checkpoint, staging, args)
        problems = check_staged_text(staging) + scan_staged_files(staging)
        if not problems and not args.skip_load_check:
            tasks = list(json.loads((staging / "config.json").read_text())["custom_pipelines"])
            problems = check_loads_without_package(staging, tasks)
        if problems:
            raise CheckpointError(_problem_list(checkpoint, problems))
        if dry_run is None:
            return upload(staging, args)
        shutil.copytree(staging, dry_run, dirs_exist_ok=True)  # only a folder that passed every check
        return dry_run


def main(argv: list[str] | None = None) -> Path | str:
    parser = HfArgumentParser(PublishArguments)
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        (args,) = parser.parse_yaml_file(argv[0])
    elif len(argv) == 1 and argv[0].endswith(".json"):
        (args,) = parser.parse_json_file(argv[0])
    else:
        (args,) = parser.parse_args_into_dataclasses(args=argv)
    result = publish(args)
    if args.dry_run is not None:
        files = sorted(str(p.relative_to(result)) for p in Path(result).rglob("*") if p.is_file())
        print(f"Dry run: {len(files)} files staged in {result} (nothing uploaded):")
        print("\n".join(f"  {name}" for name in files))
    else:
        print(f"Uploaded to https://huggingface.co/{args.repo_id}: {result}")
    return result


# ----------------------------------------------------------------------------------------------- helpers
def _read_json(path: Path, problems: list[str]) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        problems.append(f"{path.name}: not valid JSON ({error}).")
        return None


def _check_weights(checkpoint: Path) -> list[str]:
    problems = []
    pickled = sorted(p.name for p in checkpoint.iterdir() if PICKLED_WEIGHTS.match(p.name))
    if pickled:
        problems.append(f"{', '.join(pickled)}: pickled weights are not published; save with safetensors "
                        "(save_pretrained does by default) and remove these files.")
    shards = sorted(checkpoint.glob("*.safetensors"))
    if not shards:
        problems.append("model.safetensors: no safetensors weights in the folder.")
    for path in shards:
        try:
            header, _ = read_safetensors_header(path)
            if not [k for k in header if k != "__metadata__"]:
                problems.append(f"{path.name}: holds no tensors.")
        except (OSError, ValueError) as error:
            problems.append(f"{path.name}: not a readable safetensors file ({error}).")
    for index in checkpoint.glob("*.safetensors.index.json"):
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        missing = sorted({f for f in weight_map.values() if not (checkpoint / f).is_file()})
        if missing:
            problems.append(f"{index.name}: lists missing shards {missing}.")
    return problems


def _check_auto_map(checkpoint: Path, source: str, auto_map: dict, required) -> list[str]:
    problems = [f"{source}: auto_map has no entry for {name}." for name in required if name not in auto_map]
    for name, target in auto_map.items():
        target = target[0] if isinstance(target, (list, tuple)) else target
        if target is None:
            continue
        if "--" in target:
            problems.append(f"{source}: auto_map[{name!r}] = {target!r} points at another repository.")
            continue
        module, _, cls = target.rpartition(".")
        code = checkpoint / f"{module}.py"
        if not code.is_file():
            problems.append(f"{source}: auto_map[{name!r}] needs {code.name}, which is missing.")
        elif not re.search(rf"^class {re.escape(cls)}\b", code.read_text(encoding="utf-8"), re.MULTILINE):
            problems.append(f"{code.name}: does not define {cls} (auto_map[{name!r}] in {source}).")
        else:
            problems += _check_sibling_imports(checkpoint, code)
    return problems


def _check_sibling_imports(checkpoint: Path, code: Path) -> list[str]:
    """Every ``from .x import`` of a code file must have its file in the folder; absolute imports of the
    package would only work where it is installed."""
    text = code.read_text(encoding="utf-8")
    problems = [f"{code.name}: imports {m}.py, which is missing." for m in re.findall(r"^from \.(\w+) import", text,
                                                                                      re.MULTILINE)
                if not (checkpoint / f"{m}.py").is_file()]
    absolute = re.findall(r"^\s*(?:from|import) (modeling_maskvl|maskvl_processing)\b", text, re.MULTILINE)
    if absolute:
        problems.append(f"{code.name}: imports the installed package ({absolute[0]}); Hub users do not have it.")
    return problems


def _check_processor(checkpoint: Path, config: dict) -> list[str]:
    problems = []
    processor = _read_json(checkpoint / "processor_config.json", problems)
    if processor is None:
        return problems + ["processor_config.json: missing -- save the MaskVLProcessor into the checkpoint "
                           "(processor.save_pretrained(output_dir))."]
    problems += _check_auto_map(checkpoint, "processor_config.json", processor.get("auto_map") or {},
                                ("AutoProcessor",))
    image = processor.get("image_processor") or _read_json(checkpoint / "preprocessor_config.json", problems) or {}
    problems += _check_auto_map(checkpoint, "processor_config.json (image_processor)", image.get("auto_map") or {},
                                ("AutoImageProcessor",))
    vision = config.get("vision_config") or {}
    size = image.get("size") or {}
    if size and (size.get("height"), size.get("width")) != (vision.get("image_size"),) * 2:
        problems.append(f"processor_config.json: image size {size} differs from the model's "
                        f"{vision.get('image_size')}x{vision.get('image_size')} (config.json vision_config).")
    if image.get("patch_size") not in (None, vision.get("patch_size")):
        problems.append(f"processor_config.json: patch_size {image.get('patch_size')} differs from the model's "
                        f"{vision.get('patch_size')}.")
    tokenizer = _read_json(checkpoint / "tokenizer_config.json", problems)
    if tokenizer is None or not ((checkpoint / "tokenizer.json").is_file() or (checkpoint / "vocab.txt").is_file()):
        return problems + ["tokenizer.json: no tokenizer saved in the checkpoint (tokenizer_config.json plus "
                           "tokenizer.json or vocab.txt)."]
    if not tokenizer.get("mask_token"):
        problems.append("tokenizer_config.json: the tokenizer has no mask_token; fill-mask needs one.")
    vocab = _tokenizer_vocab_size(checkpoint)
    model_vocab = (config.get("text_config") or {}).get("vocab_size")
    if vocab is not None and model_vocab is not None and vocab > model_vocab:
        problems.append(f"tokenizer.json: {vocab} tokens but the model's vocabulary has {model_vocab} "
                        "(config.json text_config.vocab_size); tokenizer and model disagree.")
    return problems


def _tokenizer_vocab_size(checkpoint: Path) -> int | None:
    if (checkpoint / "tokenizer.json").is_file():
        data = json.loads((checkpoint / "tokenizer.json").read_text(encoding="utf-8"))
        vocab = (data.get("model") or {}).get("vocab")
        added = {t["id"] for t in data.get("added_tokens", [])}
        return len(set(vocab.values()) | added) if isinstance(vocab, dict) else None
    if (checkpoint / "vocab.txt").is_file():
        return len((checkpoint / "vocab.txt").read_text(encoding="utf-8").splitlines())
    return None


def _scrub_config(path: Path) -> None:
    """Drop ``_name_or_path`` entries that point at local folders (e.g. a text tower loaded from disk)."""
    config = json.loads(path.read_text(encoding="utf-8"))

    def scrub(node):
        if isinstance(node, dict):
            value = node.get("_name_or_path")
            if isinstance(value, str) and (value.startswith(".") or looks_local(value)):
                node.pop("_name_or_path")
            for child in node.values():
                scrub(child)
    scrub(config)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _problem_list(checkpoint: Path, problems: list[str]) -> str:
    return f"Cannot publish {checkpoint}:\n" + "\n".join(f"  - {p}" for p in problems)


_ISOLATED_LOAD = textwrap.dedent("""
    import importlib.abc, json, sys
    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("modeling_maskvl", "maskvl_processing"):
                raise ImportError(name + " is blocked: the staged folder must load on its own")
    sys.meta_path.insert(0, _Block())
    sys.path = [p for p in sys.path if p not in ("", ".")]
    import transformers
    from transformers.dynamic_module_utils import get_class_from_dynamic_module
    folder = {folder!r}
    report = {{}}
    def attempt(name, load):
        try:
            load()
            report[name] = None
        except Exception as error:
            report[name] = type(error).__name__ + ": " + str(error).splitlines()[0]
    attempt("AutoConfig", lambda: transformers.AutoConfig.from_pretrained(folder, trust_remote_code=True))
    config = json.load(open(folder + "/config.json"))
    for name in {auto_classes!r}:
        attempt(name, lambda: get_class_from_dynamic_module(config["auto_map"][name], folder))
    def load_saved_architecture():
        architecture = (config.get("architectures") or ["MaskVLForPreTraining"])[0]
        auto = next(name for name, target in config["auto_map"].items() if target.endswith("." + architecture))
        model, info = getattr(transformers, auto).from_pretrained(folder, trust_remote_code=True,
                                                                 output_loading_info=True, ignore_mismatched_sizes=True)
        wrong = {{kind: sorted(str(k) for k in info.get(kind, ()))[:5]
                 for kind in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(kind)}}
        if wrong:
            raise ValueError(architecture + ": the weights do not fit config.json: " + str(wrong))
    attempt("model.safetensors", load_saved_architecture)
    attempt("AutoProcessor", lambda: transformers.AutoProcessor.from_pretrained(folder, trust_remote_code=True))
    for task in {tasks!r}:
        attempt("pipeline " + task, lambda: transformers.pipeline(task, model=folder, trust_remote_code=True))
    print(json.dumps(report))
""")


def cli(argv: list[str] | None = None) -> Path | str:
    """`main`, with a failure reported as one line naming the problem (exit status 1) instead of a traceback."""
    try:
        return main(argv)
    except (CheckpointError, FileExistsError, FileNotFoundError, ValueError, RuntimeError) as error:
        sys.exit(f"publish.py: {error}")
