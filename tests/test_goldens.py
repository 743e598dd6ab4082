"""Golden plans: every scenario in examples/ gives byte-identical JSON (apart from wall-time fields).

Regenerate deliberately with `pytest tests/test_goldens.py --update-goldens` and commit the diff with the
reason in the message.
"""

from pathlib import Path

import pytest

from planner.render.jsonio import canonical_json
from planner.render.report import result_json
from planner.search.optimize import optimize
from planner.search.scenario import build_request

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCENARIOS = sorted(EXAMPLES.glob("*.yaml"))


def plan_document(req, res) -> str:
    """What `planner optimize PATH --format json --launch` prints for PATH's request and result, minus the
    wall-clock fields."""
    doc = result_json(res, req, launch=True)
    doc.pop("wall_time_s")
    doc["solver"].pop("time_s")
    return canonical_json(doc)


def test_there_are_at_least_six_example_scenarios():
    assert len(SCENARIOS) >= 6


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_example_plan_matches_its_golden(scenario, update_goldens, example_plan):
    golden = EXAMPLES / "goldens" / f"{scenario.stem}.json"
    actual = plan_document(*example_plan(scenario.stem))
    if update_goldens or not golden.exists():
        if not update_goldens:
            pytest.fail(f"no golden for {scenario.name}: run pytest --update-goldens and commit it")
        golden.write_text(actual)
        return
    assert actual == golden.read_text(), f"{scenario.name}: plan changed; if intended, run --update-goldens"


def test_same_scenario_twice_gives_identical_json(example_plan):
    again = build_request(str(EXAMPLES / "llama-3.1-70b.yaml"))  # planned a second time, in the same process
    assert plan_document(again, optimize(again)) == plan_document(*example_plan("llama-3.1-70b"))
