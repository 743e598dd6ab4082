"""solvers/ stands alone: it imports none of our other packages nor the CLI stack, and loads the solver
libraries only when a solve runs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SOLVERS = Path(__file__).resolve().parents[1] / "solvers"


def test_solvers_source_never_imports_our_other_packages_or_the_cli_stack():
    forbidden = {"planner", "hwdb", "cli", "typer", "rich"}
    for path in sorted(SOLVERS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & forbidden, f"{path.name}:{node.lineno} imports {roots & forbidden}"


def test_importing_solvers_loads_no_solver_library():
    code = (
        "import sys, solvers; print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'highspy', 'pulp', 'ortools', 'numpy', 'scipy', 'planner', 'hwdb', 'cli', 'typer', 'rich'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
