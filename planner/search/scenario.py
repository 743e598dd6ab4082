"""A scenario: everything `planner optimize` needs, from a YAML file and/or flags (flags win).

scenario YAML keys: model, workload ({isl, osl, rate} or {classes: [...]}), slo ({ttft, tpot, p}),
gpus ({type: count}), budget_usd_per_h, objective, mode, engine, dtype, kv_dtype, top,
hwdb ([folder, ...] of extra GPU YAMLs, relative to the scenario file; --hwdb folders come after them).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from planner.core.bounds import MAX_BUDGET_USD_PER_H, MAX_GPUS_PER_TYPE, bounded, check_context
from planner.core.errors import PlannerInputError
from planner.core.inputs import shown_value
from planner.core.model import DTYPE_BYTES, _read_structured, load_model, model_from_dict
from planner.core.vocab import Engine, Mode, Objective, choice
from planner.core.workload import parse_kv, parse_workload_flag, slo_from, workload_from_yaml
from planner.instance import Levers
from planner.search.optimize import Request

SCENARIO_KEYS = {"model", "workload", "slo", "gpus", "budget_usd_per_h", "objective", "mode", "engine", "dtype",
                 "kv_dtype", "top", "description", "hwdb"}


def parse_gpus(text: str) -> dict[str, int]:
    """'h100_sxm:16,a100_80g:32' -> {'h100_sxm': 16, 'a100_80g': 32}."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, count = (s.strip() for s in part.partition(":"))
        if not name or not re.fullmatch(r"[0-9]+", count) or int(count) <= 0:
            raise PlannerInputError(f"--gpus: expected TYPE:COUNT with a positive count, got '{part}'")
        out[name] = bounded(out.get(name, 0) + int(count), f"--gpus: {name}", 1, MAX_GPUS_PER_TYPE, integer=True,
                            unit=" GPUs per type")
    if not out:
        raise PlannerInputError("--gpus: no GPU types given")
    return out


