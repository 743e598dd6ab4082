"""Per-op roofline on one GPU: FLOPs and HBM bytes of each op, and its time on a GpuSpec.

t = max(flops / (peak(dtype) · eff_compute), bytes / (mem_bw · eff_mem)) + latency
(docs/architecture.md, "Formulas")
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from planner.core.model import dtype_bytes

if TYPE_CHECKING:
    from hwdb import GpuSpec

ACT_BYTES = 2.0  # activations are bf16/fp16 in every engine we model

OpKind = Literal["gemm", "moe", "attention", "elementwise"]
TimedKind = Literal["gemm", "moe", "attention", "elementwise", "allreduce", "alltoall", "p2p"]  # + collectives
Bound = Literal["compute", "memory", "link", "latency"]


@dataclass(frozen=True)
class Op:
    name: str
    kind: OpKind
    flops: float
    bytes: float
    dtype: str = "bf16"  # compute dtype (gemm / moe)
    count: float = 1.0  # how many times it runs per step (layers on this GPU)
    rows_per_matrix: float = 0.0  # moe: tokens each expert's GEMM multiplies (its M dimension)


@dataclass(frozen=True)
class OpTime:
    name: str
    kind: TimedKind
    time_s: float  # all `count` runs together
    bound: Bound
    flops: float = 0.0
    bytes: float = 0.0


def compute_dtype(weight_dtype: str, gpu: GpuSpec) -> str:
    """The math a GEMM runs in: fp8 / fp4 weights use native tensor cores where the part has them; otherwise
    they are dequantised and multiplied in bf16 (weight-only kernels: Marlin / W4A16 / W8A16). int4 (AWQ, GPTQ)
    is weight-only everywhere."""
    for d in {"fp4": ("fp4", "bf16"), "fp8": ("fp8", "bf16"), "int8": ("int8", "bf16")}.get(weight_dtype, ("bf16",)):
        if d in gpu.peak_tflops:
            return d
    return "fp16" if "bf16" not in gpu.peak_tflops else "bf16"


def gemm(name: str, m: float, n: float, k: float, weight_dtype: str, gpu: GpuSpec, count: float = 1.0) -> Op:
    """Y[m,n] = X[m,k] · W[k,n]: 2mnk FLOPs; bytes = weights + activations in and out."""
    wb = n * k * dtype_bytes(weight_dtype)
    return Op(name, "gemm", 2.0 * m * n * k, wb + (m * k + m * n) * ACT_BYTES, compute_dtype(weight_dtype, gpu),
              count)


def grouped_moe(name: str, tokens: float, experts_local: float, experts_touched: float, hidden: int,
                width: int, weight_dtype: str, gpu: GpuSpec, imbalance: float, count: float) -> Op:
    """Routed experts on one EP rank: `tokens` token-expert pairs land here (×imbalance on the busiest rank);
    only the weights of the experts the batch touches are read (docs/architecture.md, "Formulas": MoE)."""
    per_expert_params = 3 * hidden * width
    touched = min(experts_local, experts_touched * imbalance)
    flops = 2.0 * tokens * imbalance * per_expert_params
    byts = touched * per_expert_params * dtype_bytes(weight_dtype) + 4 * tokens * imbalance * hidden * ACT_BYTES
    rows = tokens * imbalance / touched if touched > 0 else 0.0
    return Op(name, "moe", flops, byts, compute_dtype(weight_dtype, gpu), count, rows)


def expected_distinct_experts(num_experts: int, top_k: int, tokens: float) -> float:
    """E·(1 − (1 − k/E)^tokens): experts a batch of tokens touches under uniform routing."""
    if tokens <= 0:
        return 0.0
    untouched: float = (1.0 - top_k / num_experts) ** tokens  # base in [0, 1]: never complex
    return num_experts * (1.0 - untouched)


def attention(name: str, q_tokens: float, mean_keys: float, sequences: float, q_heads: float,
              kv_heads: float, qk_dim: int, v_dim: int, kv_elems_per_token: float, kv_dtype: str,
              count: float) -> Op:
    """Flash attention on one GPU: QK^T and PV over `mean_keys` keys per query (causal prefill of length L:
    L/2; decode at context c: c). Reads each sequence's KV once and writes the new tokens' KV."""
    flops = 2.0 * q_tokens * mean_keys * q_heads * (qk_dim + v_dim)
    kv_read_tokens = sequences * mean_keys if q_tokens <= sequences else sequences * 2 * mean_keys
    byts = (kv_read_tokens + q_tokens) * kv_elems_per_token * dtype_bytes(kv_dtype) \
        + q_tokens * q_heads * (qk_dim + v_dim) * ACT_BYTES
    return Op(name, "attention", flops, byts, "bf16", count)


def elementwise(name: str, tokens: float, hidden: int, passes: float, count: float) -> Op:
    """Norms, residual adds, activation, rotary: memory-bound passes over tokens × hidden."""
    return Op(name, "elementwise", 0.0, passes * tokens * hidden * ACT_BYTES, "bf16", count)


MMA_TILE_ROWS = 64  # M of one Hopper warpgroup MMA (wgmma m64nNk16): the smallest row block a GEMM tile computes


def grouped_gemm_efficiency(rows: float, half_rows: float) -> float:
    """Share of dense GEMM efficiency a grouped (per-expert) GEMM keeps with `rows` tokens per expert:
    (m + M_tile) / (m + M_tile + m½). Few rows per expert leave tiles partly empty and pay the grouped kernel's
    per-expert scheduling; m½ (fitted, hwdb `grouped_gemm_half_tokens`) sets how fast that fades. At m → 0 the
    penalty is bounded by one tile, so a one-token expert GEMM stays memory bound, as GEMV-style kernels are."""
    return (rows + MMA_TILE_ROWS) / (rows + MMA_TILE_ROWS + half_rows)


@lru_cache(maxsize=4096)
def gemm_flops_per_s(gpu: GpuSpec, dtype: str) -> float:
    """Achievable GEMM FLOP/s: dense peak of the dtype (with hwdb's fallback chain) × its efficiency."""
    return gpu.peak_flops(dtype) * gpu.gemm_efficiency(dtype)


def op_time(op: Op, gpu: GpuSpec, latency_exposed: float = 1.0) -> OpTime:
    """Roofline time of `op` on `gpu` with the hwdb efficiencies, plus the part of the kernel's fixed latency
    (measured in isolation) that is not hidden by CUDA graphs / dependent-launch overlap in an engine."""
    eff = gpu.efficiency
    if op.kind == "attention":
        peak = gpu.peak_flops("bf16") * eff.attention
        latency = eff.attention_latency_us * 1e-6 * latency_exposed
    else:
        peak = gemm_flops_per_s(gpu, op.dtype)
        latency = eff.kernel_launch_us * 1e-6 * latency_exposed
        if op.kind == "moe":
            peak *= grouped_gemm_efficiency(op.rows_per_matrix, eff.grouped_gemm_half_tokens)
    t_compute = op.flops / peak
    t_memory = op.bytes / (gpu.mem_bw_gbps * 1e9 * eff.memory)
    body = max(t_compute, t_memory)
    bound: Bound = "compute" if t_compute >= t_memory else "memory"
    if latency > body:
        bound = "latency"
    return OpTime(op.name, op.kind, (body + latency) * op.count, bound, op.flops * op.count, op.bytes * op.count)
