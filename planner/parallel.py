"""ParallelConfig (tp, pp, ep, dp) and the rules that make one valid for a model on a GPU topology.

Convention: an instance uses tp·dp·pp GPUs. Attention runs tp-way tensor parallel inside each of dp attention
data-parallel ranks; MoE experts are split over ep ranks and each expert tp·dp/ep-way tensor parallel
(vLLM: `-tp T -dp D --enable-expert-parallel` gives ep = T·D; SGLang: `--tp T·D --dp D --enable-dp-attention`).
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.errors import PlannerInputError
from planner.model import ModelSpec


@dataclass(frozen=True, order=True)
class ParallelConfig:
    tp: int = 1
    pp: int = 1
    ep: int = 1
    dp: int = 1

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def gpus_per_stage(self) -> int:
        return self.tp * self.dp

    @property
    def moe_tp(self) -> int:
        """Tensor-parallel width of each expert."""
        return self.gpus_per_stage // self.ep

    def label(self) -> str:
        parts = [f"TP{self.tp}"] + [f"{k}{v}" for k, v in (("PP", self.pp), ("EP", self.ep), ("DP", self.dp))
                                    if v > 1]
        return "·".join(parts)


def validation_error(model: ModelSpec, par: ParallelConfig, scaleup_domain_gpus: int,
                     allow_cross_node_tp: bool = False) -> str | None:
    """Why `par` cannot run `model` (the engines' divisibility rules), or None if it can."""
    for name, v in (("tp", par.tp), ("pp", par.pp), ("ep", par.ep), ("dp", par.dp)):
        if not isinstance(v, int) or v < 1:
            return f"{name} must be a positive integer, got {v!r}"
    if model.num_heads % par.tp:
        return f"tp={par.tp} must divide the {model.num_heads} attention heads"
    if par.tp > model.num_kv_heads and par.tp % model.num_kv_heads and not model.is_mla:
        return f"tp={par.tp} must be a multiple of the {model.num_kv_heads} KV heads when larger"
    if par.pp > model.num_layers:
        return f"pp={par.pp} exceeds the {model.num_layers} layers"
    if par.ep > 1 and not model.is_moe:
        return f"ep={par.ep} needs a MoE model"
    if model.is_moe:
        if par.gpus_per_stage % par.ep:
            return f"ep={par.ep} must divide tp·dp={par.gpus_per_stage}"
        if model.num_experts % par.ep:
            return f"ep={par.ep} must divide the {model.num_experts} experts"
        if model.expert_intermediate_size % par.moe_tp:
            return f"expert width {model.expert_intermediate_size} not divisible by expert TP {par.moe_tp}"
    elif par.dp > 1:
        return "dp>1 (attention data parallel) is for MoE models; use more instances for a dense model"
    if not allow_cross_node_tp and par.gpus_per_stage > scaleup_domain_gpus:
        return f"tp·dp={par.gpus_per_stage} exceeds the {scaleup_domain_gpus}-GPU scale-up domain"
    return None


def check_parallel(model: ModelSpec, par: ParallelConfig, scaleup_domain_gpus: int,
                   allow_cross_node_tp: bool = True) -> None:
    err = validation_error(model, par, scaleup_domain_gpus, allow_cross_node_tp)
    if err:
        raise PlannerInputError(f"parallel config {par.label()}: {err}")


def parallel_configs(model: ModelSpec, scaleup_domain_gpus: int, max_gpus: int,
                     allow_cross_node_tp: bool = False) -> list[ParallelConfig]:
    """Every valid (tp, pp, ep, dp) with power-of-two degrees and at most `max_gpus` GPUs, sorted.
    MoE models get ep = 1 (experts tensor-parallel) or ep = tp·dp (vLLM's --enable-expert-parallel).
    Pipeline stages only span scale-up domains (pp > 1 needs tp·dp to fill one), the engines' own advice
    (vLLM: TP = GPUs per node, PP = nodes): within a node TP cuts TPOT where PP does not."""
    pow2 = [1 << i for i in range(12) if 1 << i <= max_gpus]
    domain = min(scaleup_domain_gpus, max_gpus)
    out = set()
    for tp in pow2:
        for pp in pow2:
            for dp in (pow2 if model.is_moe else [1]):
                if tp * pp * dp > max_gpus or (pp > 1 and tp * dp < domain):
                    continue
                for ep in ({1, tp * dp} if model.is_moe else {1}):
                    par = ParallelConfig(tp, pp, ep, dp)
                    if validation_error(model, par, scaleup_domain_gpus, allow_cross_node_tp) is None:
                        out.add(par)
    return sorted(out, key=lambda p: (p.gpus, p.pp, p.dp, p.tp, p.ep))
