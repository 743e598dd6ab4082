"""Request classes (ISL / OSL / rate) with their SLOs, parsed from flags or a workload / scenario YAML."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from statistics import NormalDist

from hwdb.units import MissingUnitError, UnitError, parse_duration_s
from planner.core.bounds import MAX_ARRIVAL_CV, MAX_DURATION_S, MAX_RATE_RPS, MAX_TOKENS, number_text
from planner.core.errors import PlannerInputError
from planner.core.inputs import read_csv, shown_value

MAX_TRACE_ROWS = 1_000_000  # requests in a replayed trace (`planner simulate` does ~100k in 1-4 s)


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
    arrival: "Arrival | None" = None  # None = Poisson (issue 8, bursty arrivals: gamma(cv=…) or a trace)

    @property
    def arrival_ca2(self) -> float:
        """Squared coefficient of variation of the inter-arrival times (1 for Poisson)."""
        return 1.0 if self.arrival is None else self.arrival.cv ** 2


@dataclass(frozen=True)
class Arrival:
    """How a class's requests arrive: a renewal process with gamma inter-arrival times of coefficient of
    variation `cv` (cv = 1 is Poisson, > 1 bursty as in BurstGPT, < 1 smoother), or a replayed trace
    (`trace` = the CSV path; `cv` estimated from its inter-arrival times, `times` its arrival instants)."""
    kind: str  # poisson | gamma | trace
    cv: float = 1.0
    trace: str = ""
    times: tuple = ()

    def to_json(self) -> dict:
        d = {"kind": self.kind, "cv": self.cv}
        if self.kind == "trace":
            d["trace"] = self.trace
            d["trace_rate_rps"] = trace_rate(self.times)
        return d


def trace_rate(times) -> float:
    """Mean arrival rate of a trace: (n − 1) / span."""
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    return (len(times) - 1) / span if span > 0 else 0.0


def load_arrival_times(path, field: str) -> tuple:
    """Arrival instants from a CSV with a header naming an `arrival_s` (or `timestamp`) column (other columns,
    e.g. the isl/osl of `planner simulate --trace` or BurstGPT's token counts, are ignored), sorted."""
    from pathlib import Path

    if not Path(path).is_file():
        raise PlannerInputError(f"{field}: trace file {shown_value(str(path))} not found")
    times, col = [], None
    for lineno, line in read_csv(path, MAX_TRACE_ROWS):
        if line[0].lstrip().startswith("#"):
            continue
        if col is None:
            header = [c.strip().lower() for c in line]
            col = next((header.index(k) for k in ("arrival_s", "timestamp") if k in header), None)
            if col is None:
                raise PlannerInputError(f"{field}: trace '{path}' has no arrival_s (or timestamp) column")
            continue
        try:
            t = float(line[col])
        except (ValueError, IndexError):
            t = math.nan
        if not math.isfinite(t) or t < 0:
            raise PlannerInputError(f"{field}: trace '{path}' line {lineno}: field 'arrival_s' must be "
                                    f"non-negative seconds")
        times.append(t)
    if len(times) < 3:
        raise PlannerInputError(f"{field}: trace '{path}' needs at least 3 arrivals to estimate the burstiness")
    times.sort()
    if times[-1] <= times[0]:
        raise PlannerInputError(f"{field}: trace '{path}': all arrivals at the same instant")
    return tuple(times)


def interarrival_cv(times) -> float:
    """Coefficient of variation (std / mean) of a trace's inter-arrival times."""
    gaps = [b - a for a, b in zip(times, times[1:])]
    mean = sum(gaps) / len(gaps)
    var = sum((g - mean) ** 2 for g in gaps) / len(gaps)
    return math.sqrt(var) / mean


def parse_arrival(value, field: str) -> Arrival | None:
    """`poisson` | `gamma(cv=2)` (or `gamma(2)`) | a CSV path (`trace.csv`, or `trace(path.csv)`)."""
    if isinstance(value, dict):  # {gamma: {cv: 2}} / {kind: gamma, cv: 2} / {trace: path}
        kind = str(value.get("kind", next(iter(value), ""))).lower()
        inner = value.get(kind, value) if kind in value else value
        if kind == "trace" and not isinstance(inner, (str, dict)):
            raise PlannerInputError(f"{field}.arrival: a trace is a CSV path, got {shown_value(inner)}")
        if kind == "trace":
            return parse_arrival(f"trace({inner if isinstance(inner, str) else inner.get('trace', '')})", field)
        cv = inner.get("cv") if isinstance(inner, dict) else inner
        return parse_arrival(f"{kind}(cv={cv})" if kind == "gamma" else kind, field)
    text = str(value).strip()
    low = text.lower()
    if low in ("poisson", "poisson()", "exponential"):
        return None
    m = re.fullmatch(r"gamma\(\s*(?:cv\s*=\s*)?([^)\s]+)\s*\)", low)
    if m:
        cv = _number(m.group(1), f"{field}.arrival: gamma cv", hi=MAX_ARRIVAL_CV)
        return None if cv == 1 else Arrival("gamma", cv)
    m = re.fullmatch(r"trace\((.+)\)", text)
    if m or low.endswith(".csv"):
        path = (m.group(1) if m else text).strip()
        times = load_arrival_times(path, f"{field}.arrival")
        return Arrival("trace", interarrival_cv(times), path, times)
    raise PlannerInputError(f"{field}.arrival: expected poisson, gamma(cv=2) or a trace .csv, got {shown_value(value)}")


def parse_duration_ms(text, field: str) -> float:
    """'2s', '50ms' -> milliseconds. A bare number is refused: is `ttft=2` 2 s or 2 ms?"""
    try:
        seconds = parse_duration_s(text)
    except MissingUnitError:
        where, _, key = field.rpartition(".")
        raise PlannerInputError(f"{where}: {key}={text} needs a unit (ms or s)") from None
    except UnitError:
        raise PlannerInputError(f"{field}: expected a duration like 2s or 50ms, got {shown_value(text)}") from None
    if seconds <= 0:
        raise PlannerInputError(f"{field}: must be positive, got {shown_value(text)}")
    ms = seconds * 1e3
    if not ms <= MAX_DURATION_S * 1e3:
        raise PlannerInputError(f"{field}: must be at most one day ({MAX_DURATION_S:,} s), got {shown_value(text)}")
    return ms


def parse_kv(text: str, field: str) -> dict[str, str]:
    """'a=1,b=2' -> {'a': '1', 'b': '2'}."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise PlannerInputError(f"{field}: expected key=value pairs separated by commas, got '{part}'")
        k, v = part.split("=", 1)
        out[k.strip().lower()] = v.strip()
    if not out:
        raise PlannerInputError(f"{field}: empty, expected key=value pairs separated by commas")
    return out


def _number(value, field: str, *, integer: bool = False, allow_zero: bool = False, hi: float = math.inf,
            unit: str = "") -> float:
    try:
        x = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        raise PlannerInputError(f"{field}: expected a number, got {shown_value(value)}") from None
    if not math.isfinite(x):
        raise PlannerInputError(f"{field}: must be a finite number, got {shown_value(value)}")
    if x < 0 or (x == 0 and not allow_zero):
        raise PlannerInputError(f"{field}: must be {'non-negative' if allow_zero else 'positive'}, got {shown_value(value)}")
    if integer and x != int(x):
        raise PlannerInputError(f"{field}: must be a whole number, got {shown_value(value)}")
    if x > hi:
        raise PlannerInputError(f"{field}: must be at most {number_text(hi)}{unit}, got {shown_value(value)}")
    return int(x) if integer else x


def slo_from(values: dict, field: str, default: Slo | None = None) -> Slo:
    unknown = set(map(str, values)) - {"ttft", "tpot", "p", "percentile"}
    if unknown:
        raise PlannerInputError(f"{field}: unknown key {shown_value(sorted(unknown)[0])} (use ttft, tpot, p)")
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
    unknown = set(map(str, values)) - {"name", "isl", "osl", "rate", "slo", "arrival"}
    if unknown:
        raise PlannerInputError(f"{field}: unknown key {shown_value(sorted(unknown)[0])} (use name, isl, osl, rate, "
                                "slo, arrival)")
    if not isinstance(values.get("name", name), (str, int)) or isinstance(values.get("name"), bool):
        raise PlannerInputError(f"{field}.name: must be a name, got {shown_value(values['name'])}")
    if "slo" in values and not isinstance(values["slo"], dict):
        raise PlannerInputError(f"{field}.slo: must be a mapping (ttft, tpot, p)")
    for k in ("isl", "osl"):
        if k not in values:
            raise PlannerInputError(f"{field}: missing '{k}'")
    cls_slo = slo_from(values["slo"], f"{field}.slo", slo) if isinstance(values.get("slo"), dict) else slo
    arrival = parse_arrival(values["arrival"], field) if "arrival" in values else None
    rate = _number(values.get("rate", 0), f"{field}.rate", allow_zero=True, hi=MAX_RATE_RPS, unit=" req/s")
    if arrival is not None and arrival.kind == "trace" and not rate:
        rate = trace_rate(arrival.times)  # a trace without a rate: its own mean rate is the demand
    isl, osl = (_number(values[k], f"{field}.{k}", integer=True, hi=MAX_TOKENS, unit=" tokens") for k in ("isl", "osl"))
    return RequestClass(str(values.get("name", name)), int(isl), int(osl), rate, cls_slo, arrival)


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
