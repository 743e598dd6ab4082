"""The layout keeps its promises (docs/architecture.md "Layout"): small modules, citations inside the repo."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "cli.py", *sorted(ROOT.glob("planner/**/*.py")), *sorted(ROOT.glob("hwdb/*.py")),
           *sorted(ROOT.glob("solvers/*.py"))]


def test_no_module_is_over_400_lines():
    long = {p.relative_to(ROOT).as_posix(): n for p in SOURCES if (n := len(p.read_text().splitlines())) > 400}
    assert not long


def test_docstrings_cite_the_repository_not_a_file_outside_it():
    cited = [p.relative_to(ROOT).as_posix() for p in SOURCES if "DESIGN §" in p.read_text()]
    assert not cited
