"""Canonical JSON: sorted keys, floats rounded to 6 significant digits, so output is byte-stable."""

from __future__ import annotations

import dataclasses
import json
import math


def _canon(x):
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return _canon(dataclasses.asdict(x))
    if isinstance(x, dict):
        return {str(k): _canon(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_canon(v) for v in x]
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            return str(x)
        r = float(f"{x:.6g}")
        return 0.0 if r == 0 else (int(r) if r.is_integer() and abs(r) < 1e15 else r)
    return x


def canonical(obj):
    """The JSON-ready, rounded form of `obj` (dataclasses, dicts, lists, numbers)."""
    return _canon(obj)


def canonical_json(obj) -> str:
    return json.dumps(_canon(obj), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
