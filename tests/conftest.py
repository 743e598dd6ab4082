"""Shared pytest options: `--update-goldens` (or SERVPLAN_UPDATE_GOLDENS=1) rewrites examples/goldens/."""

import os

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (CI must not flake on a new random draw); a developer
# hunting for counterexamples runs `pytest --hypothesis-profile=explore`.
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False, max_examples=500)
settings.load_profile("ci")


def pytest_addoption(parser):
    parser.addoption("--update-goldens", action="store_true", default=False,
                     help="rewrite the golden plans in examples/goldens/ instead of comparing")


@pytest.fixture
def update_goldens(request) -> bool:
    wanted = request.config.getoption("--update-goldens") or os.environ.get("SERVPLAN_UPDATE_GOLDENS") == "1"
    if wanted and os.environ.get("CI") == "true":
        pytest.fail("refusing to rewrite goldens under CI=true: regenerate them locally and commit the diff")
    return wanted
