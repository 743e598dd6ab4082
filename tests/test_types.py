"""mypy is clean: `--strict` for solvers and planner.perf, mypy's default level for the rest of the package.

The levels, the files (cli.py, hwdb, planner, solvers) and the two third-party exceptions (pulp ships no types,
highspy.Highs() has no annotations) are in pyproject.toml's [tool.mypy]. mypy runs in-process without its
cache, as on a fresh CI checkout; a failure shows mypy's report.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parents[1]


def mypy_report(*args: str) -> tuple[int, str]:
    """(exit status, report) of mypy with the project's configuration, run from the repository root."""
    stdout, stderr, status = api.run(["--config-file", str(ROOT / "pyproject.toml"), "--no-incremental",
                                      "--cache-dir", os.devnull, *args])
    return status, stdout + stderr


def test_solvers_and_perf_pass_mypy_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    # --strict on the command line, so the check does not depend on the overrides; the modules they import are
    # checked by the next test, at their own level
    monkeypatch.chdir(ROOT)
    status, report = mypy_report("--strict", "--follow-imports=silent", "--no-warn-unused-configs", "solvers",
                                 "planner/perf")
    assert status == 0 and report.startswith("Success"), report


def test_the_package_passes_mypy_at_its_configured_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    status, report = mypy_report()  # the files of [tool.mypy]
    assert status == 0 and report.startswith("Success"), report
