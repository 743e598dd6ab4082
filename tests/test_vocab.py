"""The vocabulary (planner/core/vocab.py): roles, families, objectives, modes and engines are types whose members
read, format and serialise exactly as the strings they replaced, so JSON and goldens do not move."""

import json

import pytest

import hwdb
from planner.core.errors import PlannerInputError
from planner.core.vocab import FAMILY_LABEL, Engine, Family, Mode, Objective, Role, choice
from planner.render.jsonio import canonical_json


@pytest.mark.parametrize("member", [*Role, *Family, *Objective, *Mode, *Engine])
def test_a_member_is_its_string_in_str_format_and_json(member):
    assert member == member.value and str(member) == member.value and f"{member}" == member.value
    assert json.dumps(member) == f'"{member.value}"' and canonical_json({member: member}) == canonical_json(
        {member.value: member.value})


def test_the_vocabulary_is_the_strings_the_json_has_always_used():
    assert list(Role) == ["agg", "prefill", "decode", "multiplex"]
    assert list(Family) == ["agg", "disagg", "single_gpu_type", "multiplex"]
    assert list(Objective) == ["goodput", "cost", "energy"]
    assert list(Mode) == ["auto", "agg", "disagg", "multiplex"]


def test_engines_are_the_profiles_in_the_hardware_database():
    assert set(Engine) == set(hwdb.load_engines())


def test_every_family_has_a_table_label_and_a_plain_string_finds_it():
    assert set(FAMILY_LABEL) == set(Family) and FAMILY_LABEL["disagg"] == "P/D"


def test_choice_names_the_field_and_the_choices():
    assert choice(Mode, "disagg", "--mode") is Mode.disagg
    with pytest.raises(PlannerInputError, match=r"^--mode: expected auto, agg, disagg, multiplex, got 'semi'$"):
        choice(Mode, "semi", "--mode")


def test_a_scenario_objective_becomes_the_enum_and_a_bad_one_names_the_file_field(tmp_path):
    from planner.search.scenario import build_request

    req = build_request("llama-3.1-8b", workload="isl=512,osl=64", gpus="h100_sxm:1", objective="cost")
    assert req.objective is Objective.cost and req.mode is Mode.auto
    bad = tmp_path / "s.yaml"
    bad.write_text("model: llama-3.1-8b\nworkload: {isl: 512, osl: 64}\nobjective: speed\n")
    with pytest.raises(PlannerInputError, match=r"s\.yaml: field 'objective': expected goodput, cost, energy"):
        build_request(str(bad))
