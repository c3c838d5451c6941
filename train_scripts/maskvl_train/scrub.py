"""Keeping access tokens and machine-local paths out of what a run writes or publishes."""

import json
import os
from dataclasses import asdict


def shareable_arguments(*dataclasses_) -> dict:
    """All arguments as a JSON-able dict without tokens or machine-local paths (for the Hub)."""
    out = {}
    for args in dataclasses_:
        values = args.to_dict() if hasattr(args, "to_dict") else asdict(args)
        for key, value in values.items():
            if key.endswith("_token") or key in ("output_dir", "logging_dir", "hub_token", "push_to_hub_token"):
                continue
            if isinstance(value, str) and os.path.isabs(value):
                value = os.path.basename(os.path.normpath(value))
            out[key] = value
    return json.loads(json.dumps(out, default=str))


__all__ = ["shareable_arguments"]
