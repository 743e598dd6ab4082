"""What a hardware-database entry is: the dataclasses, the dtype vocabulary and a read-only dict.

Units (see :mod:`hwdb.units`): ``_gbps`` is gigaBYTES per second, ``_tflops`` is 10^12 FLOP/s (dense,
no structured sparsity), ``_gb`` 10^9 bytes, ``_gib`` 2^30 bytes, ``_w`` watts, ``_us`` microseconds,
``_ms`` milliseconds.

Field meanings shared by every GPU file
---------------------------------------
* ``memory_gb`` / ``mem_bw_gbps``: datasheet HBM (or GDDR) capacity in 10^9 bytes and peak
  bandwidth. ``memory_gib`` converts for engines that think in GiB.
* ``peak_tflops``: dense tensor-core peaks per dtype; a dtype the part lacks is *omitted* and
  :meth:`GpuSpec.peak_flops` falls back (fp8 -> bf16, fp4 -> fp8 -> bf16, int4 like fp4).
* ``scaleup_bw_gbps``: per GPU, one direction, over NVLink / Infinity Fabric / ICI / RoCE
  scale-up ports; PCIe-only cards give PCIe bandwidth per direction and the usual server size.
  ``scaleup_domain_gpus``: GPUs in one scale-up domain (8 on an HGX board, 72 in a GB200 NVL72 rack).
* ``scaleout_bw_gbps``: per GPU NIC bandwidth, one direction (400 Gb/s = 50 GB/s).
* ``cost_usd_per_h``: typical on-demand price per GPU-hour; ``cost_date`` when it was read.
* ``idle_w``: board power of a provisioned, model-resident GPU doing nothing (P0, 0 % util),
  not the deep-idle of an empty GPU, because that is what an idle serving replica draws.
* ``efficiency``: roofline efficiencies (fractions of the peaks above) plus collective and
  launch latencies; ``fitted_on`` says what they come from. Calibrate with ``hwdb.with_efficiency``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, NoReturn, TypeVar

from .units import BYTES_PER_GB, BYTES_PER_GIB

K = TypeVar("K")
V = TypeVar("V")


class FrozenDict(dict[K, V]):
    """A ``dict`` that refuses mutation, so cached specs cannot be changed by a caller.

    Still a dict: ``json.dumps`` / ``dict(...)`` / ``isinstance(x, dict)`` all work.
    """

    __slots__ = ()

    def _readonly(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("hwdb mappings are read-only; use hwdb.with_efficiency / dataclasses.replace")

    __setitem__ = __delitem__ = __ior__ = _readonly
    clear = pop = popitem = setdefault = update = _readonly

    def __hash__(self) -> int:  # type: ignore[override]  # dict is unhashable; a frozen one is not
        return hash(tuple(sorted(self.items())))

    def __reduce__(self) -> tuple[type[FrozenDict[K, V]], tuple[dict[K, V]]]:  # copy / pickle via a dict
        return (type(self), (dict(self),))

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"


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


def _resolve(dtype: str, available: Mapping[str, float]) -> str:
    for candidate in _FALLBACK[normalize_dtype(dtype)]:
        if candidate in available:
            return candidate
    # bf16 is mandatory in both peak_tflops and efficiency.gemm, so this is unreachable for
    # validated specs; keep a clear error for hand-built objects.
    raise ValueError(f"no entry for {dtype!r} or its fallbacks in {sorted(available)}")


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
    """One accelerator. Numbers are datasheet values (dense TFLOPs, GB = 10^9 bytes, ``_gbps`` = GB/s)."""

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
    def memory_gib(self) -> float:
        return self.memory_gb * BYTES_PER_GB / BYTES_PER_GIB

    @property
    def all_names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


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

    def batch_defaults(self, gpu: GpuSpec | None = None) -> tuple[int, int]:
        """``(max_num_seqs, chunk_tokens)`` the engine picks by itself on ``gpu``."""
        p = self.for_gpu(gpu) if gpu is not None else self
        return p.max_num_seqs, p.default_chunk_tokens

    def for_gpu(self, gpu: GpuSpec | None) -> EngineProfile:
        """This profile with the GPU-dependent defaults resolved (first matching rule wins)."""
        rule = None if gpu is None else next((r for r in self.hardware_defaults if r.matches(gpu)), None)
        if rule is None:
            return dataclasses.replace(self, hardware_defaults=())
        return dataclasses.replace(
            self,
            max_num_seqs=self.max_num_seqs if rule.max_num_seqs is None else rule.max_num_seqs,
            default_chunk_tokens=(self.default_chunk_tokens if rule.default_chunk_tokens is None
                                  else rule.default_chunk_tokens),
            gpu_memory_utilization=(self.gpu_memory_utilization if rule.gpu_memory_utilization is None
                                    else rule.gpu_memory_utilization),
            hardware_defaults=(),
        )
