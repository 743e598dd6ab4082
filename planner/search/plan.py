"""Plan / InstancePlan dataclasses and their JSON form (docs/architecture.md, "Data flow").

Token figures are output (generated) tokens; $/M tokens = $/h ÷ (output tokens/s · 3600) · 10⁶.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.core.vocab import Family, Role


@dataclass(frozen=True)
class InstancePlan:
    role: Role
    gpu: str
    count: int
    tp: int
    pp: int
    ep: int
    dp: int
    max_batch: int
    chunk_tokens: int
    load_rps: dict  # request class -> req/s routed to these instances (all of them together)
    utilization: float  # Σ_s load_s / (count · capacity_s): how full the instances are
    ttft_ms: float  # predicted p-th percentile at this load (0 for a decode-only instance)
    tpot_ms: float  # (0 for a prefill-only instance)
    binding: str  # what caps one instance's capacity: tpot | ttft | kv_memory | max_num_seqs | chunk_budget
    skew: float = 1.0  # MoE expert-placement imbalance assumed (1 for dense models)
    sm_fraction: float = 0.0  # role multiplex: prefill's share of the SMs (planner/levers/multiplex.py)
    spec_k: int | None = None  # --spec: draft tokens per verify step (0 = speculation off); None without --spec

    @property
    def gpus(self) -> int:
        return self.count * self.tp * self.pp * self.dp


@dataclass(frozen=True)
class Plan:
    rank: int
    family: Family | str  # "" for the ranked list, else the family whose best plan this is
    mode: str  # the plan's shape: agg | disagg | multiplex | mixed (roles of its instances)
    goodput_rps: float
    tokens_per_s: float
    tokens_per_s_per_gpu: float
    cost_usd_per_h: float
    usd_per_million_tokens: float
    gpus: dict
    instances: tuple[InstancePlan, ...]
    predicted: dict  # {"ttft_ms", "tpot_ms"}: worst p-th percentile over the instances that carry load
    binding: str
    energy: dict | None = None  # {"watts", "joules_per_token"} when energy is asked for (planner/levers/energy.py)

    def to_json(self) -> dict:
        return {
            "rank": self.rank, "family": self.family, "mode": self.mode, "goodput_rps": self.goodput_rps,
            "tokens_per_s": self.tokens_per_s, "tokens_per_s_per_gpu": self.tokens_per_s_per_gpu,
            "cost_usd_per_h": self.cost_usd_per_h, "usd_per_million_tokens": self.usd_per_million_tokens,
            "gpus": dict(sorted(self.gpus.items())),
            "instances": [{"role": i.role, "gpu": i.gpu, "count": i.count, "tp": i.tp, "pp": i.pp, "ep": i.ep,
                           "dp": i.dp, "max_batch": i.max_batch, "chunk_tokens": i.chunk_tokens,
                           "load_rps": dict(sorted(i.load_rps.items())), "utilization": i.utilization,
                           "predicted": {"ttft_ms": i.ttft_ms, "tpot_ms": i.tpot_ms}, "binding": i.binding,
                           "skew": i.skew, **({"sm_fraction": i.sm_fraction} if i.role == Role.multiplex else {}),
                           **({"spec_k": i.spec_k} if i.spec_k is not None else {})}
                          for i in self.instances],
            "predicted": self.predicted, "binding": self.binding,
            **({"energy": self.energy} if self.energy is not None else {}),
        }