def parse_budget(text) -> float:
    """'120/h', '$120/h', '120' -> 120.0 $/h."""
    m = re.fullmatch(r"\s*\$?([0-9]*\.?[0-9]+)\s*(/h|/hr|/hour)?\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise PlannerInputError(f"--budget: expected dollars per hour like 120/h, got '{text}'")
    return bounded(m.group(1), "--budget", 0, MAX_BUDGET_USD_PER_H, unit=" $/h")


def _gpus_from_yaml(data, origin) -> dict[str, int]:
    if not isinstance(data, dict) or not data:
        raise PlannerInputError(f"{origin}: field 'gpus' must map GPU type -> count")
    for k, v in data.items():
        if not isinstance(k, str):
            raise PlannerInputError(f"{origin}: field 'gpus': GPU type {shown_value(k)} must be a name")
        if not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= MAX_GPUS_PER_TYPE:
            raise PlannerInputError(f"{origin}: field 'gpus.{shown_value(k)[1:-1]}' must be a positive integer "
                                    f"(at most {MAX_GPUS_PER_TYPE:,}), got {shown_value(v)}")
    return dict(data)


def _check_scenario(data: dict, origin: str) -> None:
    """Types of the scenario's scalar fields (nested model / workload / slo / gpus are checked where read)."""
    unknown = sorted(map(str, set(data) - SCENARIO_KEYS))
    if unknown:
        raise PlannerInputError(f"{origin}: unknown field {shown_value(unknown[0])}")
    for k in ("objective", "mode", "engine", "dtype", "kv_dtype", "description"):
        if k in data and not isinstance(data[k], str):
            raise PlannerInputError(f"{origin}: field '{k}' must be a string, got {shown_value(data[k])}")
    if "top" in data and (not isinstance(data["top"], int) or isinstance(data["top"], bool)
                          or not 1 <= data["top"] <= 50):
        raise PlannerInputError(f"{origin}: field 'top' must be an integer in 1..50, got {shown_value(data['top'])}")
    if "slo" in data and not isinstance(data["slo"], dict):
        raise PlannerInputError(f"{origin}: field 'slo' must be a mapping (ttft, tpot, p)")
    if not isinstance(data["model"], (str, dict)):
        raise PlannerInputError(f"{origin}: field 'model' must be a model name, a path or a mapping of fields")


def build_request(model_arg: str, *, slo: str | None = None, workload: str | None = None, gpus: str | None = None,
                  budget: str | None = None, objective: str | None = None, mode: str | None = None,
                  engine: str | None = None, dtype: str | None = None, kv_dtype: str | None = None,
                  top: int | None = None, power_cap: str | None = None, spec: str | None = None,
                  kv_compression: float | None = None, link: str | None = None, calibration: Path | None = None,
                  expert_stats: Path | None = None, **extra) -> Request:
    """Merge a scenario/model file (or bundled model name) with flags into an optimize Request; the lever flags
    (--power-cap, --spec, --kv-compression, --link, --calibration, --expert-stats) are parsed here too."""
    lever_fields = _levers(power_cap, spec, kv_compression, link, calibration)
    hwdb_dirs = tuple(str(d) for d in extra.pop("extra_hwdb", ()))  # --hwdb folders
    if expert_stats:
        from solvers import load_expert_counts_csv

        extra["expert_loads"] = tuple(load_expert_counts_csv(expert_stats))
    scen: dict = {}
    origin = model_arg
    path = Path(model_arg)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        data = _read_structured(path)
        if isinstance(data, dict) and "model" in data:
            _check_scenario(data, str(path))
            scen = data
    if "hwdb" in scen:  # extra GPU folders named by the scenario, relative to it; --hwdb ones override them
        dirs = scen["hwdb"] if isinstance(scen["hwdb"], list) else [scen["hwdb"]]
        if not all(isinstance(d, str) and d for d in dirs):
            raise PlannerInputError(f"{origin}: field 'hwdb' must be a folder or a list of folders")
        hwdb_dirs = tuple(str(path.parent / d) for d in dirs) + hwdb_dirs
    if scen:
        m = scen["model"]
        model = load_model(m, inside_scenario=True) if isinstance(m, str) else model_from_dict(m, f"{origin}: model")
    else:
        model = load_model(model_arg)

    base_slo = slo_from(scen["slo"], f"{origin}: slo") if isinstance(scen.get("slo"), dict) else None
    flag_slo = parse_kv(slo, "--slo") if slo is not None else {}
    the_slo = slo_from(flag_slo, "--slo", base_slo)
    if workload and Path(workload).suffix in (".yaml", ".yml"):
        classes_from = f"{workload}: workload"
        wdata = _read_structured(Path(workload))
        classes = workload_from_yaml(wdata.get("workload", wdata) if isinstance(wdata, dict) else wdata, workload,
                                     the_slo)
    elif workload is not None:
        classes, classes_from = parse_workload_flag(workload, the_slo), "--workload"
    elif "workload" in scen:
        classes, classes_from = workload_from_yaml(scen["workload"], origin, the_slo), f"{origin}: workload"
    else:
        raise PlannerInputError("--workload: missing (e.g. --workload isl=2048,osl=256,rate=20)")
    if flag_slo:  # keys named on the command line override every class's own SLO
        classes = [replace(c, slo=slo_from(flag_slo, "--slo", c.slo)) for c in classes]

    for c in classes:
        check_context(model, c.isl, c.osl, classes_from if len(classes) == 1 else f"{classes_from} class '{c.name}'")
    inventory = parse_gpus(gpus) if gpus is not None else (_gpus_from_yaml(scen["gpus"], origin) if "gpus" in scen
                                                           else None)
    budget_v = parse_budget(budget) if budget is not None else (parse_budget(scen["budget_usd_per_h"])
                                                                if "budget_usd_per_h" in scen else None)
    dtypes = {}
    for key, flag_value in (("dtype", dtype), ("kv_dtype", kv_dtype)):
        value = flag_value if flag_value is not None else scen.get(key, "bf16")
        if not isinstance(value, str) or value not in DTYPE_BYTES:
            where = f"--{key.replace('_', '-')}" if flag_value is not None else f"{origin}: field '{key}'"
            raise PlannerInputError(f"{where}: unknown dtype '{value}' (choose from {', '.join(DTYPE_BYTES)})")
        dtypes[key] = value

    def pick(enum, flag_value, key, default):  # a flag given, even empty, wins over the scenario
        if flag_value is not None:
            return choice(enum, flag_value, f"--{key}")
        return choice(enum, scen.get(key, default), f"{origin}: field '{key}'")

    return Request(model=model, classes=tuple(classes), inventory=inventory, budget_usd_per_h=budget_v,
                   objective=pick(Objective, objective, "objective", Objective.goodput),
                   mode=pick(Mode, mode, "mode", Mode.auto),
                   engine=engine if engine is not None else scen.get("engine", Engine.vllm),
                   top_k=top if top is not None else scen.get("top", 5), dtype=dtypes["dtype"],
                   kv_dtype=dtypes["kv_dtype"], levers=Levers(**lever_fields, hwdb_dirs=hwdb_dirs), **extra)


def _levers(power_cap: str | None, spec: str | None, kv_compression: float | None, link: str | None,
            calibration: Path | None) -> dict:
    """`Levers` fields of the lever flags that were given (parsed and checked; each error names its flag)."""
    out: dict = {}
    if power_cap is not None:
        from planner.levers.energy import parse_power_cap

        out["power_cap_w"] = parse_power_cap(power_cap)
    if spec is not None:
        from planner.levers.spec import parse_spec

        out["spec"] = parse_spec(spec)
    if kv_compression is not None:
        from planner.levers.kvtransfer import parse_compression

        out["kv_compression"] = parse_compression(kv_compression)
    if link is not None:
        from planner.levers.kvtransfer import parse_link

        out["link_gbps"] = parse_link(link)
    if calibration:
        from planner.search.calibrate import load_calibration

        out["calibration"] = load_calibration(calibration)
    return out
