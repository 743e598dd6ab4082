"""Load and validate the hardware database (one YAML per accelerator / system, plus engines.yaml).

Design notes
------------
* Only the standard library and PyYAML (imported lazily, C loader when available) so that
  ``import hwdb`` stays cheap for the CLI.
* Every parsed file is cached (``functools.lru_cache``) keyed on its path *and* its mtime/size,
  so an edited file is re-read while an unchanged one is parsed once per process.
* Every validation failure raises :class:`HwdbError` whose message names the file and the field:
  ``hwdb/gpus/h100_sxm.yaml: field 'mem_bw_gbps': must be a positive number``.
* Units follow DESIGN.md: ``_gbps`` is gigabytes per second, ``_tflops`` is 10^12 FLOP/s (dense,
  no structured sparsity), ``_w`` watts, ``_us`` microseconds, ``_ms`` milliseconds.

Field meanings shared by every GPU file
---------------------------------------
* ``memory_gb`` / ``mem_bw_gbps``: datasheet HBM (or GDDR) capacity in 10^9 bytes and peak
  bandwidth. ``memory_gib`` converts for engines that think in GiB.
* ``peak_tflops``: dense tensor-core peaks per dtype; a dtype the part lacks is *omitted* and
  :meth:`GpuSpec.peak_flops` falls back (fp8 -> bf16, fp4 -> fp8 -> bf16, int4 like fp4).
* ``scaleup_bw_gbps``: per GPU, one direction, over NVLink / Infinity Fabric / ICI / RoCE
  scale-up ports; PCIe-only cards give PCIe bandwidth per direction and the usual server size.
* ``scaleout_bw_gbps``: per GPU NIC bandwidth, one direction (400 Gb/s = 50 GB/s).
* ``cost_usd_per_h``: typical on-demand price per GPU-hour; ``cost_date`` when it was read.
* ``idle_w``: board power of a provisioned, model-resident GPU doing nothing (P0, 0 % util),
  not the deep-idle of an empty GPU, because that is what an idle serving replica draws.
* ``efficiency``: roofline efficiencies (fractions of the peaks above) plus collective and
  launch latencies; ``fitted_on`` says what they come from. Calibrate with
  :func:`with_efficiency`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import functools
import math
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from .safe_load import shown_value

__all__ = [
    "DTYPES",
    "Efficiency",
    "EngineProfile",
    "FrozenDict",
    "GpuSpec",
    "HardwareDefault",
    "HwdbError",
    "SystemSpec",
    "UnknownNameError",
    "bundled_dir",
    "list_gpus",
    "list_systems",
    "load_engine",
    "load_engines",
    "load_gpu",
    "load_gpu_file",
    "load_system",
    "normalize_dtype",
    "with_efficiency",
]

# --------------------------------------------------------------------------------------------
# errors


class HwdbError(ValueError):
    """A hardware-database file is missing, malformed or inconsistent.

    ``path`` is the file (as shown to the user) and ``field`` the offending key (dotted for nested
    keys, e.g. ``efficiency.gemm.fp8``), or ``None`` when the problem is the file as a whole.
    """

    def __init__(self, path: str, field: str | None, message: str):
        self.path = path
        self.field = field
        self.reason = message
        where = f"{path}: field '{field}'" if field else str(path)
        super().__init__(f"{where}: {message}")


class UnknownNameError(HwdbError):
    """A GPU / system / engine name that is not in the database (message suggests close names)."""

    def __init__(self, kind: str, name: str, suggestions: Iterable[str], known: Iterable[str]):
        self.kind = kind
        self.name = name
        self.suggestions = tuple(suggestions)
        self.known = tuple(sorted(known))
        if self.suggestions:
            msg = f"unknown {kind} {shown_value(name)}; did you mean: {', '.join(self.suggestions)}?"
        else:
            msg = f"unknown {kind} {shown_value(name)}; known: {', '.join(self.known) or '(none)'}"
        ValueError.__init__(self, msg)
        self.path = ""
        self.field = None
        self.reason = msg


# --------------------------------------------------------------------------------------------
# a read-only dict (still a dict: json.dumps / dict(...) / isinstance(x, dict) all work)


class FrozenDict(dict):
    """A ``dict`` that refuses mutation, so cached specs cannot be changed by a caller."""

    __slots__ = ()

    def _readonly(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("hwdb mappings are read-only; use hwdb.with_efficiency / dataclasses.replace")

    __setitem__ = __delitem__ = _readonly  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]

    def __ior__(self, other: Any) -> "FrozenDict":  # type: ignore[override]
        self._readonly()
        return self

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))

    def __reduce__(self):  # copy / deepcopy / pickle rebuild from a plain dict
        return (type(self), (dict(self),))

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"


# --------------------------------------------------------------------------------------------
# dtypes

#: dtype keys allowed in ``peak_tflops`` / ``efficiency.gemm``.
DTYPES: tuple[str, ...] = ("bf16", "fp16", "fp8", "int8", "fp6", "fp4", "int4")

_DTYPE_ALIASES = {
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "float8": "fp8",
    "fp8_e4m3": "fp8",
    "fp8_e5m2": "fp8",
    "e4m3": "fp8",
    "e5m2": "fp8",
    "float8_e4m3fn": "fp8",
    "nvfp4": "fp4",
    "mxfp4": "fp4",
    "float4": "fp4",
    "mxfp6": "fp6",
    "w8a8": "int8",
}

# When a part lacks native support for a dtype, the math runs in the next one of the chain
# (fp8 -> bf16 on Ampere, fp4 -> fp8 -> bf16 on Hopper, int4 like fp4).
_FALLBACK: dict[str, tuple[str, ...]] = {
    "bf16": ("bf16", "fp16"),
    "fp16": ("fp16", "bf16"),
    "fp8": ("fp8", "bf16"),
    "int8": ("int8", "fp8", "bf16"),
    "fp6": ("fp6", "fp8", "bf16"),
    "fp4": ("fp4", "fp8", "bf16"),
    "int4": ("int4", "fp4", "fp8", "bf16"),
}


def normalize_dtype(dtype: str) -> str:
    """Map spellings such as ``bfloat16`` / ``nvfp4`` to a key of :data:`DTYPES`."""
    key = str(dtype).strip().lower().replace("-", "_")
    key = _DTYPE_ALIASES.get(key, key)
    if key not in _FALLBACK:
        raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
    return key


def _resolve(dtype: str, available: Mapping[str, Any]) -> str:
    for candidate in _FALLBACK[normalize_dtype(dtype)]:
        if candidate in available:
            return candidate
    # bf16 is mandatory in both peak_tflops and efficiency.gemm, so this is unreachable for
    # validated specs; keep a clear error for hand-built objects.
    raise ValueError(f"no entry for {dtype!r} or its fallbacks in {sorted(available)}")


# --------------------------------------------------------------------------------------------
# dataclasses


@dataclass(frozen=True)
class Efficiency:
    """Roofline efficiencies of one accelerator (fractions of datasheet peaks) and latencies."""

    gemm: dict[str, float]
    grouped_gemm_half_tokens: float  # MoE grouped GEMM reaches half the dense GEMM efficiency at this many tokens per expert
    attention: float
    memory: float
    scaleup: float
    scaleout: float
    scaleup_latency_us: float
    scaleout_latency_us: float
    kernel_launch_us: float
    attention_latency_us: float  # fixed cost of one attention kernel (tiles, softmax passes, split-K merge)
    fitted_on: str

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.gemm.items())), self.grouped_gemm_half_tokens, self.attention, self.memory,
                     self.scaleup, self.scaleout, self.scaleup_latency_us, self.scaleout_latency_us,
                     self.kernel_launch_us, self.attention_latency_us, self.fitted_on))

    def gemm_for(self, dtype: str) -> float:
        """GEMM efficiency for ``dtype`` using the same fallback chain as ``peak_flops``."""
        return self.gemm[_resolve(dtype, self.gemm)]


@dataclass(frozen=True)
class GpuSpec:
    """One accelerator. Numbers are datasheet values (dense TFLOPs, GB = 10^9 bytes)."""

    name: str
    display_name: str
    vendor: str
    generation: str
    aliases: tuple[str, ...]
    memory_gb: float
    mem_bw_gbps: float
    peak_tflops: dict[str, float]
    scaleup_bw_gbps: float
    scaleup_domain_gpus: int
    scaleout_bw_gbps: float
    cost_usd_per_h: float
    cost_date: str
    tdp_w: float
    idle_w: float
    efficiency: Efficiency
    sources: dict[str, str]
    path: str
    notes: tuple[str, ...] = ()

    def __hash__(self) -> int:
        return hash((self.name, self.path, self.efficiency))

    # --- derived quantities, SI units ---------------------------------------------------------
    def native_dtype(self, dtype: str) -> str:
        """The ``peak_tflops`` key the math for ``dtype`` actually runs in on this part."""
        return _resolve(dtype, self.peak_tflops)

    def supports(self, dtype: str) -> bool:
        """True when the part has native tensor-core support for ``dtype``."""
        return normalize_dtype(dtype) in self.peak_tflops

    def peak_flops(self, dtype: str = "bf16") -> float:
        """Dense peak FLOP/s (SI) for ``dtype``; falls back (fp8 -> bf16, fp4 -> fp8 -> bf16...)."""
        return self.peak_tflops[self.native_dtype(dtype)] * 1e12

    def gemm_efficiency(self, dtype: str = "bf16") -> float:
        """Fraction of ``peak_flops(dtype)`` a large GEMM reaches (same fallback chain)."""
        return self.efficiency.gemm_for(self.native_dtype(dtype))

    @property
    def mem_bw_bytes_per_s(self) -> float:
        return self.mem_bw_gbps * 1e9

    @property
    def memory_bytes(self) -> float:
        return self.memory_gb * 1e9

    @property
    def memory_gib(self) -> float:
        return self.memory_gb * 1e9 / 2**30

    @property
    def scaleup_bw_bytes_per_s(self) -> float:
        return self.scaleup_bw_gbps * 1e9

    @property
    def scaleout_bw_bytes_per_s(self) -> float:
        return self.scaleout_bw_gbps * 1e9

    @property
    def all_names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class SystemSpec:
    """A node / platform built from one GPU type."""

    name: str
    display_name: str
    gpu: str
    gpus_per_node: int
    scaleup_domain_gpus: int
    scaleout_bw_gbps: float
    sources: dict[str, str]
    path: str
    notes: tuple[str, ...] = ()

    def __hash__(self) -> int:
        return hash((self.name, self.path))

    def gpu_spec(self, extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> GpuSpec:
        return load_gpu(self.gpu, extra_dirs)


@dataclass(frozen=True)
class HardwareDefault:
    """An engine default that depends on the GPU (first matching rule wins)."""

    max_num_seqs: int | None = None
    default_chunk_tokens: int | None = None
    gpu_memory_utilization: float | None = None
    min_memory_gib: float = 0.0
    max_memory_gib: float = math.inf
    exclude_name_contains: tuple[str, ...] = ()

    def matches(self, gpu: GpuSpec) -> bool:
        if not (self.min_memory_gib <= gpu.memory_gib < self.max_memory_gib):
            return False
        haystack = f"{gpu.name} {gpu.display_name}".lower()
        return not any(s.lower() in haystack for s in self.exclude_name_contains)


@dataclass(frozen=True)
class EngineProfile:
    """Per-engine scheduling overheads (calibratable) and the engine's real batching defaults."""

    name: str
    step_overhead_ms: float
    per_seq_overhead_us: float
    max_num_seqs: int
    default_chunk_tokens: int
    fitted_on: str
    gpu_memory_utilization: float = 0.9
    memory_fraction_of_free: bool = False  # TRT-LLM: the fraction applies to memory left after the weights
    kernel_latency_exposed: float = 1.0  # share of each kernel's isolated fixed latency an iteration pays
    hardware_defaults: tuple[HardwareDefault, ...] = ()
    sources: dict[str, str] = field(default_factory=FrozenDict)
    path: str = ""

    def __hash__(self) -> int:
        return hash((self.name, self.step_overhead_ms, self.per_seq_overhead_us,
                     self.max_num_seqs, self.default_chunk_tokens, self.gpu_memory_utilization,
                     self.memory_fraction_of_free, self.kernel_latency_exposed, self.hardware_defaults,
                     self.path))

    def _rule(self, gpu: GpuSpec | None) -> HardwareDefault | None:
        if gpu is None:
            return None
        return next((r for r in self.hardware_defaults if r.matches(gpu)), None)

    def batch_defaults(self, gpu: GpuSpec | None = None) -> tuple[int, int]:
        """``(max_num_seqs, chunk_tokens)`` the engine picks by itself on ``gpu``."""
        p = self.for_gpu(gpu) if gpu is not None else self
        return p.max_num_seqs, p.default_chunk_tokens

    def for_gpu(self, gpu: GpuSpec | None) -> "EngineProfile":
        """This profile with the GPU-dependent defaults resolved (first matching rule wins)."""
        rule = self._rule(gpu)
        if rule is None:
            return dataclasses.replace(self, hardware_defaults=())

        def pick(value: Any, fallback: Any) -> Any:
            return fallback if value is None else value

        return dataclasses.replace(
            self,
            max_num_seqs=pick(rule.max_num_seqs, self.max_num_seqs),
            default_chunk_tokens=pick(rule.default_chunk_tokens, self.default_chunk_tokens),
            gpu_memory_utilization=pick(rule.gpu_memory_utilization, self.gpu_memory_utilization),
            hardware_defaults=(),
        )


