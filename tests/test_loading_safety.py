"""What loading a checkpoint may do: the remote-code files only define classes when imported."""

import os
import shutil

import pytest
from transformers.dynamic_module_utils import get_relative_import_files

from isolation import run_isolated

REMOTE_CODE_DIRS = {"modeling_maskvl": None, "processing": ["image_processing_maskvl.py", "processing_maskvl.py"]}


@pytest.mark.parametrize("source", sorted(REMOTE_CODE_DIRS))
def test_remote_code_files_do_nothing_at_import(repo_root, tmp_path, source):
    """Import every file that is copied to the Hub with network, subprocesses and file writes forbidden."""
    package = tmp_path / "hubcode"
    package.mkdir()
    (package / "__init__.py").write_text("")
    names = REMOTE_CODE_DIRS[source] or [p.name for p in (repo_root / source).glob("*.py") if p.name != "__init__.py"]
    names += [p.name for p in (repo_root / source).glob("pipelines_*.py")]
    for name in names:  # each file and its relative imports: exactly what save_pretrained copies
        for path in [repo_root / source / name, *get_relative_import_files(str(repo_root / source / name))]:
            shutil.copy(path, package / os.path.basename(path))
    modules = sorted(p.stem for p in package.glob("*.py") if p.name != "__init__.py")
    result = run_isolated(f"""
        import builtins, io, json, os, socket, subprocess, sys, importlib
        # heavy dependencies first: only the remote-code modules are under watch
        import torch, transformers, numpy  # noqa: F401
        from transformers import PreTrainedModel, ProcessorMixin  # noqa: F401
        events = []
        def forbid(what):
            def guard(*args, **kwargs):
                events.append(what)
                raise RuntimeError(what + " at import time")
            return guard
        socket.socket.connect = forbid("network")
        subprocess.Popen.__init__ = forbid("subprocess")
        os.system = forbid("os.system")
        real_open = builtins.open
        def guarded_open(file, mode="r", *args, **kwargs):
            if any(flag in mode for flag in "wax+"):
                events.append("write " + str(file))
                raise RuntimeError("file write at import time")
            return real_open(file, mode, *args, **kwargs)
        builtins.open = guarded_open
        io.open = guarded_open
        sys.path.insert(0, {str(tmp_path)!r})
        imported = []
        for name in {modules!r}:
            importlib.import_module("hubcode." + name)
            imported.append(name)
        builtins.open = real_open
        print(json.dumps({{"events": events, "imported": imported}}))
    """, cwd=tmp_path)
    assert result["imported"] == modules and len(modules) >= 2
    assert result["events"] == []
