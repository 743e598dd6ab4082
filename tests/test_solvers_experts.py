"""Expert placement: optimal on tiny cases (brute force), never worse than greedy LPT, deterministic, and
the load inputs (Zipf default, counts CSV) with their errors."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random

import pytest

from solvers import ExpertProblem, SolverInputError, load_expert_counts_csv, place_experts, zipf_loads
from solvers.experts import copy_counts, greedy_lpt, placement_objective, rank_loads


def brute_force_objective(problem: ExpertProblem) -> float:
    """Best objective over every placement of the copies (copy counts fixed by ``copy_counts``)."""
    copies = copy_counts(problem)
    choices = [itertools.combinations(range(problem.ranks), n) for n in copies]
    best = float("inf")
    for ranks_of in itertools.product(*choices):
        placement = tuple(
            tuple(e for e, held in enumerate(ranks_of) if r in held) for r in range(problem.ranks)
        )
        if all(len(p) <= problem.slots_per_rank for p in placement):
            best = min(best, placement_objective(problem, placement))
    return best


def random_tiny_problem(seed: int) -> ExpertProblem:
    rng = random.Random(seed)
    experts, ranks = rng.randint(2, 6), rng.randint(1, 3)
    slots = -(-experts // ranks) + rng.choice((0, 0, 1))
    loads = tuple(round(rng.uniform(0.0, 10.0), 3) for _ in range(experts))
    coactivation = None
    if rng.random() < 0.4:
        upper = {(e, f): round(rng.uniform(0, 2), 2) for e in range(experts) for f in range(e + 1, experts)}
        coactivation = tuple(
            tuple(0.0 if e == f else upper[min(e, f), max(e, f)] for f in range(experts)) for e in range(experts)
        )
    return ExpertProblem(
        loads if sum(loads) > 0 else (1.0,) * experts,
        ranks,
        slots,
        coactivation=coactivation,
        traffic_weight=round(rng.uniform(0.1, 2.0), 2) if coactivation else 0.0,
        replicate=rng.random() < 0.5,
    )


def without_time(placement):
    return dataclasses.replace(placement, time_s=0.0)


def test_placement_equals_brute_force_on_60_tiny_cases():
    for seed in range(60):
        problem = random_tiny_problem(seed)
        result = place_experts(problem, time_limit_s=2.0)
        assert result.status == "optimal", (problem, result)
        tolerance = 1e-4 * sum(problem.loads)
        assert placement_objective(problem, result.placement) == pytest.approx(
            brute_force_objective(problem), abs=tolerance
        ), problem


@pytest.mark.parametrize(("experts", "ranks", "slots", "replicate"), [
    (16, 4, 4, False), (16, 4, 6, True), (64, 8, 8, False), (64, 8, 10, True), (60, 16, 5, True),
])
def test_placement_never_exceeds_greedy_lpt_on_zipf_loads(experts, ranks, slots, replicate):
    for seed in range(3):
        problem = ExpertProblem(zipf_loads(experts, 1.0, seed=seed), ranks, slots, replicate=replicate)
        result = place_experts(problem, time_limit_s=0.3)
        greedy = greedy_lpt(problem)
        assert placement_objective(problem, result.placement) <= placement_objective(problem, greedy) + 1e-12


def test_big_instance_starts_from_greedy_and_reports_its_gap():
    problem = ExpertProblem(zipf_loads(256, 1.0, seed=0), 64, 5, replicate=True)
    result = place_experts(problem, time_limit_s=0.5)
    assert result.status in ("optimal", "feasible")
    assert 0.0 <= result.gap < 0.1
    assert result.imbalance <= max(rank_loads(problem.loads, greedy_lpt(problem))) / (1 / 64) + 1e-12
    assert result.imbalance < result.round_robin_imbalance


def test_identical_inputs_give_identical_placements():
    problem = ExpertProblem(zipf_loads(32, 1.2, seed=3), 8, 5, replicate=True)
    assert without_time(place_experts(problem, time_limit_s=0.2)) == without_time(
        place_experts(problem, time_limit_s=0.2)
    )


def test_replication_fills_spare_slots_with_copies_of_hot_experts_on_distinct_ranks():
    loads = (10.0, 1.0, 1.0, 1.0)
    result = place_experts(ExpertProblem(loads, ranks=2, slots_per_rank=3, replicate=True))
    assert all(len(on_rank) == len(set(on_rank)) <= 3 for on_rank in result.placement)
    # the spare slots go to the largest per-copy load: expert 0 (10 -> 5 each), then expert 1 (ids break ties)
    assert sorted(e for on_rank in result.placement for e in on_rank) == [0, 0, 1, 1, 2, 3]
    assert result.rank_loads == pytest.approx((6.5, 6.5))
    assert result.imbalance == pytest.approx(1.0)


def test_coactivated_experts_are_placed_together_when_traffic_counts():
    loads = (1.0, 1.0, 1.0, 1.0)
    together = ((0, 0, 0, 5), (0, 0, 0, 0), (0, 0, 0, 0), (5, 0, 0, 0))
    result = place_experts(ExpertProblem(loads, 2, 2, coactivation=together, traffic_weight=1.0))
    assert (0, 3) in result.placement
    assert result.imbalance == pytest.approx(1.0)


def test_round_robin_baseline_is_reported():
    loads = (4.0, 3.0, 2.0, 1.0)
    result = place_experts(ExpertProblem(loads, 2, 2))
    assert result.round_robin_imbalance == pytest.approx(6.0 / 5.0)  # ranks {0, 2} and {1, 3}
    assert result.imbalance == pytest.approx(1.0)
    assert result.placement == ((0, 3), (1, 2))


@pytest.mark.parametrize(
    ("problem", "field"),
    [
        (ExpertProblem((), 2, 1), "loads"),
        (ExpertProblem((1.0, -1.0), 2, 1), "loads[1]"),
        (ExpertProblem((1.0, float("nan")), 2, 1), "loads[1]"),
        (ExpertProblem((0.0, 0.0), 2, 1), "loads"),
        (ExpertProblem((1.0, 1.0, 1.0), 2, 1), "slots_per_rank"),
        (ExpertProblem((1.0, 1.0), 0, 1), "ranks"),
        (ExpertProblem((1.0, 1.0), 2, 1, coactivation=((0, 1), (2, 0)), traffic_weight=1.0), "coactivation[0][1]"),
        (ExpertProblem((1.0, 1.0), 2, 1, coactivation=((0, 1),)), "coactivation"),
        (ExpertProblem((1.0, 1.0), 2, 1, traffic_weight=1.0), "traffic_weight"),
    ],
)
def test_bad_placement_input_raises_an_error_naming_the_field(problem, field):
    with pytest.raises(SolverInputError) as error:
        place_experts(problem)
    assert str(error.value).startswith(field + ":"), str(error.value)


# --- loads ----------------------------------------------------------------------------------------------------


def test_zipf_loads_sum_to_one_and_are_a_seeded_shuffle_of_the_zipf_weights():
    loads = zipf_loads(8, s=1.0, seed=1)
    assert sum(loads) == pytest.approx(1.0)
    harmonic = sum(1 / k for k in range(1, 9))
    assert sorted(loads, reverse=True) == pytest.approx([1 / k / harmonic for k in range(1, 9)])
    assert zipf_loads(8, s=1.0, seed=1) == loads
    assert zipf_loads(8, s=1.0, seed=2) != loads
    assert zipf_loads(4, s=0.0) == pytest.approx((0.25,) * 4)


def test_counts_csv_gives_loads_in_expert_order(tmp_path):
    path = tmp_path / "counts.csv"
    path.write_text("expert,count\n2,30\n0,10\n1,20.5\n\n")
    assert load_expert_counts_csv(path) == (10.0, 20.5, 30.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,count\n0,1\n", ":1: the header must be 'expert,count'"),
        ("expert,count\n0,1\n1,lots\n", ":3: count 'lots' is not a number"),
        ("expert,count\n0,1\n1,-2\n", ":3: count '-2' must be a finite number >= 0"),
        ("expert,count\n0,1\nx,2\n", ":3: expert 'x' is not an integer id"),
        ("expert,count\n0,1\n0,2\n", ":3: expert id 0 is negative or repeated"),
        ("expert,count\n0,1,7\n", ":2: expected 2 columns"),
        ("expert,count\n0,1\n2,2\n", ": expert ids must be 0..1; missing [1]"),
        ("expert,count\n", ": no expert rows"),
    ],
)
def test_counts_csv_errors_name_the_line(tmp_path, text, message):
    path = tmp_path / "counts.csv"
    path.write_text(text)
    with pytest.raises(SolverInputError) as error:
        load_expert_counts_csv(path)
    assert str(error.value).startswith(str(path)) and message in str(error.value)


def test_missing_counts_file_is_an_input_error(tmp_path):
    with pytest.raises(SolverInputError, match="cannot read expert counts"):
        load_expert_counts_csv(tmp_path / "absent.csv")


def test_the_wall_clock_safety_stop_is_flagged(monkeypatch):
    import solvers.experts as experts

    problem = ExpertProblem(zipf_loads(64, 1.0, seed=0), 8, 9, replicate=True)
    assert not place_experts(problem, time_limit_s=0.2).safety_stop  # the deterministic limit stops it
    monkeypatch.setattr(experts, "SAFETY_FLOOR_S", 0.0)
    monkeypatch.setattr(experts, "WALL_FACTOR", 1e-3)
    stopped = place_experts(problem, time_limit_s=0.2)
    assert stopped.safety_stop and stopped.status in ("feasible", "time_limit")


def test_a_time_limit_that_is_not_finite_is_rejected():
    for bad in (math.inf, math.nan):
        with pytest.raises(SolverInputError, match="time_limit_s"):
            place_experts(ExpertProblem((1.0, 2.0), 2, 1), time_limit_s=bad)
