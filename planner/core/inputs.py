"""The planner's file edge: every YAML / JSON / CSV it reads goes through here (limits in hwdb.safe_load),
and a refused file is a PlannerInputError naming it (exit 2)."""

from __future__ import annotations

import os
from typing import Any, Iterator

from hwdb.safe_load import MAX_CSV_BYTES, MAX_DOCUMENT_BYTES, UnsafeInputError, csv_records, load_document, shown_value
from planner.core.errors import PlannerInputError

__all__ = ["read_document", "read_csv", "shown_value"]


def read_document(path: str | os.PathLike[str], max_bytes: int = MAX_DOCUMENT_BYTES, json_only: bool = False) -> Any:
    """A .json file (any file when json_only) as JSON, any other as YAML (no aliases, bounded size and nesting)."""
    try:
        return load_document(path, str(path), max_bytes, json_only)
    except UnsafeInputError as e:
        raise PlannerInputError(str(e)) from None


def read_csv(path: str | os.PathLike[str], max_rows: int,
             max_bytes: int = MAX_CSV_BYTES) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each non-blank row of a CSV, the header first; at most max_rows data rows."""
    try:
        yield from csv_records(path, str(path), max_rows, max_bytes)
    except UnsafeInputError as e:
        raise PlannerInputError(str(e)) from None
