"""Validation: a parsed YAML mapping -> the dataclasses of hwdb.schema, or an HwdbError naming file and field.

Every failure reads ``hwdb/gpus/h100_sxm.yaml: field 'mem_bw_gbps': must be a positive number, got -1``.
Every number needs an entry in the file's ``sources:`` map. Nothing here reads files (see hwdb.loader).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import math
import re
from typing import Any, Iterable, Mapping

from .errors import HwdbError
from .safe_load import shown_value
from .schema import DTYPES, Efficiency, EngineProfile, FrozenDict, GpuSpec, HardwareDefault, normalize_dtype

NAME_RE = r"[a-z0-9][a-z0-9_]*"

_GPU_NUMBER_FIELDS = ("memory_gb", "mem_bw_gbps", "peak_tflops", "scaleup_bw_gbps", "scaleup_domain_gpus",
                      "scaleout_bw_gbps", "cost_usd_per_h", "tdp_w", "idle_w")
_GPU_FIELDS = ("name", "display_name", "vendor", "generation", "aliases", *_GPU_NUMBER_FIELDS, "cost_date",
               "efficiency", "sources", "notes")
_EFF_FRACTIONS = ("attention", "memory", "scaleup", "scaleout")
_EFF_LATENCIES = ("scaleup_latency_us", "scaleout_latency_us", "kernel_launch_us", "attention_latency_us",
                  "grouped_gemm_half_tokens")
_EFF_FIELDS = ("gemm", *_EFF_FRACTIONS, *_EFF_LATENCIES, "fitted_on")
_ENGINE_FIELDS = ("step_overhead_ms", "per_seq_overhead_us", "max_num_seqs", "default_chunk_tokens",
                  "gpu_memory_utilization", "memory_fraction_of_free", "kernel_latency_exposed", "fitted_on",
                  "hardware_defaults", "sources", "notes")
_RULE_FIELDS = ("max_num_seqs", "default_chunk_tokens", "gpu_memory_utilization",
                "min_memory_gib", "max_memory_gib", "exclude_name_contains")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Checker:
    """Typed reads of one mapping's fields; each failure names the file and the (dotted) field."""

    def __init__(self, shown: str, data: Mapping[str, Any], prefix: str = ""):
        self.shown = shown
        self.data = data
        self.prefix = prefix

    def fail(self, key: str | None, message: str) -> HwdbError:
        name = f"{self.prefix}{key}" if key is not None else (self.prefix.rstrip(".") or None)
        return HwdbError(self.shown, name, message)

    def get(self, key: str) -> Any:
        if key not in self.data or self.data[key] is None:
            raise self.fail(key, "missing (required)")
        return self.data[key]

    def string(self, key: str, pattern: str | None = None, hint: str = "") -> str:
        value = self.get(key)
        if isinstance(value, (_dt.date, _dt.datetime)):  # unquoted YAML date
            value = value.isoformat()
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "must be a non-empty string")
        if pattern and not re.fullmatch(pattern, value):
            raise self.fail(key, f"must match {hint or pattern}, got {shown_value(value)}")
        return value

    def number(self, key: str, *, allow_zero: bool = False) -> float:
        value = self.get(key)
        if not _is_number(value):
            raise self.fail(key, f"must be a number, got {shown_value(value)}")
        value = float(value)
        if allow_zero and value < 0:
            raise self.fail(key, f"must be a non-negative number, got {value:g}")
        if not allow_zero and value <= 0:
            raise self.fail(key, f"must be a positive number, got {value:g}")
        return value

    def fraction(self, key: str) -> float:
        value = self.get(key)
        if not _is_number(value):
            raise self.fail(key, f"must be a number in (0, 1], got {shown_value(value)}")
        if not 0 < value <= 1:
            raise self.fail(key, f"must be in (0, 1], got {value:g}")
        return float(value)

    def integer(self, key: str, minimum: int = 1) -> int:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, got {shown_value(value)}")
        if value < minimum:
            raise self.fail(key, f"must be an integer >= {minimum}, got {value}")
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.get(key)
        if not isinstance(value, dict):
            raise self.fail(key, "must be a mapping")
        return value

    def unknown_keys(self, allowed: Iterable[str]) -> None:
        known = set(allowed)
        for key in self.data:
            if key not in known:
                close = difflib.get_close_matches(str(key), sorted(known), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise self.fail(str(key), f"unknown field{hint}")

    def notes(self) -> tuple[str, ...]:
        value = self.data.get("notes")
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise self.fail("notes", "must be a string or a list of strings")

    def sources(self, required: Iterable[str]) -> FrozenDict[str, str]:
        raw = self.mapping("sources")
        out: dict[str, str] = {}
        for key, value in raw.items():
            if not isinstance(value, str) or not value.strip():
                raise self.fail(f"sources.{key}", "must be a non-empty string (URL or paper + what it says)")
            out[str(key)] = value
        for key in required:
            if key not in out:
                raise self.fail(key, "has no entry in 'sources' (every number must cite its source)")
        return FrozenDict(out)


def parse_efficiency(shown: str, raw: Any, peak: Mapping[str, float]) -> Efficiency:
    """The ``efficiency:`` block of a GPU whose ``peak_tflops`` are ``peak``."""
    if not isinstance(raw, dict):
        raise HwdbError(shown, "efficiency", "must be a mapping")
    c = Checker(shown, raw, prefix="efficiency.")
    c.unknown_keys(_EFF_FIELDS)
    gemm_raw = c.mapping("gemm")
    gemm: dict[str, float] = {}
    g = Checker(shown, gemm_raw, prefix="efficiency.gemm.")
    for key in gemm_raw:
        dtype = str(key)
        if dtype not in DTYPES:
            raise g.fail(dtype, f"unknown dtype (known: {', '.join(DTYPES)})")
        if dtype not in peak:
            raise g.fail(dtype, "dtype not present in peak_tflops")
        gemm[dtype] = g.fraction(dtype)
    if "bf16" not in gemm:
        raise g.fail("bf16", "missing (required: the fallback of every other dtype)")
    return Efficiency(
        gemm=FrozenDict(gemm),
        grouped_gemm_half_tokens=c.number("grouped_gemm_half_tokens", allow_zero=True),
        attention=c.fraction("attention"),
        memory=c.fraction("memory"),
        scaleup=c.fraction("scaleup"),
        scaleout=c.fraction("scaleout"),
        scaleup_latency_us=c.number("scaleup_latency_us", allow_zero=True),
        scaleout_latency_us=c.number("scaleout_latency_us", allow_zero=True),
        kernel_launch_us=c.number("kernel_launch_us", allow_zero=True),
        attention_latency_us=c.number("attention_latency_us", allow_zero=True),
        fitted_on=c.string("fitted_on"),
    )


def _aliases(c: Checker, name: str) -> tuple[str, ...]:
    raw = c.data.get("aliases") or []
    if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
        raise c.fail("aliases", "must be a list of strings")
    aliases: list[str] = []
    for alias in raw:
        a = alias.strip().lower()
        if not re.fullmatch(r"[a-z0-9][a-z0-9_\-.]*", a):
            raise c.fail("aliases", f"invalid alias {shown_value(alias)}")
        if a != name and a not in aliases:
            aliases.append(a)
    return tuple(aliases)


def _peak_tflops(c: Checker) -> dict[str, float]:
    peak_raw = c.mapping("peak_tflops")
    if not peak_raw:
        raise c.fail("peak_tflops", "must list at least bf16")
    p = Checker(c.shown, peak_raw, prefix="peak_tflops.")
    peak: dict[str, float] = {}
    for key in peak_raw:
        dtype = str(key)
        if dtype not in DTYPES:
            raise p.fail(dtype, f"unknown dtype (known: {', '.join(DTYPES)})")
        peak[dtype] = p.number(dtype)
    if "bf16" not in peak:
        raise p.fail("bf16", "missing (required: the fallback of every other dtype)")
    return peak


def parse_gpu(data: Mapping[str, Any], shown: str, stem: str, path: str) -> GpuSpec:
    """One GPU file's mapping; ``name`` must equal the file ``stem``."""
    c = Checker(shown, data)
    c.unknown_keys(_GPU_FIELDS)
    name = c.string("name", NAME_RE, "lower-case letters, digits and '_'")
    if name != stem:
        raise c.fail("name", f"must equal the file stem {stem!r}, got {shown_value(name)}")
    aliases = _aliases(c, name)
    peak = _peak_tflops(c)
    memory_gb = c.number("memory_gb")
    tdp_w = c.number("tdp_w")
    idle_w = c.number("idle_w")
    if idle_w > tdp_w:
        raise c.fail("idle_w", f"must not exceed tdp_w ({tdp_w:g}), got {idle_w:g}")
    return GpuSpec(
        name=name,
        display_name=c.string("display_name"),
        vendor=c.string("vendor", NAME_RE, "a lower-case identifier"),
        generation=c.string("generation", NAME_RE, "a lower-case identifier"),
        aliases=aliases,
        memory_gb=memory_gb,
        mem_bw_gbps=c.number("mem_bw_gbps"),
        peak_tflops=FrozenDict(peak),
        scaleup_bw_gbps=c.number("scaleup_bw_gbps"),
        scaleup_domain_gpus=c.integer("scaleup_domain_gpus"),
        scaleout_bw_gbps=c.number("scaleout_bw_gbps", allow_zero=True),
        cost_usd_per_h=c.number("cost_usd_per_h", allow_zero=True),
        cost_date=c.string("cost_date", r"\d{4}-\d{2}(-\d{2})?", "YYYY-MM or YYYY-MM-DD"),
        tdp_w=tdp_w,
        idle_w=idle_w,
        efficiency=parse_efficiency(shown, c.get("efficiency"), peak),
        sources=c.sources(_GPU_NUMBER_FIELDS),
        path=path,
        notes=c.notes(),
    )


def with_efficiency(gpu: GpuSpec, **changes: Any) -> GpuSpec:
    """A copy of ``gpu`` with some efficiencies replaced (for calibration).

    ``gemm`` is merged per dtype (``with_efficiency(g, gemm={"fp8": 0.55})`` keeps bf16), every
    other key of :class:`Efficiency` is replaced. Values are validated like a YAML file's.
    """
    unknown = set(changes) - set(_EFF_FIELDS)
    if unknown:
        raise HwdbError(gpu.name, f"efficiency.{sorted(unknown)[0]}", "unknown field")
    old = gpu.efficiency
    raw: dict[str, Any] = {f.name: getattr(old, f.name) for f in dataclasses.fields(Efficiency)}
    raw["gemm"] = dict(old.gemm)
    for key, value in changes.items():
        if key == "gemm":
            if not isinstance(value, Mapping):
                raise HwdbError(gpu.name, "efficiency.gemm", "must be a mapping")
            raw["gemm"].update({normalize_dtype(k): v for k, v in value.items()})
        else:
            raw[key] = value
    eff = parse_efficiency(f"{gpu.name} (with_efficiency)", raw, gpu.peak_tflops)
    return dataclasses.replace(gpu, efficiency=eff)


def _parse_rule(shown: str, raw: Any, where: str) -> HardwareDefault:
    if not isinstance(raw, dict):
        raise HwdbError(shown, where, "must be a mapping")
    c = Checker(shown, raw, prefix=where + ".")
    c.unknown_keys(_RULE_FIELDS)
    excl = raw.get("exclude_name_contains") or []
    if not isinstance(excl, list) or not all(isinstance(e, str) for e in excl):
        raise c.fail("exclude_name_contains", "must be a list of strings")
    return HardwareDefault(
        max_num_seqs=c.integer("max_num_seqs") if "max_num_seqs" in raw else None,
        default_chunk_tokens=(c.integer("default_chunk_tokens")
                              if "default_chunk_tokens" in raw else None),
        gpu_memory_utilization=(c.fraction("gpu_memory_utilization")
                                if "gpu_memory_utilization" in raw else None),
        min_memory_gib=c.number("min_memory_gib", allow_zero=True) if "min_memory_gib" in raw else 0.0,
        max_memory_gib=c.number("max_memory_gib") if "max_memory_gib" in raw else math.inf,
        exclude_name_contains=tuple(excl),
    )


def _parse_engine(shown: str, ename: str, raw: Any, path: str) -> EngineProfile:
    if not re.fullmatch(NAME_RE, ename):
        raise HwdbError(shown, f"engines.{ename}", "engine names are lower-case identifiers")
    if not isinstance(raw, dict):
        raise HwdbError(shown, f"engines.{ename}", "must be a mapping")
    c = Checker(shown, raw, prefix=f"engines.{ename}.")
    c.unknown_keys(_ENGINE_FIELDS)
    rules_raw = raw.get("hardware_defaults") or []
    if not isinstance(rules_raw, list):
        raise c.fail("hardware_defaults", "must be a list of rules")
    rules = tuple(_parse_rule(shown, r, f"engines.{ename}.hardware_defaults[{i}]")
                  for i, r in enumerate(rules_raw))
    return EngineProfile(
        name=ename,
        step_overhead_ms=c.number("step_overhead_ms", allow_zero=True),
        per_seq_overhead_us=c.number("per_seq_overhead_us", allow_zero=True),
        max_num_seqs=c.integer("max_num_seqs"),
        default_chunk_tokens=c.integer("default_chunk_tokens"),
        fitted_on=c.string("fitted_on"),
        gpu_memory_utilization=(c.fraction("gpu_memory_utilization")
                                if "gpu_memory_utilization" in raw else 0.9),
        memory_fraction_of_free=bool(raw.get("memory_fraction_of_free", False)),
        kernel_latency_exposed=(c.fraction("kernel_latency_exposed")
                                if "kernel_latency_exposed" in raw else 1.0),
        hardware_defaults=rules,
        sources=c.sources(("max_num_seqs", "default_chunk_tokens")),
        path=path,
    )


def parse_engines(top: Mapping[str, Any], shown: str, path: str) -> FrozenDict[str, EngineProfile]:
    """``engines.yaml``'s mapping -> engine name -> profile."""
    Checker(shown, top).unknown_keys(("engines", "notes"))
    engines = Checker(shown, top).mapping("engines")
    if not engines:
        raise HwdbError(shown, "engines", "must list at least one engine")
    return FrozenDict({str(ename): _parse_engine(shown, str(ename), raw, path) for ename, raw in engines.items()})
