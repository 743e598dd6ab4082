"""The Python examples of the solvers in README.md and docs/solvers.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def example_code(doc: Path) -> str:
    section = doc.read_text().split("## Using the solvers from Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def run(doc: Path, capsys) -> str:
    exec(compile(example_code(doc), str(doc), "exec"), {"__name__": "docs_example"})
    return capsys.readouterr().out


def test_the_python_example_in_docs_solvers_md_runs(capsys):
    out = run(ROOT / "docs" / "solvers.md", capsys)
    assert out.startswith("optimal alpha=")
    assert "infeasible budget - to serve the full demand, budget must be at least $" in out
    assert "rejected: classes: every rate_rps is 0" in out


def test_the_python_example_in_the_readme_runs(capsys):
    out = run(ROOT / "README.md", capsys)
    assert out.startswith("optimal alpha=") and "h100_tp8" in out
