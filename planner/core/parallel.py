"""ParallelConfig (tp, pp, ep, dp) and the rules that make one valid for a model on a GPU topology.

Convention: an instance uses tp·dp·pp GPUs. Attention runs tp-way tensor parallel inside each of dp attention
data-parallel ranks; MoE experts are split over ep ranks and each expert tp·dp/ep-way tensor parallel
(vLLM: `-tp T -dp D --enable-expert-parallel` gives ep = T·D; SGLang: `--tp T·D --dp D --enable-dp-attention`).
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.core.errors import PlannerInputError
from planner.core.model import ModelSpec

# [block_n, block_k] of fp8 block-scaled checkpoints in the wild: quantization_config.weight_block_size is
# [128, 128] in deepseek-ai/DeepSeek-V3 and the Qwen/Qwen3-*-FP8 checkpoints ("fine-grained fp8 quantization
# with block size 128", Qwen3-FP8 model cards). An fp8 variant of a bf16 checkpoint is planned with it.
FP8_BLOCK = (128, 128)


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


def quant_block(model: ModelSpec, dtype: str | None) -> tuple[int, int] | None:
    """The weight-scale block shard widths must respect with weights in `dtype`: the checkpoint's own when it
    ships in `dtype` (None for a per-tensor fp8 checkpoint), else FP8_BLOCK for fp8, else none."""
    if dtype is None:
        return None
    if dtype == model.weight_dtype:
        return model.weight_block_size
    return FP8_BLOCK if dtype == "fp8" else None


def _shards(model: ModelSpec, par: ParallelConfig, dtype: str) -> list[tuple[str, int, int, str]]:
    """(weight, full width, ways split, 'out' | 'in') of every tensor-parallel-split quantised dimension:
    column-parallel outputs (q/k/v, MLP gate/up) and row-parallel inputs (o_proj, MLP down). Attention splits
    tp ways; dense MLP and shared experts over tp·dp (as the memory model splits them); routed experts moe_tp
    ways, unless they stay in a narrower native dtype (gpt-oss's MXFP4 experts)."""
    nh, t = model.num_heads, par.tp
    if model.is_mla:
        attn = [("q_b_proj" if model.q_lora_rank else "q_proj", nh * model.qk_dim, t, "out"),
                ("kv_b_proj", nh * (model.qk_nope_head_dim + model.v_dim), t, "out")]
    else:
        kv_ways = min(t, model.num_kv_heads)  # KV heads are replicated once tp exceeds them
        attn = [("q_proj", nh * model.head_dim, t, "out"),
                ("k_proj/v_proj", model.num_kv_heads * model.head_dim, kv_ways, "out")]
    out = attn + [("o_proj", nh * model.v_dim, t, "in")]
    s = par.gpus_per_stage
    if model.num_dense_layers and model.intermediate_size:
        w = model.intermediate_size
        out += [("dense MLP gate/up", w, s, "out"), ("dense MLP down", w, s, "in")]
    if model.num_shared_experts:
        w = model.shared_expert_intermediate_size or model.expert_intermediate_size
        out += [("shared expert gate/up", w, s, "out"), ("shared expert down", w, s, "in")]
    if model.is_moe and model.expert_dtype(dtype) == dtype:  # experts kept in a narrower native dtype: not split
        w = model.expert_intermediate_size
        out += [("expert gate/up", w, par.moe_tp, "out"), ("expert down", w, par.moe_tp, "in")]
    return [x for x in out if x[2] > 1]


def block_error(model: ModelSpec, par: ParallelConfig, dtype: str) -> str | None:
    """A per-rank shard width that is not a multiple of the weight-scale block, as the engines check it at load:
    vLLM fp8 `output_size_per_partition % block_n` (column parallel) and `input_size_per_partition % block_k`
    (row parallel) — "Weight output_partition_size = 576 is not divisible by weight quantization block_n = 128",
    "The output_size of gate's and up's weight = 192 is not divisible by weight quantization block_n = 128"
    (vllm model_executor/layers/quantization/fp8.py, utils/fp8_utils.py; SGLang carries the same checks)."""
    block = quant_block(model, dtype)
    if block is None:
        return None
    for weight, width, ways, side in _shards(model, par, dtype):
        b, name = (block[0], "block_n") if side == "out" else (block[1], "block_k")
        if width % ways or (width // ways) % b:
            return (f"{dtype} block quantisation: {weight} width {width} / {ways} = {width / ways:g} per GPU is not a "
                    f"multiple of {name} = {b} (weight_block_size {list(block)}); the engines refuse to load it")
    return None


def validation_error(model: ModelSpec, par: ParallelConfig, scaleup_domain_gpus: int,
                     allow_cross_node_tp: bool = False, dtype: str | None = None) -> str | None:
    """Why `par` cannot run `model` (the engines' divisibility rules; with `dtype`, also its quantisation
    block), or None if it can."""
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
    return block_error(model, par, dtype) if dtype is not None else None


def check_parallel(model: ModelSpec, par: ParallelConfig, scaleup_domain_gpus: int,
                   allow_cross_node_tp: bool = True, dtype: str | None = None) -> None:
    err = validation_error(model, par, scaleup_domain_gpus, allow_cross_node_tp, dtype)
    if err:
        raise PlannerInputError(f"parallel config {par.label()}: {err}")


def parallel_configs(model: ModelSpec, scaleup_domain_gpus: int, max_gpus: int,
                     allow_cross_node_tp: bool = False, dtype: str | None = None) -> list[ParallelConfig]:
    """Every valid (tp, pp, ep, dp) with power-of-two degrees and at most `max_gpus` GPUs, sorted; with
    `dtype`, only shapes whose shards respect that dtype's quantisation block.
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
                    if validation_error(model, par, scaleup_domain_gpus, allow_cross_node_tp, dtype) is None:
                        out.add(par)
    return sorted(out, key=lambda p: (p.gpus, p.pp, p.dp, p.tp, p.ep))
