"""Memory per GPU (weights, activations workspace, KV cache) and the KV-limited max batch
(docs/architecture.md, "Formulas")."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from planner.core.model import ModelSpec, dtype_bytes
from planner.core.parallel import ParallelConfig

if TYPE_CHECKING:
    from hwdb import EngineProfile, GpuSpec

GB = 1e9
# CUDA context, NCCL buffers and CUDA graphs: vLLM reports ~0.5-1.5 GB of non-torch memory per GPU in its
# startup log ("non_torch_memory", "CUDA graph ... took X GiB"); we reserve 1.5 GB (an estimate, not fitted).
RUNTIME_RESERVE_BYTES = 1.5 * GB


@dataclass(frozen=True)
class MemoryBreakdown:
    usable_gb: float  # memory_gb × gpu_memory_utilization
    weights_gb: float
    activations_gb: float
    kv_cache_gb: float  # what is left for KV (negative: does not fit)
    kv_bytes_per_token: float  # per GPU, per token of context
    max_batch: int  # concurrent sequences the instance can hold at the given context (engine cap applied)
    kv_tokens: int  # KV capacity of the instance in tokens

    @property
    def fits(self) -> bool:
        return self.kv_cache_gb > 0 and self.max_batch >= 1


def weight_bytes_per_gpu(model: ModelSpec, par: ParallelConfig, dtype: str) -> float:
    """Weights on the busiest GPU: attention / tp, MLPs and experts / (tp·dp), layers / pp, plus one
    vocab-parallel embedding matrix (both when pp = 1)."""
    layers = math.ceil(model.num_layers / par.pp)
    moe_layers = min(layers, model.num_moe_layers)
    dense_layers = layers - moe_layers
    stage_size = par.gpus_per_stage
    per_layer_attn = (model.attention_params_per_layer + 2 * model.hidden_size) / par.tp
    mlp = dense_layers * model.dense_mlp_params / stage_size
    moe = moe_layers * (model.shared_expert_params + model.router_params * par.ep) / stage_size
    experts = moe_layers * model.num_experts * model.expert_params / stage_size
    embed = embedding_params_per_gpu(model, par)
    return (layers * per_layer_attn + mlp + moe + embed) * dtype_bytes(dtype) \
        + experts * dtype_bytes(model.expert_dtype(dtype))


def embedding_params_per_gpu(model: ModelSpec, par: ParallelConfig) -> float:
    """Vocab-parallel embedding parameters on the busiest GPU: the input embedding and the LM head, vocab / tp
    each; both on one GPU only when pp = 1 (else first and last stage) and untied."""
    return model.vocab_size * model.hidden_size / par.tp * (2 if par.pp == 1 and not model.tied_embeddings else 1)


def kv_bytes_per_token_per_gpu(model: ModelSpec, par: ParallelConfig, kv_dtype: str) -> float:
    """KV of one token on one GPU of its stage: GQA heads split over tp (replicated once tp > kv heads);
    MLA's latent is replicated over tp."""
    share = 1.0 if model.is_mla else max(1.0 / par.tp, 1.0 / model.num_kv_heads)
    return model.kv_bytes_per_token(kv_dtype) * share / par.pp


def activation_bytes(model: ModelSpec, par: ParallelConfig, chunk_tokens: int, max_seqs: int) -> float:
    """Peak activations of a forward over `chunk_tokens` (the engine's profile run) plus fp32 logits of the
    sequences sampled in one step."""
    width = model.intermediate_size or model.expert_intermediate_size * model.experts_per_tok
    per_token = (2 * width / par.gpus_per_stage + 4 * model.hidden_size) * 2
    logits = min(max_seqs, chunk_tokens) * model.vocab_size / par.tp * 4
    return chunk_tokens * per_token / par.dp + logits


def memory_breakdown(model: ModelSpec, gpu: GpuSpec, par: ParallelConfig, *, dtype: str, kv_dtype: str,
                     context_tokens: float, chunk_tokens: int, engine: EngineProfile, extra_weight_bytes: float = 0.0,
                     extra_kv_bytes_per_token: float = 0.0) -> MemoryBreakdown:
    """The engine takes gpu_memory_utilization of the whole GPU (vLLM, SGLang) or of what is left after the
    weights and workspace (TRT-LLM's free_gpu_memory_fraction); weights and workspace come out of it first."""
    max_num_seqs = engine.max_num_seqs
    weights = weight_bytes_per_gpu(model, par, dtype) + extra_weight_bytes  # + a speculative drafter's
    acts = activation_bytes(model, par, chunk_tokens, max_num_seqs) + RUNTIME_RESERVE_BYTES
    total = gpu.memory_gb * GB
    if engine.memory_fraction_of_free:
        usable = weights + acts + max(total - weights - acts, 0.0) * engine.gpu_memory_utilization
    else:
        usable = total * engine.gpu_memory_utilization
    free = usable - weights - acts
    per_token = kv_bytes_per_token_per_gpu(model, par, kv_dtype) + extra_kv_bytes_per_token
    # one sequence's KV at this context (sliding-window layers capped at their window)
    per_seq = model.kv_bytes_per_sequence(context_tokens, kv_dtype) / model.kv_bytes_per_token(kv_dtype) * per_token
    seqs_per_rank = int(free // per_seq) if free > 0 and per_seq > 0 else 0
    seqs = min(seqs_per_rank, max_num_seqs) * par.dp
    kv_tokens = int(free // per_token) * par.dp if free > 0 else 0
    return MemoryBreakdown(usable / GB, weights / GB, acts / GB, free / GB, per_token, seqs, kv_tokens)


def min_gpus_to_hold(model: ModelSpec, gpu: GpuSpec, dtype: str, engine: EngineProfile, context_tokens: float = 4096,
                     max_gpus: int = 1024) -> tuple[int, ParallelConfig] | None:
    """Fewest GPUs of this type (and the config) that hold the weights plus one sequence of KV."""
    from planner.core.parallel import parallel_configs

    for par in parallel_configs(model, gpu.scaleup_domain_gpus, max_gpus, dtype=dtype):
        mem = memory_breakdown(model, gpu, par, dtype=dtype, kv_dtype="bf16", context_tokens=context_tokens,
                               chunk_tokens=engine.default_chunk_tokens, engine=engine)
        if mem.fits:
            return par.gpus, par
    return None
