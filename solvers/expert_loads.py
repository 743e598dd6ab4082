"""Per-expert loads for expert placement: from an activation-count CSV, or a seeded Zipf default."""

from __future__ import annotations

import csv
import math
import os

from .errors import SolverInputError

MAX_EXPERTS = 65_536  # rows of an expert-count CSV (the largest MoE layers have a few hundred experts)
MAX_CSV_BYTES = 16 * 2**20


def zipf_loads(num_experts: int, s: float = 1.0, seed: int = 0) -> tuple[float, ...]:
    """Zipf loads that sum to 1: the k-th hottest expert gets ∝ 1/k**s, experts shuffled by ``seed``."""
    if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 1:
        raise SolverInputError(f"num_experts: must be an integer >= 1, got {num_experts!r}")
    if not isinstance(s, (int, float)) or not math.isfinite(s) or s < 0:
        raise SolverInputError(f"s: must be a finite number >= 0, got {s!r}")
    import numpy as np

    weights = 1.0 / np.arange(1, num_experts + 1, dtype=float) ** s
    weights = weights[np.random.default_rng(seed).permutation(num_experts)]
    return tuple(float(w) for w in weights / weights.sum())


def load_expert_counts_csv(path: str | os.PathLike[str]) -> tuple[float, ...]:
    """Loads from a CSV with header ``expert,count``: one row per expert id 0..E-1, in any order.

    Errors name the file and line: a file that is not UTF-8 text of at most MAX_CSV_BYTES, a missing or
    extra column, an id that is not an integer or is repeated, a count that is not a finite number >= 0,
    more than MAX_EXPERTS rows, and ids missing from 0..E-1.
    """
    counts: dict[int, float] = {}
    rows = csv.reader(_text(path).splitlines())
    try:
        header = [cell.strip() for cell in next(rows, [])]
        if header != ["expert", "count"]:
            raise SolverInputError(f"{path}:1: the header must be 'expert,count', got {_shown(','.join(header))}")
        for line, row in enumerate(rows, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != 2:
                raise SolverInputError(f"{path}:{line}: expected 2 columns (expert,count), got {len(row)}")
            if len(counts) >= MAX_EXPERTS:
                raise SolverInputError(f"{path}:{line}: more than {MAX_EXPERTS:,} expert rows")
            counts[_expert_id(row[0], path, line, counts)] = _count(row[1], path, line)
    except csv.Error as error:
        raise SolverInputError(f"{path}:{rows.line_num}: malformed CSV ({error})") from None
    if not counts:
        raise SolverInputError(f"{path}: no expert rows")
    missing = sorted(set(range(len(counts))) - set(counts))
    if missing:
        raise SolverInputError(f"{path}: expert ids must be 0..{len(counts) - 1}; missing {missing[:5]}")
    return tuple(counts[e] for e in range(len(counts)))


def _text(path: str | os.PathLike[str]) -> str:
    """The file as UTF-8 text: at most MAX_CSV_BYTES, no NUL bytes (binary), no UTF-16."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CSV_BYTES + 1)
    except OSError as error:
        raise SolverInputError(f"{path}: cannot read expert counts ({error.strerror})") from None
    if len(data) > MAX_CSV_BYTES:
        raise SolverInputError(f"{path}: file larger than the {MAX_CSV_BYTES // 2**20} MiB limit")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in data:
        raise SolverInputError(f"{path}: binary or UTF-16 file, expected UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SolverInputError(f"{path}: not UTF-8 text (byte {error.start})") from None


def _shown(text: str) -> str:
    """A value quoted for a message, cut to 60 characters."""
    return repr(text) if len(text) <= 58 else repr(text[:57]) + "…"


def _expert_id(cell: str, path: str | os.PathLike[str], line: int, seen: dict[int, float]) -> int:
    try:
        expert = int(cell.strip())
    except ValueError:
        raise SolverInputError(f"{path}:{line}: expert {_shown(cell.strip())} is not an integer id") from None
    if expert < 0 or expert in seen:
        raise SolverInputError(f"{path}:{line}: expert id {expert} is negative or repeated")
    return expert


def _count(cell: str, path: str | os.PathLike[str], line: int) -> float:
    try:
        count = float(cell.strip())
    except ValueError:
        raise SolverInputError(f"{path}:{line}: count {_shown(cell.strip())} is not a number") from None
    if not math.isfinite(count) or count < 0:
        raise SolverInputError(f"{path}:{line}: count {_shown(cell.strip())} must be a finite number >= 0")
    return count
