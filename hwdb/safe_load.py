"""Reading the files a user hands us (YAML, JSON, CSV) with every limit checked before the content is used.

The lowest layer that reads files, so hwdb and planner share it (solvers reads its one CSV itself). Refused,
each with one line naming the file: a file over its byte cap, an empty one, a binary one (NUL bytes), UTF-16
or any other non-UTF-8 text, YAML anchors/aliases (refused while composing, before any expansion: a
billion-laughs document costs nothing), nesting deeper than MAX_DEPTH, CSVs over their row cap. Values shown
in messages are cut to SHOWN_CHARS characters.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, NoReturn

if TYPE_CHECKING:
    import yaml

MAX_DOCUMENT_BYTES = 4 * 2**20  # a model / scenario / workload / GPU / calibration YAML or a config.json
MAX_PLAN_BYTES = 64 * 2**20  # `planner optimize --format json` output
MAX_CSV_BYTES = 64 * 2**20
MAX_DEPTH = 64  # nesting of mappings / lists; our deepest documents (plans) nest 6 deep
SHOWN_CHARS = 60


class UnsafeInputError(ValueError):
    """A file refused before use; the message is one line starting with the file as shown to the user."""


def shown_value(value: Any) -> str:
    """repr(value), cut to SHOWN_CHARS characters (never echo a huge or expanded value)."""
    text = repr(value) if not isinstance(value, str) else f"'{value}'"
    text = text.replace("\n", " ")
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 1] + "…"


def read_text(path: str | os.PathLike[str], shown: str, max_bytes: int = MAX_DOCUMENT_BYTES) -> str:
    """The file's text: a regular file of 1..max_bytes bytes of UTF-8 (a UTF-8 BOM is dropped)."""
    p = Path(path)
    try:
        if not p.is_file():
            raise UnsafeInputError(f"{shown}: not found (or not a regular file)")
        with p.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise UnsafeInputError(f"{shown}: cannot read file ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise UnsafeInputError(f"{shown}: file larger than the {max_bytes // 2**20} MiB limit")
    if not data.strip():
        raise UnsafeInputError(f"{shown}: file is empty")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise UnsafeInputError(f"{shown}: file is UTF-16 text; save it as UTF-8")
    if b"\x00" in data:
        raise UnsafeInputError(f"{shown}: binary file (NUL bytes), expected UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UnsafeInputError(f"{shown}: not UTF-8 text (byte {e.start})") from None


def _depth_error(shown: str, line: int | None = None) -> UnsafeInputError:
    where = f" at line {line}" if line else ""
    return UnsafeInputError(f"{shown}: nesting deeper than {MAX_DEPTH} levels{where}")


def _safe_loader(shown: str) -> type[yaml.SafeLoader]:
    """A PyYAML SafeLoader that refuses anchors and aliases and caps nesting while composing."""
    import yaml

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
            event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in the stubs
            line = event.start_mark.line + 1 if event.start_mark else None  # the parser always sets the mark
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise UnsafeInputError(f"{shown}: YAML anchors/aliases (&, *) are not supported (line {line})")
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise _depth_error(shown, line)
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return Loader


def parse_yaml(text: str, shown: str) -> Any:
    import yaml

    loader = _safe_loader(shown)(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UnsafeInputError(f"{shown}: malformed YAML{where}: {problem}") from None
    except RecursionError:  # the scanner's own recursion on pathological flow nesting
        raise _depth_error(shown) from None
    finally:
        loader.dispose()


def _max_depth_exceeded(value: Any) -> bool:
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            if d > MAX_DEPTH:
                return True
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return False


def parse_json(text: str, shown: str) -> Any:
    def constant(name: str) -> NoReturn:  # NaN / Infinity are not JSON
        raise UnsafeInputError(f"{shown}: '{name}' is not a JSON number")

    try:
        value = json.loads(text, parse_constant=constant)
    except json.JSONDecodeError as e:
        raise UnsafeInputError(f"{shown}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise _depth_error(shown) from None
    if _max_depth_exceeded(value):
        raise _depth_error(shown)
    return value


def load_document(path: str | os.PathLike[str], shown: str | None = None, max_bytes: int = MAX_DOCUMENT_BYTES,
                  json_only: bool = False) -> Any:
    """A .json file (any file when json_only) as JSON, anything else as YAML, with the limits above."""
    shown = str(path) if shown is None else shown
    text = read_text(path, shown, max_bytes)
    return parse_json(text, shown) if json_only or str(path).endswith(".json") else parse_yaml(text, shown)


def csv_records(path: str | os.PathLike[str], shown: str, max_rows: int,
                max_bytes: int = MAX_CSV_BYTES) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each non-blank row, the header included; more than max_rows rows is an error."""
    text = read_text(path, shown, max_bytes)
    too_many = UnsafeInputError(f"{shown}: more than {max_rows:,} rows (the limit for this file)")
    if text.count("\n") > max_rows + 1 and sum(1 for _ in re.finditer(r"^[ \t]*[^\s]", text, re.M)) > max_rows + 1:
        raise too_many  # counted before any row is parsed
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = 0
    try:
        for cells in reader:
            if not cells or all(not c.strip() for c in cells):
                continue
            rows += 1
            if rows > max_rows + 1:  # + the header
                raise too_many
            yield reader.line_num, cells
    except csv.Error as e:
        raise UnsafeInputError(f"{shown} line {reader.line_num}: malformed CSV ({e})") from None