# --------------------------------------------------------------------------------------------
# file access


def bundled_dir() -> Path:
    """Directory holding the bundled YAMLs (found through importlib.resources)."""
    return Path(str(resources.files(__package__ or "hwdb")))


def _display(path: Path) -> str:
    """Bundled files are shown as ``hwdb/gpus/x.yaml``; user files as given."""
    try:
        rel = path.resolve().relative_to(bundled_dir().resolve())
    except (ValueError, OSError):
        return str(path)
    return "hwdb/" + rel.as_posix()


def _stat_key(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


def _read_mapping(path: Path, shown: str) -> dict[str, Any]:
    """A YAML mapping, read with the limits of hwdb.safe_load (size, encoding, no aliases, nesting)."""
    from .safe_load import UnsafeInputError, load_document

    try:
        data = load_document(path, shown)
    except UnsafeInputError as exc:
        raise HwdbError(shown, None, str(exc).removeprefix(f"{shown}: ")) from None
    if not isinstance(data, dict):
        raise HwdbError(shown, None, "top level must be a mapping of field: value")
    return data


# --------------------------------------------------------------------------------------------
# field validators


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class _Checker:
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

    def number(self, key: str, *, positive: bool = True, allow_zero: bool = False,
               upper: float | None = None) -> float:
        value = self.get(key)
        if not _is_number(value):
            raise self.fail(key, f"must be a number, got {shown_value(value)}")
        value = float(value)
        if allow_zero and value < 0:
            raise self.fail(key, f"must be a non-negative number, got {value:g}")
        if not allow_zero and positive and value <= 0:
            raise self.fail(key, f"must be a positive number, got {value:g}")
        if upper is not None and value > upper:
            raise self.fail(key, f"must be <= {upper:g}, got {value:g}")
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
        allowed = set(allowed)
        for key in self.data:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
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

    def sources(self, required: Iterable[str]) -> FrozenDict:
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


_NAME_RE = r"[a-z0-9][a-z0-9_]*"


# --------------------------------------------------------------------------------------------
# GPU files

_GPU_NUMBER_FIELDS = (
    "memory_gb",
    "mem_bw_gbps",
    "peak_tflops",
    "scaleup_bw_gbps",
    "scaleup_domain_gpus",
    "scaleout_bw_gbps",
    "cost_usd_per_h",
    "tdp_w",
    "idle_w",
)
_GPU_FIELDS = (
    "name",
    "display_name",
    "vendor",
    "generation",
    "aliases",
    *_GPU_NUMBER_FIELDS,
    "cost_date",
    "efficiency",
    "sources",
    "notes",
)
_EFF_FRACTIONS = ("attention", "memory", "scaleup", "scaleout")
_EFF_LATENCIES = ("scaleup_latency_us", "scaleout_latency_us", "kernel_launch_us", "attention_latency_us",
                  "grouped_gemm_half_tokens")
_EFF_FIELDS = ("gemm", *_EFF_FRACTIONS, *_EFF_LATENCIES, "fitted_on")


def _parse_efficiency(shown: str, raw: Any, peak: Mapping[str, float]) -> Efficiency:
    if not isinstance(raw, dict):
        raise HwdbError(shown, "efficiency", "must be a mapping")
    c = _Checker(shown, raw, prefix="efficiency.")
    c.unknown_keys(_EFF_FIELDS)
    gemm_raw = c.mapping("gemm")
    gemm: dict[str, float] = {}
    g = _Checker(shown, gemm_raw, prefix="efficiency.gemm.")
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


def _build_gpu(data: Mapping[str, Any], shown: str, stem: str | None, path: str) -> GpuSpec:
    c = _Checker(shown, data)
    c.unknown_keys(_GPU_FIELDS)
    name = c.string("name", _NAME_RE, "lower-case letters, digits and '_'")
    if stem is not None and name != stem:
        raise c.fail("name", f"must equal the file stem {stem!r}, got {shown_value(name)}")

    aliases_raw = data.get("aliases") or []
    if not isinstance(aliases_raw, list) or not all(isinstance(a, str) for a in aliases_raw):
        raise c.fail("aliases", "must be a list of strings")
    aliases = []
    for alias in aliases_raw:
        a = alias.strip().lower()
        if not re.fullmatch(r"[a-z0-9][a-z0-9_\-.]*", a):
            raise c.fail("aliases", f"invalid alias {shown_value(alias)}")
        if a != name and a not in aliases:
            aliases.append(a)

    peak_raw = c.mapping("peak_tflops")
    if not peak_raw:
        raise c.fail("peak_tflops", "must list at least bf16")
    p = _Checker(shown, peak_raw, prefix="peak_tflops.")
    peak: dict[str, float] = {}
    for key in peak_raw:
        dtype = str(key)
        if dtype not in DTYPES:
            raise p.fail(dtype, f"unknown dtype (known: {', '.join(DTYPES)})")
        peak[dtype] = p.number(dtype)
    if "bf16" not in peak:
        raise p.fail("bf16", "missing (required: the fallback of every other dtype)")

    memory_gb = c.number("memory_gb")
    tdp_w = c.number("tdp_w")
    idle_w = c.number("idle_w")
    if idle_w > tdp_w:
        raise c.fail("idle_w", f"must not exceed tdp_w ({tdp_w:g}), got {idle_w:g}")

    spec = GpuSpec(
        name=name,
        display_name=c.string("display_name"),
        vendor=c.string("vendor", _NAME_RE, "a lower-case identifier"),
        generation=c.string("generation", _NAME_RE, "a lower-case identifier"),
        aliases=tuple(aliases),
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
        efficiency=_parse_efficiency(shown, c.get("efficiency"), peak),
        sources=c.sources(_GPU_NUMBER_FIELDS),
        path=path,
        notes=c.notes(),
    )
    return spec


@functools.lru_cache(maxsize=512)
def _gpu_cached(path: str, _stat: tuple[int, int]) -> GpuSpec:
    p = Path(path)
    shown = _display(p)
    return _build_gpu(_read_mapping(p, shown), shown, p.stem, str(p))


def load_gpu_file(path: str | os.PathLike[str]) -> GpuSpec:
    """Parse and validate one GPU YAML (bundled or user-written)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise HwdbError(str(path), None, "file not found")
    p = p.resolve()
    return _gpu_cached(str(p), _stat_key(p))


# --------------------------------------------------------------------------------------------
# collections, lookup


def _dir_fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """``(path, mtime_ns, size)`` of every YAML in ``directory`` (or of ``directory`` if a file)."""
    shown = str(directory)
    if directory.is_file():
        real = os.path.realpath(directory)
        st = os.stat(real)
        return ((real, st.st_mtime_ns, st.st_size),)
    if not directory.is_dir():
        raise HwdbError(shown, None, "not a directory of YAML files")
    real_dir = os.path.realpath(directory)
    out = []
    with os.scandir(real_dir) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.endswith((".yaml", ".yml")):
                continue
            if not entry.is_file():
                continue
            st = entry.stat()
            out.append((os.path.join(real_dir, entry.name), st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


def _as_dirs(extra_dirs: Any) -> tuple[Path, ...]:
    if extra_dirs is None:
        return ()
    if isinstance(extra_dirs, (str, os.PathLike)):
        extra_dirs = (extra_dirs,)
    return tuple(Path(d).expanduser() for d in extra_dirs)


@functools.lru_cache(maxsize=64)
def _gpu_index_cached(
    fingerprint: tuple[tuple[tuple[str, int, int], ...], ...],
) -> tuple[FrozenDict, FrozenDict]:
    by_name: dict[str, GpuSpec] = {}
    for files in fingerprint:  # later directories override earlier ones by name
        for path, mtime, size in files:
            spec = _gpu_cached(path, (mtime, size))
            by_name[spec.name] = spec
    # aliases must be unambiguous across the whole set
    owner: dict[str, str] = {n: n for n in by_name}
    for spec in sorted(by_name.values(), key=lambda s: s.name):
        for alias in spec.aliases:
            prev = owner.get(alias)
            if prev is not None and prev != spec.name:
                raise HwdbError(_display(Path(spec.path)), "aliases",
                                f"alias {shown_value(alias)} is already used by GPU {prev!r}")
            owner[alias] = spec.name
    names: dict[str, str] = {}
    for spec in by_name.values():
        for n in spec.all_names:
            names.setdefault(n, spec.name)
            names.setdefault(_key(n), spec.name)
    return FrozenDict(by_name), FrozenDict(names)


def _gpu_index(extra_dirs: Any = ()) -> dict[str, GpuSpec]:
    """name -> spec; files in later ``extra_dirs`` override earlier ones with the same name."""
    return _gpu_index_and_names(extra_dirs)[0]


def _gpu_index_and_names(extra_dirs: Any = ()) -> tuple[FrozenDict, FrozenDict]:
    dirs = (bundled_dir() / "gpus", *_as_dirs(extra_dirs))
    return _gpu_index_cached(tuple(_dir_fingerprint(d) for d in dirs))


def list_gpus(extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> list[GpuSpec]:
    """Every GPU (bundled plus ``extra_dirs``), sorted by name."""
    return sorted(_gpu_index(extra_dirs).values(), key=lambda s: s.name)


def _key(name: str) -> str:
    return str(name).strip().lower().replace("-", "_").replace(" ", "_")


def _lookup(kind: str, query: str, names: Mapping[str, str]) -> str:
    """Resolve ``query`` against ``names`` (lookup-key -> canonical name) or raise with hints."""
    key = _key(query)
    for candidate in (str(query).strip().lower(), key):
        if candidate in names:
            return names[candidate]
    # rank: longest shared prefix first ('h100x' -> h100_sxm, h100_pcie), then similarity
    def prefix(a: str, b: str) -> int:
        n = 0
        for x, y in zip(a, b):
            if x != y:
                break
            n += 1
        return n

    need = min(3, len(key))
    scored = []
    for cand in names:
        ratio = difflib.SequenceMatcher(None, key, cand).ratio()
        shared = prefix(key, cand)
        if shared >= need or ratio >= 0.6:
            scored.append((-(shared >= need), -shared, -ratio, cand))
    close = [c for *_, c in sorted(scored)]
    suggestions: list[str] = []
    for c in close:
        canonical = names[c]
        if canonical not in suggestions:
            suggestions.append(canonical)
    raise UnknownNameError(kind, str(query), suggestions[:5], set(names.values()))


def load_gpu(name_or_alias: str, extra_dirs: Iterable[str | os.PathLike[str]] = ()) -> GpuSpec:
    """Look a GPU up by name or alias (case-insensitive, '-' == '_'), or by YAML path."""
    text = str(name_or_alias)
    if text.endswith((".yaml", ".yml")) and Path(text).expanduser().is_file():
        return load_gpu_file(text)
    index, names = _gpu_index_and_names(extra_dirs)
    return index[_lookup("GPU", text, names)]


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
    eff = _parse_efficiency(f"{gpu.name} (with_efficiency)", raw, gpu.peak_tflops)
    return dataclasses.replace(gpu, efficiency=eff)


# --------------------------------------------------------------------------------------------
# systems

_SYSTEM_NUMBER_FIELDS = ("gpus_per_node", "scaleup_domain_gpus", "scaleout_bw_gbps")
_SYSTEM_FIELDS = ("name", "display_name", "gpu", *_SYSTEM_NUMBER_FIELDS, "sources", "notes")


@functools.lru_cache(maxsize=128)
def _system_cached(path: str, _stat: tuple[int, int]) -> SystemSpec:
    p = Path(path)
    shown = _display(p)
    c = _Checker(shown, _read_mapping(p, shown))
    c.unknown_keys(_SYSTEM_FIELDS)
    name = c.string("name", _NAME_RE, "lower-case letters, digits and '_'")
    if name != p.stem:
        raise c.fail("name", f"must equal the file stem {p.stem!r}, got {shown_value(name)}")
    return SystemSpec(
        name=name,
        display_name=c.string("display_name"),
        gpu=c.string("gpu"),
        gpus_per_node=c.integer("gpus_per_node"),
        scaleup_domain_gpus=c.integer("scaleup_domain_gpus"),
        scaleout_bw_gbps=c.number("scaleout_bw_gbps", allow_zero=True),
        sources=c.sources(_SYSTEM_NUMBER_FIELDS),
        path=str(p),
        notes=c.notes(),
    )


def _system_index() -> dict[str, SystemSpec]:
    gpus = _gpu_index()
    gpu_names = {n: s.name for s in gpus.values() for n in s.all_names}
    out: dict[str, SystemSpec] = {}
    for path, mtime, size in _dir_fingerprint(bundled_dir() / "systems"):
        f = Path(path)
        spec = _system_cached(path, (mtime, size))
        if spec.gpu not in gpu_names:
            close = difflib.get_close_matches(spec.gpu, list(gpu_names), n=3)
            hint = f"; did you mean: {', '.join(close)}?" if close else ""
            raise HwdbError(_display(f), "gpu", f"unknown GPU {spec.gpu!r}{hint}")
        out[spec.name] = spec
    return out


def list_systems() -> list[SystemSpec]:
    """Every bundled system (node / platform), sorted by name."""
    return sorted(_system_index().values(), key=lambda s: s.name)


def load_system(name: str) -> SystemSpec:
    index = _system_index()
    names = {n: n for n in index}
    return index[_lookup("system", name, names)]


# --------------------------------------------------------------------------------------------
# engines

_ENGINE_FIELDS = ("step_overhead_ms", "per_seq_overhead_us", "max_num_seqs",
                  "default_chunk_tokens", "gpu_memory_utilization", "memory_fraction_of_free",
                  "kernel_latency_exposed", "fitted_on",
                  "hardware_defaults", "sources", "notes")
_RULE_FIELDS = ("max_num_seqs", "default_chunk_tokens", "gpu_memory_utilization",
                "min_memory_gib", "max_memory_gib", "exclude_name_contains")


def _parse_rule(shown: str, raw: Any, where: str) -> HardwareDefault:
    if not isinstance(raw, dict):
        raise HwdbError(shown, where, "must be a mapping")
    c = _Checker(shown, raw, prefix=where + ".")
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


@functools.lru_cache(maxsize=16)
def _engines_cached(path: str, _stat: tuple[int, int]) -> FrozenDict:
    p = Path(path)
    shown = _display(p)
    top = _read_mapping(p, shown)
    _Checker(shown, top).unknown_keys(("engines", "notes"))
    engines = _Checker(shown, top).mapping("engines")
    if not engines:
        raise HwdbError(shown, "engines", "must list at least one engine")
    out: dict[str, EngineProfile] = {}
    for ename, raw in engines.items():
        ename = str(ename)
        if not re.fullmatch(_NAME_RE, ename):
            raise HwdbError(shown, f"engines.{ename}", "engine names are lower-case identifiers")
        if not isinstance(raw, dict):
            raise HwdbError(shown, f"engines.{ename}", "must be a mapping")
        c = _Checker(shown, raw, prefix=f"engines.{ename}.")
        c.unknown_keys(_ENGINE_FIELDS)
        rules_raw = raw.get("hardware_defaults") or []
        if not isinstance(rules_raw, list):
            raise c.fail("hardware_defaults", "must be a list of rules")
        rules = tuple(_parse_rule(shown, r, f"engines.{ename}.hardware_defaults[{i}]")
                      for i, r in enumerate(rules_raw))
        out[ename] = EngineProfile(
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
            path=str(p),
        )
    return FrozenDict(out)


def load_engines() -> dict[str, EngineProfile]:
    """All engine profiles from the bundled ``engines.yaml`` (name -> profile)."""
    p = (bundled_dir() / "engines.yaml").resolve()
    return dict(_engines_cached(str(p), _stat_key(p)))


def load_engine(name: str) -> EngineProfile:
    engines = load_engines()
    names = {n: n for n in engines}
    names.update({"tensorrt_llm": "trtllm", "trt_llm": "trtllm"} if "trtllm" in engines else {})
    return engines[_lookup("engine", name, names)]
