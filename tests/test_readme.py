"""README.md shows what the tool prints now: every output block is a fresh run (benchmarks/readme_outputs.py)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def load_script():
    spec = importlib.util.spec_from_file_location("readme_outputs", ROOT / "benchmarks" / "readme_outputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ro = load_script()


def fenced_blocks(text: str):
    """(line above the opening fence, info string, block lines) of every fenced block."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            above = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            yield above.strip(), lines[i][3:].strip(), lines[i + 1:end]
            i = end
        i += 1


def test_every_readme_output_block_is_what_the_commands_print_now():
    current = README.read_text()
    assert ro.drift(current, ro.regenerate(current)) == ""


def test_every_block_that_shows_output_is_marked_for_regeneration():
    blocks = list(fenced_blocks(README.read_text()))
    marked = [b for b in blocks if b[0] == ro.OUTPUT_MARKER]
    assert len(marked) >= 7
    for above, info, body in blocks:
        shows_a_run = info in ("", "text") or any(line.startswith("$ ") for line in body)
        assert not shows_a_run or above == ro.OUTPUT_MARKER, f"unmarked output block starting {body[:1]}"
        assert info == "text" or above != ro.OUTPUT_MARKER


def test_a_stale_figure_fails_the_check_and_names_the_command_that_fixes_it():
    block = "\n".join([ro.OUTPUT_MARKER, "```text", "$ planner hw show h100x", "error: stale message", "```"])
    fresh = ro.regenerate(block)
    assert "error: unknown GPU 'h100x'" in fresh and fresh.endswith("$ echo $?\n2\n```")
    message = ro.drift(block, fresh)
    assert ro.REGENERATE in message and "-error: stale message" in message
    assert ro.drift(fresh, ro.regenerate(fresh)) == ""


def test_an_input_block_is_the_file_the_next_command_reads(tmp_path):
    text = "\n".join(["<!-- input: m.csv -->", "```csv", "model,gpu,tp,isl,osl,tpot_ms",
                      "llama-3.1-8b,h100_sxm,3x,1024,256,12", "```",
                      ro.OUTPUT_MARKER, "```text", "$ planner calibrate m.csv", "```"])
    fresh = ro.regenerate(text)
    error = fresh.split("$ planner calibrate m.csv\n", 1)[1].splitlines()[0]
    assert error.startswith("error: ") and "line 2" in error and "'tp'" in error
    assert fresh.endswith("$ echo $?\n2\n```")


def test_wall_times_compare_equal_and_nothing_else_is_masked():
    a = "solver: highs optimal (gap 0.00%) in 0.16 s over 9 instance types; total 0.36 s; CP-SAT feasible, gap 2.51%, 3.53 s"
    b = "solver: highs optimal (gap 0.00%) in 1.20 s over 9 instance types; total 4.10 s; CP-SAT feasible, gap 2.51%, 0.90 s"
    assert ro.mask(a) == ro.mask(b)
    assert ro.mask("offered for 600 s") == "offered for 600 s"
    assert ro.mask("gap 2.51%, 3.53 s") != ro.mask("gap 2.52%, 3.53 s")


def test_a_command_other_than_planner_is_refused():
    with pytest.raises(ro.ReadmeError, match="only `\\$ planner"):
        ro.regenerate("\n".join([ro.OUTPUT_MARKER, "```text", "$ rm -rf /", "```"]))


def test_the_printed_line_quoted_after_the_solvers_example_is_what_it_prints(capsys):
    section = README.read_text().split("## Using the solvers from Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    quoted = re.search(r"```\n\nprints `([^`]*)`", section).group(1)
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    assert capsys.readouterr().out.strip() == quoted
