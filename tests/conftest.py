"""Shared pytest options: `--update-goldens` (or SERVPLAN_UPDATE_GOLDENS=1) rewrites examples/goldens/; the
longest tests start first so that `-n 2 --dist loadgroup` (pyproject.toml) ends with short ones on both workers."""

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (CI must not flake on a new random draw); a developer
# hunting for counterexamples runs `pytest --hypothesis-profile=explore`.
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False, max_examples=500)
settings.load_profile("ci")

# The CLI sizes its tables from COLUMNS when it is set (else 140 off a terminal); pytest-xdist workers inherit
# COLUMNS=80, which cuts table columns off. In-process CLI output must not depend on the runner.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)


def pytest_addoption(parser):
    parser.addoption("--update-goldens", action="store_true", default=False,
                     help="rewrite the golden plans in examples/goldens/ instead of comparing")


@pytest.fixture(scope="session")
def example_plan():
    """(request, result) of `optimize` on examples/<stem>.yaml, planned once per session (per xdist worker) for
    every test that reads it; tests must not mutate either."""
    from planner.search.optimize import optimize
    from planner.search.scenario import build_request

    examples = Path(__file__).resolve().parents[1] / "examples"
    planned = {}

    def plan(stem: str):
        if stem not in planned:
            req = build_request(str(examples / f"{stem}.yaml"))
            planned[stem] = (req, optimize(req))
        return planned[stem]

    return plan


@pytest.fixture
def update_goldens(request) -> bool:
    wanted = request.config.getoption("--update-goldens") or os.environ.get("SERVPLAN_UPDATE_GOLDENS") == "1"
    if wanted and os.environ.get("CI") == "true":
        pytest.fail("refusing to rewrite goldens under CI=true: regenerate them locally and commit the diff")
    return wanted


# The longest tests and groups (most seconds first), started first: with one unit handed out at a time, the
# workers then finish together instead of one of them running a long test alone at the end. test_types.py stays
# out of it: in-process mypy grows its worker by ~100 MiB, which the hostile-file tests' forked children (peak RSS
# < 400 MiB, measured with wait4) would inherit if they ran after it on that worker.
LONGEST_FIRST = (
    "test_solvers_mix_optimality.py::",
    "test_whatif.py::test_deepseek_uses_expert_parallelism_beyond_one_board_on_the_supernode",
    "test_readme.py::test_every_readme_output_block_is_what_the_commands_print_now",
    "test_solvers_under_load.py::",
    "test_goldens.py::",
    "test_optimize.py::test_expert_parallel_candidates_carry_the_placement_imbalance",
    "test_simulate.py::",
    "test_whatif.py::",
    "test_launch_matches_plan.py::",
    "test_spec.py::test_optimize_with_spec_serves_more_and_shows_k_and_the_launch_flag",
    "test_solvers_experts.py::test_placement_never_exceeds_greedy_lpt_on_zipf_loads",
    "test_energy.py::",
    "test_bursty.py::",
)


def shared_fixture(item) -> str | None:
    """`module.fixture` of the first module-scoped fixture of ours that the test uses, if any."""
    names = sorted(f"{Path(d.baseid).stem}.{name}" for name, defs in item._fixtureinfo.name2fixturedefs.items()
                   for d in defs[-1:] if d.scope == "module" and d.baseid.startswith("tests/"))
    return names[0] if names else None


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(items):
    """Tests that share a module-scoped fixture run on one worker (`--dist loadgroup`), so that it is computed
    once; then the longest units first."""
    for item in items:
        if (group := shared_fixture(item)) and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(group))

    def rank(item) -> int:
        return next((k for k, prefix in enumerate(LONGEST_FIRST) if prefix in item.nodeid), len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: collection order within each rank
