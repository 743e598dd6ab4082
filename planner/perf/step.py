"""One engine iteration (prefill, decode or mixed chunked-prefill step) of one instance, op by op.

The ops of one pipeline stage run on each of its GPUs; a token crosses all pp stages, so an iteration of the
whole batch takes pp stage passes of a 1/pp micro-batch (PP lowers memory per GPU, it does not cut TPOT).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from planner.core.model import ModelSpec
from planner.core.parallel import ParallelConfig
from planner.perf import comm
from planner.perf.ops import (
    ACT_BYTES,
    Bound,
    Op,
    OpTime,
    TimedKind,
    attention,
    elementwise,
    expected_distinct_experts,
    gemm,
    grouped_moe,
    op_time,
)

if TYPE_CHECKING:
    from hwdb import EngineProfile, GpuSpec

ELEMENTWISE_PASSES_PER_LAYER = 10  # 2 RMSNorms (read+write), 2 residual adds, activation, rotary


@dataclass(frozen=True)
class StepShape:
    """The work of one iteration, for the whole instance."""
    decode_seqs: float = 0.0  # sequences generating one token
    decode_context: float = 0.0  # mean tokens already in those sequences' KV cache
    prefill_tokens: float = 0.0  # prompt tokens processed in this iteration
    prefill_seq_len: float = 0.0  # length of the prompts those tokens belong to (causal attention cost)
    decode_tokens_per_seq: float = 1.0  # positions each decoding sequence runs (k + 1 in a speculative verify)

    @property
    def tokens(self) -> float:
        return self.decode_seqs * self.decode_tokens_per_seq + self.prefill_tokens


@dataclass(frozen=True)
class StepTime:
    time_s: float  # wall time of the iteration
    gpu_s: float  # kernels + collectives
    overhead_s: float  # engine CPU / scheduling time
    stage_ops: tuple[OpTime, ...]  # ops of one pipeline stage for one micro-batch
    pp: int = 1

    @property
    def ops(self) -> tuple[OpTime, ...]:
        """Per-op totals over the iteration (all layers and pp stage passes), ops of the same name merged."""
        totals: dict[tuple[str, TimedKind], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])  # time, flops, bytes
        bounds: dict[tuple[str, TimedKind], Bound] = {}  # the last op's
        for o in self.stage_ops:
            t = totals[(o.name, o.kind)]
            t[0] += o.time_s * self.pp
            t[1] += o.flops * self.pp
            t[2] += o.bytes * self.pp
            bounds[(o.name, o.kind)] = o.bound
        return tuple(OpTime(n, k, t[0], bounds[n, k], t[1], t[2]) for (n, k), t in totals.items() if t[0] > 0)


def moe_imbalance(tokens: float, top_k: int, ep: int) -> float:
    """Expected max/mean token-expert pairs over ep ranks under uniform routing: the busiest rank's count is
    ≈ mean + sqrt(2·ln ep · mean) (Gaussian tail of the multinomial). Skewed routing multiplies this."""
    mean = tokens * top_k / ep
    if ep <= 1 or mean <= 0:
        return 1.0
    return 1.0 + math.sqrt(2.0 * math.log(ep) / mean)


def stage_ops(model: ModelSpec, gpu: GpuSpec, par: ParallelConfig, shape: StepShape, dtype: str, kv_dtype: str,
              skew: float = 1.0, latency_exposed: float = 1.0) -> list[OpTime]:
    """Ops of one pipeline stage for `shape` (already the micro-batch), timed on one GPU of the stage."""
    def timed(op: Op) -> OpTime:
        return op_time(op, gpu, latency_exposed)

    h = model.hidden_size
    layers = math.ceil(model.num_layers / par.pp)
    moe_layers = min(layers, model.num_moe_layers)
    dense_layers = layers - moe_layers
    t_rank = shape.tokens / par.dp  # tokens through one attention-DP rank
    out: list[OpTime] = []

    # attention projections: o_proj separately, everything else (qkv / MLA down+up projections) as one GEMM
    o_params = model.num_heads * model.v_dim * h
    in_params = model.attention_params_per_layer - o_params
    out.append(timed(gemm("attn_qkv_proj", t_rank, in_params / h / par.tp, h, dtype, gpu, layers)))
    out.append(timed(gemm("attn_o_proj", t_rank, h, o_params / h / par.tp, dtype, gpu, layers)))

    q_heads = model.num_heads / par.tp
    kv_elems: float
    kv_heads: float
    if model.is_mla:  # absorbed MLA: scores and values in the shared latent space, cache not split by tp
        kv_elems, kv_heads = model.kv_lora_rank + model.qk_rope_head_dim, 1
        dec_qk, dec_v = model.kv_lora_rank + model.qk_rope_head_dim, model.kv_lora_rank
        pre_qk, pre_v = model.qk_dim, model.v_dim
    else:
        kv_heads = max(1.0, model.num_kv_heads / par.tp)
        kv_elems = 2 * kv_heads * model.head_dim
        dec_qk = pre_qk = model.head_dim
        dec_v = pre_v = model.v_dim
    full_layers = layers * model.num_full_attention_layers / model.num_layers
    sliding_layers = layers - full_layers
    if shape.decode_seqs:
        seqs = shape.decode_seqs / par.dp
        for label, n, ctx in (("attn_decode", full_layers, shape.decode_context),
                              ("attn_decode_sliding", sliding_layers,
                               min(shape.decode_context, model.sliding_window))):
            if n:
                # verify positions of one sequence share its KV read: packed into the query heads
                out.append(timed(attention(label, seqs, ctx, seqs, q_heads * shape.decode_tokens_per_seq,
                                             kv_heads, dec_qk, dec_v, kv_elems, kv_dtype, n)))
    if shape.prefill_tokens:
        q = shape.prefill_tokens / par.dp
        seqs = max(q / max(shape.prefill_seq_len, 1.0), 1.0)
        for label, n, keys in (("attn_prefill", full_layers, shape.prefill_seq_len / 2),
                               ("attn_prefill_sliding", sliding_layers,
                                min(shape.prefill_seq_len / 2, model.sliding_window))):
            if n:
                out.append(timed(attention(label, q, keys, seqs, q_heads, kv_heads, pre_qk, pre_v,
                                             kv_elems, kv_dtype, n)))
    out.append(comm.allreduce("tp_allreduce_attn", t_rank * h * ACT_BYTES, par.tp, gpu, layers))

    # dense MLP layers (all layers of a dense model; the first k of DeepSeek)
    if dense_layers:
        t_mlp = shape.tokens  # with attention-DP the dense MLP runs over all ranks' tokens, split tp·dp ways
        w = model.intermediate_size / par.gpus_per_stage
        out.append(timed(gemm("mlp_gate_up", t_mlp, 2 * w, h, dtype, gpu, dense_layers)))
        out.append(timed(gemm("mlp_down", t_mlp, h, w, dtype, gpu, dense_layers)))
        out.append(comm.allreduce("tp_allreduce_mlp", t_mlp * h * ACT_BYTES / par.dp, par.gpus_per_stage, gpu,
                                  dense_layers))

    if moe_layers:
        n_tok = shape.tokens
        out.append(timed(gemm("moe_router", t_rank, model.num_experts, h, "bf16", gpu, moe_layers)))
        if model.num_shared_experts:
            sw = (model.shared_expert_intermediate_size or model.expert_intermediate_size) \
                * model.num_shared_experts / par.tp
            out.append(timed(gemm("moe_shared_expert", t_rank, 3 * sw, h, dtype, gpu, moe_layers)))
        imb = moe_imbalance(n_tok, model.experts_per_tok, par.ep) * skew
        touched = expected_distinct_experts(model.num_experts, model.experts_per_tok, n_tok) / par.ep
        out.append(timed(grouped_moe("moe_experts", n_tok * model.experts_per_tok / par.ep,
                                       model.num_experts / par.ep, touched, h,
                                       model.expert_intermediate_size // par.moe_tp, model.expert_dtype(dtype), gpu, imb,
                                       moe_layers)))
        if par.ep > 1:  # dispatch + combine of each token's hidden state to its k experts' ranks
            per_gpu = n_tok / par.gpus_per_stage * model.experts_per_tok * h * ACT_BYTES
            out.append(comm.alltoall("ep_alltoall", per_gpu, par.ep, gpu, 2 * moe_layers))
        if par.moe_tp > 1:
            out.append(comm.allreduce("tp_allreduce_moe", n_tok * h * ACT_BYTES / par.dp, par.moe_tp, gpu,
                                      moe_layers))

    out.append(timed(elementwise("norms_residual_rotary", t_rank, h, ELEMENTWISE_PASSES_PER_LAYER, layers)))
    return out


def lm_head(model: ModelSpec, gpu: GpuSpec, par: ParallelConfig, sampled: float, dtype: str,
            latency_exposed: float) -> OpTime:
    """Logits for the sequences that sample a token this step (vocab split over tp)."""
    return op_time(gemm("lm_head", sampled / par.dp, model.vocab_size / par.tp, model.hidden_size, dtype, gpu), gpu,
                   latency_exposed)


def step_time(model: ModelSpec, gpu: GpuSpec, par: ParallelConfig, shape: StepShape, *, engine: EngineProfile,
              dtype: str = "bf16", kv_dtype: str = "bf16", skew: float = 1.0) -> StepTime:
    """Wall time of one iteration of the whole instance (all pp stages) plus the engine's overhead."""
    micro = StepShape(shape.decode_seqs / par.pp, shape.decode_context, shape.prefill_tokens / par.pp,
                      shape.prefill_seq_len, shape.decode_tokens_per_seq)
    sampled = micro.decode_seqs * micro.decode_tokens_per_seq + (micro.prefill_tokens / shape.prefill_seq_len
                                                                 if shape.prefill_seq_len else 0)
    exposed = engine.kernel_latency_exposed
    ops = stage_ops(model, gpu, par, micro, dtype, kv_dtype, skew, exposed) + [
        lm_head(model, gpu, par, sampled, dtype, exposed)]
    if par.pp > 1:  # activations cross pp−1 stage boundaries; a boundary at a node edge uses the NIC
        crosses = par.gpus > gpu.scaleup_domain_gpus
        ops.append(comm.p2p("pp_send", micro.tokens * model.hidden_size * ACT_BYTES / par.dp, crosses, gpu,
                            (par.pp - 1) / par.pp))
    gpu_s = sum(o.time_s for o in ops) * par.pp
    seqs = (shape.decode_seqs + (shape.prefill_tokens / shape.prefill_seq_len if shape.prefill_seq_len else 0)) \
        / par.dp
    overhead = engine.step_overhead_ms * 1e-3 + engine.per_seq_overhead_us * 1e-6 * seqs
    return StepTime(gpu_s + overhead, gpu_s, overhead, tuple(ops), par.pp)
