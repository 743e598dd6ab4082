"""Request classes (ISL / OSL / rate) with their SLOs, parsed from flags or a workload / scenario YAML."""

from __future__ import annotations

import re
from dataclasses import dataclass
from statistics import NormalDist

from planner.errors import PlannerInputError


@dataclass(frozen=True)
class Slo:
    ttft_ms: float
    tpot_ms: float
    percentile: float = 90.0

    @property
    def z(self) -> float:
        return NormalDist().inv_cdf(self.percentile / 100.0)


@dataclass(frozen=True)
class RequestClass:
    name: str
    isl: int  # mean prompt tokens
    osl: int  # mean output tokens
    rate_rps: float  # demand; 0 = "as much as the fleet serves" (goodput objective on a fixed fleet)
    slo: Slo


_UNITS_S = {"ms": 1e-3, "s": 1.0, "us": 1e-6, "m": 60.0, "min": 60.0}


def parse_duration_ms(text, field: str) -> float:
    """'2s', '50ms', '1.5' (seconds) -> milliseconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), "s"
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*([a-z]*)\s*", str(text))
        if not m or m.group(2) not in ("", *_UNITS_S):
            raise PlannerInputError(f"{field}: expected a duration like 2s or 50ms, got '{text}'")
        value, unit = float(m.group(1)), m.group(2) or "s"
    if value <= 0:
        raise PlannerInputError(f"{field}: must be positive, got '{text}'")
    return value * _UNITS_S[unit] * 1e3


def parse_kv(text: str, field: str) -> dict[str, str]:
    """'a=1,b=2' -> {'a': '1', 'b': '2'}."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise PlannerInputError(f"{field}: expected key=value pairs separated by commas, got '{part}'")
        k, v = part.split("=", 1)
        out[k.strip().lower()] = v.strip()
    return out


def _number(value, field: str, *, integer: bool = False, allow_zero: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise PlannerInputError(f"{field}: expected a number, got '{value}'") from None
    if x != x or x < 0 or (x == 0 and not allow_zero):
        raise PlannerInputError(f"{field}: must be {'non-negative' if allow_zero else 'positive'}, got '{value}'")
    if integer and x != int(x):
        raise PlannerInputError(f"{field}: must be a whole number, got '{value}'")
    return int(x) if integer else x


def slo_from(values: dict, field: str, default: Slo | None = None) -> Slo:
    unknown = set(values) - {"ttft", "tpot", "p", "percentile"}
    if unknown:
        raise PlannerInputError(f"{field}: unknown key '{sorted(unknown)[0]}' (use ttft, tpot, p)")
    base = default or Slo(2000.0, 50.0, 90.0)
    ttft = parse_duration_ms(values["ttft"], f"{field}.ttft") if "ttft" in values else base.ttft_ms
    tpot = parse_duration_ms(values["tpot"], f"{field}.tpot") if "tpot" in values else base.tpot_ms
    p = values.get("p", values.get("percentile", base.percentile))
    p = _number(p, f"{field}.p")
    if not 50 <= p < 100:
        raise PlannerInputError(f"{field}.p: percentile must be in [50, 100), got {p:g}")
    return Slo(ttft, tpot, p)


def parse_slo(text: str) -> Slo:
    return slo_from(parse_kv(text, "--slo"), "--slo")


def class_from(values: dict, field: str, slo: Slo, name: str = "default") -> RequestClass:
    unknown = set(values) - {"name", "isl", "osl", "rate", "slo"}
    if unknown:
        raise PlannerInputError(f"{field}: unknown key '{sorted(unknown)[0]}' (use name, isl, osl, rate, slo)")
    for k in ("isl", "osl"):
        if k not in values:
            raise PlannerInputError(f"{field}: missing '{k}'")
    cls_slo = slo_from(values["slo"], f"{field}.slo", slo) if isinstance(values.get("slo"), dict) else slo
    return RequestClass(str(values.get("name", name)), _number(values["isl"], f"{field}.isl", integer=True),
                        _number(values["osl"], f"{field}.osl", integer=True),
                        _number(values.get("rate", 0), f"{field}.rate", allow_zero=True), cls_slo)


def parse_workload_flag(text: str, slo: Slo) -> list[RequestClass]:
    return [class_from(parse_kv(text, "--workload"), "--workload", slo)]


def workload_from_yaml(data, origin: str, slo: Slo) -> list[RequestClass]:
    """`workload:` as one class mapping or `{classes: [...]}`; each class may carry its own `slo:`."""
    if isinstance(data, dict) and "classes" in data:
        items = data["classes"]
        if not isinstance(items, list) or not items:
            raise PlannerInputError(f"{origin}: field 'workload.classes' must be a non-empty list")
        classes = [class_from(c if isinstance(c, dict) else {}, f"{origin}: workload.classes[{i}]", slo, f"class{i}")
                   for i, c in enumerate(items)]
    elif isinstance(data, dict):
        classes = [class_from(data, f"{origin}: workload", slo)]
    else:
        raise PlannerInputError(f"{origin}: field 'workload' must be a mapping")
    names = [c.name for c in classes]
    if len(set(names)) != len(names):
        raise PlannerInputError(f"{origin}: field 'workload.classes': class names must be unique")
    return classes
