"""Keeping access tokens and machine-local paths out of what a run writes or publishes: one owner.

* `scrub(value)` -- the one scrubbing rule, recursive over dicts and lists: a value under a key ending in
  `_token` becomes None, a local path its last component (with `local_prefix`, e.g. "./", in front). Used for
  `training_args.json` (`shareable_arguments`), the pickled `training_args.bin` (`arguments.ShareablePickleMixin`)
  and the model card's training summary (`model_card.scrub_summary`).
* `check_no_machine_details(text)` -- the check the model card and the publish script run on every text they
  write: it refuses a local path, the user name or a Hub token.
"""

import getpass
import json
import os
import re
from dataclasses import asdict
from pathlib import Path

HUB_TOKEN = re.compile(r"hf_[A-Za-z0-9]{20,}")
MACHINE_KEYS = ("output_dir", "logging_dir")  # where this machine wrote things: left out of shared arguments
_LOCAL_ROOTS = re.compile(r"(?<![\w.:/])(/(?:home|Users|tmp|root|work|mnt|data|scratch|var)/[^\s)`'\"]*)")


def is_secret_key(key) -> bool:
    """Keys whose values are access tokens (`hub_token`, `push_to_hub_token`, ...)."""
    return isinstance(key, str) and key.endswith("_token")


def looks_local(text: str) -> bool:
    """True for a path of this machine (absolute, relative with ./ or ../, ~, Windows, or an existing folder)."""
    return (text.startswith(("/", "./", "../", "~")) or bool(re.match(r"^[A-Za-z]:[\\/]", text))
            or "\\" in text or os.path.exists(text) and (os.sep in text or os.path.isdir(text)))


def last_component(text: str) -> str:
    """The last component of a path (the path itself when it has none)."""
    return Path(text.rstrip("/\\")).name or text


def scrub(value, key=None, *, local_prefix: str = "", secrets: bool = True):
    """`value` without secrets (a value under a `*_token` key -> None; skipped with `secrets=False`) and with every
    local path reduced to `local_prefix + last component`, recursively through dicts, lists and tuples."""
    if secrets and is_secret_key(key) and value is not None:
        return None
    if isinstance(value, dict):
        return {k: scrub(v, k, local_prefix=local_prefix, secrets=secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, local_prefix=local_prefix, secrets=secrets) for v in value]
    if isinstance(value, os.PathLike) or (isinstance(value, str) and looks_local(value)):
        return local_prefix + last_component(os.fspath(value))
    return value


def shareable_arguments(*dataclasses_) -> dict:
    """All arguments as a JSON-able dict without tokens or machine-local paths (for the Hub)."""
    out = {}
    for args in dataclasses_:
        values = args.to_dict() if hasattr(args, "to_dict") else asdict(args)
        out.update({key: scrub(value, key) for key, value in values.items()
                    if not is_secret_key(key) and key not in MACHINE_KEYS})
    return json.loads(json.dumps(out, default=str))


def check_no_machine_details(text: str, extra: list[str] | None = None, user_name: bool = True) -> None:
    """Raise ``ValueError`` if ``text`` holds a local path, the user name (unless ``user_name=False``) or a Hub
    token. ``extra``: further local paths to look for."""
    needles = {"home directory": str(Path.home()), "working directory": os.getcwd()}
    for i, item in enumerate(extra or []):
        needles[f"local path #{i}"] = item
    for what, needle in needles.items():
        if needle and needle not in ("/", ".") and needle in text:
            raise ValueError(f"Contains the {what} ({needle!r}); refusing to publish it.")
    user = _user_name() if user_name else None
    if user and len(user) > 2 and user not in ("root", "user") and re.search(rf"\b{re.escape(user)}\b", text):
        raise ValueError(f"Contains the local user name {user!r}; refusing to publish it.")
    if HUB_TOKEN.search(text):
        raise ValueError("Contains something that looks like a Hugging Face token; refusing to publish it.")
    for match in _LOCAL_ROOTS.finditer(text):
        raise ValueError(f"Contains a local path ({match.group(1)!r}); refusing to publish it.")


def _user_name() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (containers)
        return None


__all__ = [
    "HUB_TOKEN",
    "check_no_machine_details",
    "is_secret_key",
    "last_component",
    "looks_local",
    "scrub",
    "shareable_arguments",
]
