"""The Python example in docs/solvers.md runs as written."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "solvers.md"


def example_code() -> str:
    section = DOC.read_text().split("## Using the solvers from Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_python_example_in_docs_solvers_md_runs(capsys):
    exec(compile(example_code(), str(DOC), "exec"), {"__name__": "docs_example"})
    out = capsys.readouterr().out
    assert out.startswith("optimal alpha=")
    assert "infeasible budget - to serve the full demand, budget must be at least $" in out
    assert "rejected: classes: every rate_rps is 0" in out
