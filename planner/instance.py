"""The one instance builder: (model, GPU type, parallel config, chunk budget, lever choices) -> the configured
instance (`planner.capacity.estimate.Setup`) that serving, energy, the report, `estimate`, `calibrate` and `simulate`
all evaluate (docs/architecture.md, "Levers").

Each lever is applied here and only here, in one fixed order:
  GPU     the hwdb part (bundled or --hwdb folders) -> calibration (fitted efficiencies) -> power cap (SM clock)
  engine  the hwdb profile -> calibration (fitted overheads) -> its defaults for that GPU (.for_gpu)
  Setup   weight and KV dtypes, chunk budget, MoE expert skew, speculation at depth k, KV-transfer compression,
          the P -> D link
Calibration comes before the power cap because a calibration is fitted to runs of the part as measured
(efficiencies are fractions of its datasheet peak), and a cap is a what-if applied to that measured part: it
lowers the SM clock, so the peak FLOP/s the calibrated efficiencies multiply. (The two touch different fields
of the GpuSpec, efficiencies vs peak FLOP/s and TDP, so today the other order gives the same numbers; the
order is fixed so that stays true when either lever grows.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from planner.capacity.estimate import Setup
from planner.core.errors import PlannerInputError
from planner.core.model import ModelSpec
from planner.core.parallel import ParallelConfig

if TYPE_CHECKING:
    from hwdb import EngineProfile, GpuSpec
    from planner.levers.spec import SpecConfig
    from planner.search.calibrate import Calibration


@dataclass(frozen=True)
class Levers:
    """A request's lever choices that change every instance built from it (the defaults: lever off)."""
    calibration: Calibration | None = None  # --calibration: fitted efficiencies and engine overheads
    power_cap_w: Mapping[str, float] | None = None  # --power-cap: GPU name or alias -> board cap, W
    spec: SpecConfig | None = None  # --spec: speculative decoding; each instance fixes its depth k
    kv_compression: float = 1.0  # --kv-compression: P -> D KV transfer ships kv_bytes / this
    link_gbps: float | None = None  # --link prefill-decode=…: P -> D path in GB/s (None: each instance's NICs)
    hwdb_dirs: tuple[str, ...] = ()  # --hwdb: user folders with more GPU / engine YAMLs

    def to_json(self) -> dict[str, Any]:
        """The plan document's `levers` record, from which `planner simulate` rebuilds the same instances (the
        levers left at their defaults are left out; calibration is not recorded: simulate takes --calibration)."""
        out: dict[str, Any] = {}
        if self.spec is not None:
            out["spec"] = self.spec.label()
        if self.kv_compression != 1.0:
            out["kv_compression"] = self.kv_compression
        if self.link_gbps:
            out["link_gbps"] = self.link_gbps
        if self.power_cap_w:
            out["power_cap_w"] = dict(sorted(self.power_cap_w.items()))
        if self.hwdb_dirs:
            out["hwdb"] = list(self.hwdb_dirs)
        return out

    @classmethod
    def from_json(cls, read: Callable[[str, Any, type], Any], calibration: Calibration | None = None) -> Levers:
        """The levers of a `levers` record (to_json's inverse); `read(key, default, kind)` returns the record's
        checked field (the plan reader's, so every error names `levers.<key>`)."""
        dirs = read("hwdb", [], list)
        if not all(isinstance(d, str) for d in dirs):
            raise PlannerInputError("plan: field 'levers.hwdb' must be a list of folders")
        caps = read("power_cap_w", {}, dict)
        if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and 0 < w < math.inf for w in caps.values()):
            raise PlannerInputError("plan: field 'levers.power_cap_w' must map GPU names to watts")
        kv_compression = read("kv_compression", 1.0, float)
        if kv_compression < 1:
            raise PlannerInputError(f"plan: field 'levers.kv_compression' must be at least 1, got {kv_compression:g}")
        spec = None
        if text := read("spec", "", str):
            from planner.levers.spec import parse_spec

            spec = parse_spec(text)
        return cls(calibration, caps or None, spec, kv_compression, read("link_gbps", None, float), tuple(dirs))


@dataclass
class InstanceBuilder:
    """Builds the instances of one request: the model, engine and dtypes are fixed, the GPU type, parallel
    config, chunk budget, expert skew and speculation depth vary per instance. GPUs are resolved once per type."""
    model: ModelSpec
    engine: str = "vllm"
    dtype: str = "bf16"
    kv_dtype: str = "bf16"
    levers: Levers = Levers()
    _parts: dict[str, tuple[GpuSpec, EngineProfile]] = field(default_factory=dict, init=False, repr=False,
                                                               compare=False)

    def _part(self, name: str) -> tuple[GpuSpec, EngineProfile]:
        if name not in self._parts:
            import hwdb
            from planner.levers.energy import capped_gpu

            gpu = hwdb.load_gpu(name, extra_dirs=self.levers.hwdb_dirs)
            if self.levers.calibration is not None:
                gpu = self.levers.calibration.apply_gpu(gpu)
            gpu = capped_gpu(gpu, self.levers.power_cap_w, self.levers.hwdb_dirs)
            self._parts[name] = gpu, self.engine_profile().for_gpu(gpu)
        return self._parts[name]

    def gpu(self, name: str) -> GpuSpec:
        """The GPU type as every instance sees it: hwdb part -> calibration -> power cap (module docstring)."""
        return self._part(name)[0]

    def engine_for(self, gpu: str) -> EngineProfile:
        """The engine's profile as instances on this GPU type run it: calibrated, GPU defaults resolved."""
        return self._part(gpu)[1]

    def engine_profile(self) -> EngineProfile:
        """The engine's profile with the calibration applied (GPU-dependent defaults not yet resolved)."""
        import hwdb

        engine = hwdb.load_engine(self.engine)
        return engine if self.levers.calibration is None else self.levers.calibration.apply_engine(engine)

    def build(self, gpu: str, par: ParallelConfig, chunk_tokens: int = 0, skew: float = 1.0,
              spec_k: int = 0) -> Setup:
        """One instance: `chunk_tokens` 0 = the engine's default budget, `skew` the MoE expert-placement
        imbalance (≥ 1), `spec_k` draft tokens per verify step (0: no speculation)."""
        from planner.levers.spec import resolve

        g, engine = self._part(gpu)
        return Setup(self.model, g, par, engine, self.dtype, self.kv_dtype, chunk_tokens, skew,
                     resolve(self.levers.spec, self.model, par, spec_k, g.scaleup_domain_gpus),
                     self.levers.kv_compression, self.levers.link_gbps)
