"""The errors of the hardware database: one names the file and the field, one an unknown name with hints."""

from __future__ import annotations

from typing import Iterable

from .safe_load import shown_value


class HwdbError(ValueError):
    """A hardware-database file is missing, malformed or inconsistent.

    ``path`` is the file (as shown to the user) and ``field`` the offending key (dotted for nested
    keys, e.g. ``efficiency.gemm.fp8``), or ``None`` when the problem is the file as a whole.
    """

    def __init__(self, path: str, field: str | None, message: str):
        self.path = path
        self.field = field
        self.reason = message
        where = f"{path}: field '{field}'" if field else str(path)
        super().__init__(f"{where}: {message}")


class UnknownNameError(HwdbError):
    """A GPU / engine name that is not in the database (message suggests close names)."""

    def __init__(self, kind: str, name: str, suggestions: Iterable[str], known: Iterable[str]):
        self.kind = kind
        self.name = name
        self.suggestions = tuple(suggestions)
        self.known = tuple(sorted(known))
        if self.suggestions:
            msg = f"unknown {kind} {shown_value(name)}; did you mean: {', '.join(self.suggestions)}?"
        else:
            msg = f"unknown {kind} {shown_value(name)}; known: {', '.join(self.known) or '(none)'}"
        ValueError.__init__(self, msg)
        self.path = ""
        self.field = None
        self.reason = msg
