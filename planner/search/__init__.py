"""From a request to ranked plans: scenario -> candidates -> MILP (solvers.mix) -> plans; calibration. See docs/architecture.md."""
