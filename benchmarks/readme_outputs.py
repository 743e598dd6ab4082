"""Regenerate README.md's command outputs from real runs, or check that they are current.

    python benchmarks/readme_outputs.py --write   # rewrite the output blocks in README.md
    python benchmarks/readme_outputs.py --check   # exit 1 with a unified diff when README.md is stale

Conventions in README.md (HTML comments, invisible when rendered):
  <!-- output: python benchmarks/readme_outputs.py -->   before a ```text block. Its `$ planner ...` lines
      (optionally ending in `| head -n N`) are run in order; every other line is regenerated: what the command
      prints on stdout and stderr through a pipe (rich at 140 columns, no colour), then `$ echo $?` and the
      exit code when it is not 0.
  <!-- input: NAME -->   before a fenced block whose text is written to NAME before the next commands run
      (so an example CSV in the README is the one the example command reads).
All commands run in-process (typer's CliRunner on cli.app), in one temporary folder that links examples/,
so a file written by one command (--out plan.json) is read by a later one.

Wall-time figures ("in 0.16 s", "total 0.36 s", "gap 0.00%, 2.83 s") change from run to run: they compare as
<t>, and --write keeps the README's figures in a block where nothing else changed.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import sys
import tempfile
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

README = ROOT / "README.md"
REGENERATE = "python benchmarks/readme_outputs.py --write"
OUTPUT_MARKER = "<!-- output: python benchmarks/readme_outputs.py -->"
INPUT_MARKER = re.compile(r"<!-- input: (\S+) -->")
HEAD = re.compile(r"\s*\|\s*head -n (\d+)\s*$")
WALL_TIME = re.compile(r"(\bin|\btotal|%,) \d+(?:\.\d+)? s\b")
EXIT_ECHO = "$ echo $?"
# Rich reads these to pick width and colour; a pipe at 140 columns (cli._console) is what the README shows.
TERMINAL_ENV = {k: None for k in ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE",
                                  "TTY_INTERACTIVE", "JUPYTER_COLUMNS", "JUPYTER_LINES")}


class ReadmeError(Exception):
    """A marked block the script cannot run (unknown command, missing fence, unexpected exception)."""


def mask(text: str) -> str:
    """Wall-time figures replaced by <t>, so that two runs of the same command compare equal."""
    return WALL_TIME.sub(r"\1 <t> s", text)


def commands(block: list[str]) -> list[str]:
    """The `$ planner ...` lines of an output block (the `$ echo $?` lines are output, not commands)."""
    out = []
    for line in block:
        if not line.startswith("$ ") or line == EXIT_ECHO:
            continue
        if not line.startswith("$ planner "):
            raise ReadmeError(f"only `$ planner ...` commands can be regenerated, got: {line}")
        out.append(line[2:])
    if not out:
        raise ReadmeError("an output block without a `$ planner ...` line")
    return out


def run(command: str) -> list[str]:
    """One command as a shell transcript: `$ command`, its output lines, and its exit code when not 0."""
    from typer.testing import CliRunner

    from cli import app

    head = HEAD.search(command)
    argv = shlex.split(command[:head.start()] if head else command)
    result = CliRunner().invoke(app, argv[1:], prog_name="planner", env=TERMINAL_ENV)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        detail = "".join(traceback.format_exception(result.exception)).rstrip()
        raise ReadmeError(f"`{command}` raised instead of printing:\n{detail}")
    lines = [line.rstrip() for line in result.output.splitlines()]
    if head:
        lines = lines[:int(head.group(1))]
    return [f"$ {command}", *lines] + ([EXIT_ECHO, str(result.exit_code)] if result.exit_code else [])


def fenced_block(lines: list[str], start: int) -> tuple[int, int]:
    """(first content line, closing fence line) of the fenced block opening at lines[start]."""
    if start >= len(lines) or not lines[start].startswith("```"):
        raise ReadmeError(f"line {start}: a marker must sit right above a fenced block")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("```")), None)
    if end is None:
        raise ReadmeError(f"line {start + 1}: fenced block never closed")
    return start + 1, end


def regenerate(text: str) -> str:
    """README text with every marked output block rebuilt from fresh runs (in a temporary folder)."""
    lines = text.split("\n")
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="readme-outputs-") as tmp:
        (Path(tmp) / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
        os.chdir(tmp)
        try:
            i = 0
            while i < len(lines):
                if (m := INPUT_MARKER.fullmatch(lines[i].strip())) is not None:
                    first, end = fenced_block(lines, i + 1)
                    (Path(tmp) / m.group(1)).write_text("\n".join(lines[first:end]) + "\n")
                    i = end
                elif lines[i].strip() == OUTPUT_MARKER:
                    first, end = fenced_block(lines, i + 1)
                    old = lines[first:end]
                    new = [line for c in commands(old) for line in run(c)]
                    if mask("\n".join(new)) != mask("\n".join(old)):
                        lines[first:end] = new
                        end = first + len(new)
                    i = end
                i += 1
        finally:
            os.chdir(cwd)
    return "\n".join(lines)


def drift(current: str, fresh: str) -> str:
    """'' when the README is current (wall times aside), else what differs and the command that fixes it."""
    if mask(current) == mask(fresh):
        return ""
    diff = difflib.unified_diff(current.splitlines(), fresh.splitlines(), "README.md", "README.md (fresh runs)",
                                lineterm="")
    return (f"README.md output blocks differ from what the commands print now; regenerate with:\n"
            f"    {REGENERATE}\n" + "\n".join(diff))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite README.md's output blocks")
    mode.add_argument("--check", action="store_true", help="exit 1 and print a diff when README.md is stale")
    args = ap.parse_args(argv)
    current = README.read_text()
    try:
        fresh = regenerate(current)
    except ReadmeError as e:
        print(f"readme_outputs: {e}", file=sys.stderr)
        return 2
    if args.write:
        if fresh != current:
            README.write_text(fresh)
        print("README.md " + ("rewritten" if fresh != current else "already current"))
        return 0
    message = drift(current, fresh)
    if message:
        print(message)
        return 1
    print("README.md output blocks are current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
