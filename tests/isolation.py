"""Run Python code in a fresh process where the maskvl packages cannot be imported.

Used to prove that a saved folder works as Hub remote code: a meta-path hook refuses
``modeling_maskvl`` and ``maskvl_processing`` (editable or regular installs alike), and the
repository is not on ``sys.path``.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

_BLOCKER = """
import sys, importlib.abc
class _BlockMaskVL(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("modeling_maskvl", "maskvl_processing"):
            raise ImportError(f"{name} is blocked: this process must work from the saved folder alone")
        return None
sys.meta_path.insert(0, _BlockMaskVL())
sys.path = [p for p in sys.path if p not in ("", ".")]
"""


def run_isolated(code: str, cwd: str | Path, timeout: int = 300) -> dict:
    """Run ``code`` (which must print one JSON object on its last stdout line) without the package."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    script = _BLOCKER + "\n" + textwrap.dedent(code)
    proc = subprocess.run([sys.executable, "-c", script], cwd=str(cwd), env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"isolated process failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
