"""Names: GPU aliases and resolving what a user typed (case-insensitive, '-' == '_', close-name hints)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Callable, Iterable, Mapping

from .errors import HwdbError, UnknownNameError
from .safe_load import shown_value
from .schema import GpuSpec

#: other spellings of engine names users type
ENGINE_ALIASES = {"tensorrt_llm": "trtllm", "trt_llm": "trtllm"}


def lookup_key(name: str) -> str:
    return str(name).strip().lower().replace("-", "_").replace(" ", "_")


def gpu_names(specs: Iterable[GpuSpec], display: Callable[[Path], str]) -> dict[str, str]:
    """Lookup key -> canonical GPU name for every name and alias; an alias two GPUs claim is an error."""
    by_name = {s.name: s for s in specs}
    owner: dict[str, str] = {n: n for n in by_name}
    for spec in sorted(by_name.values(), key=lambda s: s.name):
        for alias in spec.aliases:
            prev = owner.get(alias)
            if prev is not None and prev != spec.name:
                raise HwdbError(display(Path(spec.path)), "aliases",
                                f"alias {shown_value(alias)} is already used by GPU {prev!r}")
            owner[alias] = spec.name
    names: dict[str, str] = {}
    for spec in by_name.values():
        for n in spec.all_names:
            names.setdefault(n, spec.name)
            names.setdefault(lookup_key(n), spec.name)
    return names


def _shared_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def resolve(kind: str, query: str, names: Mapping[str, str]) -> str:
    """The canonical name ``query`` means (``names``: lookup key -> canonical name) or UnknownNameError."""
    key = lookup_key(query)
    for candidate in (str(query).strip().lower(), key):
        if candidate in names:
            return names[candidate]
    # rank: longest shared prefix first ('h100x' -> h100_sxm, h100_pcie), then similarity
    need = min(3, len(key))
    scored = []
    for cand in names:
        ratio = difflib.SequenceMatcher(None, key, cand).ratio()
        shared = _shared_prefix(key, cand)
        if shared >= need or ratio >= 0.6:
            scored.append((-(shared >= need), -shared, -ratio, cand))
    suggestions: list[str] = []
    for *_, c in sorted(scored):
        if names[c] not in suggestions:
            suggestions.append(names[c])
    raise UnknownNameError(kind, str(query), suggestions[:5], set(names.values()))
