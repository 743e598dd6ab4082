"""Text views of the command outputs as plain data (lines and tables); cli.py lays them out with rich.

A view is a list of blocks: a `str` is one line, a `Table` a table. Cells are already text (`cell`), so the
CLI does no formatting of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# columns read left to right like words; every other column holds numbers and is right-aligned
TEXT_COLUMNS = frozenset({"", "#", "GPU", "GPUs", "instances", "instance", "class", "name", "op", "field", "role",
                          "gpu"})


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    no_wrap: frozenset[str] = frozenset()


Block = str | Table


def table(title: str, columns: list[str], rows: list[list], caption: str = "",
          no_wrap: frozenset[str] = frozenset()) -> Table:
    return Table(title, tuple(columns), tuple(tuple(cell(x) for x in r) for r in rows), caption, no_wrap)


def cell(x: object) -> str:
    """A table cell as a person writes it, never a Python repr: {'bf16': 989.0} -> 'bf16 989', None -> '-'."""
    if x is None:
        return "-"
    if isinstance(x, Mapping):
        return ", ".join(f"{k} {cell(v)}" for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return ", ".join(cell(v) for v in x)
    if isinstance(x, float):
        return f"{x:g}"
    return str(x)
