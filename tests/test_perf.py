"""Specification of the roofline performance model (planner/perf, docs/architecture.md "Formulas").

Two kinds of tests:
- properties (hypothesis) that any physically sensible roofline must satisfy for every bundled model, GPU and
  valid parallel config: which resource bounds an op, monotonicity in the load, in the hardware and in TP;
- model physics with hand-computed values: GEMM / all-reduce formulas, MLA's replicated latent cache, the NIC
  when a collective leaves the scale-up domain, and MoE decode reading only the experts the batch touches.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hwdb
from planner.core.model import bundled_models, dtype_bytes, load_model
from planner.core.parallel import ParallelConfig, parallel_configs
from planner.perf import comm
from planner.perf.memory import kv_bytes_per_token_per_gpu, weight_bytes_per_gpu
from planner.perf.ops import ACT_BYTES, expected_distinct_experts, gemm, op_time
from planner.perf.step import StepShape, stage_ops, step_time

SETTINGS = settings(max_examples=40, deadline=None)
MODELS = sorted(bundled_models())
GPUS = sorted(g.name for g in hwdb.list_gpus())
VLLM = hwdb.load_engine("vllm")
MAX_GPUS = 8


def gpu_and_engine(name: str):
    gpu = hwdb.load_gpu(name)
    return gpu, VLLM.for_gpu(gpu)


@st.composite
def instances(draw, gpus=GPUS, models=MODELS, max_gpus=MAX_GPUS):
    """(model, gpu, engine, parallel config) with a config the engines accept on that GPU's scale-up domain."""
    gpu, engine = gpu_and_engine(draw(st.sampled_from(gpus)))
    model = load_model(draw(st.sampled_from(models)))
    par = draw(st.sampled_from(parallel_configs(model, gpu.scaleup_domain_gpus, max_gpus)))
    return model, gpu, engine, par


def ops_by_name(step) -> dict:
    return {(o.name, o.kind): o for o in step.ops}


# ---- which resource bounds an op --------------------------------------------------------------------------

@SETTINGS
@given(inst=instances(), dtype=st.sampled_from(["bf16", "fp8", "fp4", "int4"]),
       context=st.integers(1, 131072))
def test_decode_at_batch_one_runs_every_gemm_memory_or_latency_bound(inst, dtype, context):
    """One token per step multiplies a 1-row matrix by every weight: intensity ~1 FLOP/byte, far below the ridge
    of any accelerator, so each GEMM (and the grouped MoE GEMM) is bound by HBM bytes or the kernel latency."""
    model, gpu, engine, par = inst
    step = step_time(model, gpu, par, StepShape(decode_seqs=1, decode_context=context), engine=engine,
                     dtype=dtype)
    gemms = [o for o in step.ops if o.kind in ("gemm", "moe")]
    assert gemms
    for o in gemms:
        assert o.bound in ("memory", "latency"), (o.name, o.bound)


PROJECTIONS = ("attn_qkv_proj", "attn_o_proj", "mlp_gate_up", "mlp_down", "moe_shared_expert")


PREFILL_DOMAIN = {"a100_80g": ("bf16", "fp8"), "h100_sxm": ("bf16", "fp8"), "h200_sxm": ("bf16", "fp8"),
                  "mi300x": ("bf16", "fp8"), "b200_sxm": ("bf16",), "l40s": ("bf16",)}


def test_a_large_prefill_runs_its_projection_and_mlp_gemms_compute_bound():
    """8192+ prompt tokens reuse each weight 8192 times: the projection and MLP GEMMs sit far right of the ridge.
    Checked exhaustively over every bundled model and valid config of up to 8 GPUs.

    Not covered, by construction: lm_head (prefill samples one row per prompt) and the MoE router (n = number of
    experts) are skinny GEMMs; routed experts see only tokens·k/E rows each. fp8 is left out where its peak moves
    the ridge past a TP-sliced o_proj's activation traffic (Blackwell, L40S, H100-PCIe at TP8), where
    memory-bound is the physically right answer."""
    checked = 0
    for gpu_name, dtypes in PREFILL_DOMAIN.items():
        gpu, engine = gpu_and_engine(gpu_name)
        for name in MODELS:
            model = load_model(name)
            for par in parallel_configs(model, gpu.scaleup_domain_gpus, MAX_GPUS):
                for dtype in dtypes:
                    for prompt in (8192, 16384):
                        step = step_time(model, gpu, par, StepShape(prefill_tokens=prompt, prefill_seq_len=prompt),
                                         engine=engine, dtype=dtype)
                        ops = [o for o in step.ops if o.name in PROJECTIONS]
                        assert {"attn_qkv_proj", "attn_o_proj"} <= {o.name for o in ops}
                        for o in ops:
                            assert o.bound == "compute", (gpu_name, name, par, dtype, prompt, o.name, o.bound)
                        checked += 1
    assert checked > 1000


# ---- more hardware never hurts ----------------------------------------------------------------------------

SHAPES = st.one_of(
    st.builds(lambda b, c: StepShape(decode_seqs=b, decode_context=c), st.integers(1, 1024), st.integers(1, 65536)),
    st.builds(lambda n: StepShape(prefill_tokens=n, prefill_seq_len=n), st.integers(1, 16384)),
    st.builds(lambda b, c, n: StepShape(b, c, n, max(n, 1)), st.integers(1, 512), st.integers(1, 32768),
              st.integers(1, 8192)),
)


def faster(gpu, bw: float, flops: float):
    return dataclasses.replace(gpu, mem_bw_gbps=gpu.mem_bw_gbps * bw,
                               peak_tflops={k: v * flops for k, v in gpu.peak_tflops.items()})


@SETTINGS
@given(inst=instances(), shape=SHAPES, bw=st.floats(1.0, 8.0), flops=st.floats(1.0, 8.0),
       dtype=st.sampled_from(["bf16", "fp8"]))
def test_more_bandwidth_or_flops_never_slows_an_op_or_a_step(inst, shape, bw, flops, dtype):
    model, gpu, engine, par = inst
    base = step_time(model, gpu, par, shape, engine=engine, dtype=dtype)
    for better in (faster(gpu, bw, 1.0), faster(gpu, 1.0, flops), faster(gpu, bw, flops)):
        quick = step_time(model, better, par, shape, engine=engine, dtype=dtype)
        assert quick.time_s <= base.time_s * (1 + 1e-12)
        slow_ops = ops_by_name(base)
        for key, op in ops_by_name(quick).items():
            assert op.time_s <= slow_ops[key].time_s * (1 + 1e-12), key


@SETTINGS
@given(inst=instances(), shape=SHAPES, gain=st.floats(1.0, 3.0))
def test_higher_hwdb_efficiencies_never_slow_a_step(inst, shape, gain):
    """The calibration path (hwdb.with_efficiency) moves the same knobs: a better memory / GEMM / attention
    efficiency, or a smaller kernel latency, can only shorten a step."""
    model, gpu, engine, par = inst
    eff = gpu.efficiency
    better = hwdb.with_efficiency(gpu, memory=min(1.0, eff.memory * gain),
                                  gemm={k: min(1.0, v * gain) for k, v in eff.gemm.items()},
                                  attention=min(1.0, eff.attention * gain),
                                  kernel_launch_us=eff.kernel_launch_us / gain)
    slow = step_time(model, gpu, par, shape, engine=engine)
    quick = step_time(model, better, par, shape, engine=engine)
    assert quick.time_s <= slow.time_s * (1 + 1e-12)


# ---- monotone in the load -----------------------------------------------------------------------------------

@SETTINGS
@given(inst=instances(), dtype=st.sampled_from(["bf16", "fp8"]),
       batch=st.one_of(st.integers(1, 16), st.floats(1, 2048)), more=st.floats(0, 2048),
       context=st.one_of(st.integers(1, 256), st.floats(1, 131072)), longer=st.floats(0, 131072))
def test_step_time_never_falls_when_batch_or_context_grows(inst, dtype, batch, more, context, longer):
    """Checked along a ladder from the drawn point: +1, ×2 and +more sequences; +1, ×2 and +longer tokens."""
    model, gpu, engine, par = inst

    def t(b, c):
        return step_time(model, gpu, par, StepShape(decode_seqs=b, decode_context=c), engine=engine,
                         dtype=dtype).time_s

    for ladder in ([(b, context) for b in sorted({batch, batch + 1, 2 * batch, batch + more})],
                   [(batch, c) for c in sorted({context, context + 1, 2 * context, context + longer})]):
        times = [t(b, c) for b, c in ladder]
        for (point, lower), higher in zip(zip(ladder, times), times[1:]):
            assert higher >= lower * (1 - 1e-12), (point, lower, higher)


# ---- TP and memory ------------------------------------------------------------------------------------------

@st.composite
def tp_pairs(draw):
    """A model and two valid configs that differ only in tp (experts either tp-sliced, ep=1, or ep=tp)."""
    model = load_model(draw(st.sampled_from(MODELS)))
    expert_parallel = draw(st.booleans()) and model.is_moe
    configs = [p for p in parallel_configs(model, 8, 8) if p.pp == 1 and p.dp == 1
               and p.ep == (p.tp if expert_parallel else 1)]
    small, large = sorted(draw(st.lists(st.sampled_from(configs), min_size=2, max_size=2)), key=lambda p: p.tp)
    return model, small, large


@SETTINGS
@given(pair=tp_pairs(), dtype=st.sampled_from(["bf16", "fp8", "int4"]))
def test_more_tp_never_increases_weight_bytes_per_gpu(pair, dtype):
    model, small, large = pair
    assert weight_bytes_per_gpu(model, large, dtype) <= weight_bytes_per_gpu(model, small, dtype)


@SETTINGS
@given(pair=tp_pairs(), kv_dtype=st.sampled_from(["bf16", "fp8"]))
def test_more_tp_never_increases_kv_bytes_per_token_per_gpu(pair, kv_dtype):
    model, small, large = pair
    assert kv_bytes_per_token_per_gpu(model, large, kv_dtype) <= kv_bytes_per_token_per_gpu(model, small, kv_dtype)


def test_weights_per_gpu_split_over_tp_and_pp():
    """Llama-3.1-70B bf16: ~141 GB of weights; TP4 holds a quarter per GPU, TP4·PP2 an eighth (±2 %: norms,
    and the embedding / LM head that PP stages do not split evenly)."""
    m = load_model("llama-3.1-70b")
    total = m.weight_bytes("bf16")
    assert weight_bytes_per_gpu(m, ParallelConfig(1), "bf16") == pytest.approx(total, rel=0.001)
    assert weight_bytes_per_gpu(m, ParallelConfig(4), "bf16") == pytest.approx(total / 4, rel=0.02)
    assert weight_bytes_per_gpu(m, ParallelConfig(4, 2), "bf16") == pytest.approx(total / 8, rel=0.02)


# ---- formulas -----------------------------------------------------------------------------------------------

def test_gemm_op_is_2mnk_flops_and_weights_plus_activations_bytes():
    g = hwdb.load_gpu("h100_sxm")
    op = gemm("x", 16, 8192, 4096, "fp8", g)
    assert op.flops == 2 * 16 * 8192 * 4096
    assert op.bytes == 8192 * 4096 * 1 + (16 * 4096 + 16 * 8192) * ACT_BYTES
    assert op.dtype == "fp8"  # Hopper has native fp8 tensor cores
    assert gemm("x", 16, 8192, 4096, "fp8", hwdb.load_gpu("a100_80g")).dtype == "bf16"  # weight-only on Ampere


def test_op_time_is_the_roofline_max_plus_kernel_latency():
    g = hwdb.load_gpu("h100_sxm")
    eff = g.efficiency
    small = gemm("decode", 1, 8192, 8192, "bf16", g)
    t_mem = small.bytes / (g.mem_bw_gbps * 1e9 * eff.memory)
    assert op_time(small, g).time_s == pytest.approx(t_mem + eff.kernel_launch_us * 1e-6, rel=1e-12)
    assert op_time(small, g).bound == "memory"
    big = gemm("prefill", 8192, 8192, 8192, "bf16", g, count=3)
    t_cmp = big.flops / (g.peak_flops("bf16") * g.gemm_efficiency("bf16"))
    t = op_time(big, g)
    assert t.bound == "compute"
    assert t.time_s == pytest.approx(3 * (t_cmp + eff.kernel_launch_us * 1e-6), rel=1e-12)
    assert t.flops == 3 * big.flops


# ---- MLA ----------------------------------------------------------------------------------------------------

def test_mla_latent_kv_is_replicated_not_split_by_tp():
    """DeepSeek's cache is one shared latent per token and layer: every TP rank holds all of it, whereas GQA
    splits KV heads over TP (and replicates once TP exceeds the KV heads)."""
    ds = load_model("deepseek-v3")
    full = ds.kv_bytes_per_token("bf16")
    assert full == 61 * (512 + 64) * 2
    for tp in (1, 2, 4, 8):
        assert kv_bytes_per_token_per_gpu(ds, ParallelConfig(tp, ep=tp), "bf16") == full
    llama = load_model("llama-3.1-70b")  # 8 KV heads
    assert kv_bytes_per_token_per_gpu(llama, ParallelConfig(8), "bf16") == llama.kv_bytes_per_token("bf16") / 8
    qwen = load_model("qwen3-30b-a3b")  # 4 KV heads: TP8 keeps a full head per rank
    assert kv_bytes_per_token_per_gpu(qwen, ParallelConfig(8), "bf16") == qwen.kv_bytes_per_token("bf16") / 4


def test_mla_decode_attention_reads_the_same_latent_bytes_per_gpu_at_any_tp():
    ds = load_model("deepseek-v3")
    g = hwdb.load_gpu("h200_sxm")
    shape = StepShape(decode_seqs=64, decode_context=8000)

    def kv_read(tp):
        attn = next(o for o in stage_ops(ds, g, ParallelConfig(tp, ep=tp), shape, "fp8", "bf16")
                    if o.name == "attn_decode")
        return attn.bytes

    # the KV part (64 seqs · 8000 keys · 576 elements · 2 B per layer) dominates; query traffic shrinks with tp
    latent = 61 * 64 * 8000 * 576 * 2
    assert kv_read(8) == pytest.approx(latent, rel=0.01)
    assert kv_read(1) == pytest.approx(latent, rel=0.05)


# ---- collectives --------------------------------------------------------------------------------------------

def test_allreduce_matches_the_one_shot_and_ring_formulas_inside_the_node():
    g = hwdb.load_gpu("h100_sxm")
    bw = g.scaleup_bw_gbps * 1e9 * g.efficiency.scaleup
    lat = g.efficiency.scaleup_latency_us * 1e-6
    for n, size in ((2, 4096), (8, 4096), (8, 64e6)):
        one_shot = 2 * lat + (n - 1) * size / bw
        ring = 2 * (n - 1) * (lat + size / (n * bw))
        assert comm.allreduce("ar", size, n, g).time_s == pytest.approx(min(one_shot, ring), rel=1e-12)
    assert comm.allreduce("ar", 1e6, 1, g).time_s == 0.0  # TP1 has nothing to reduce


def test_allreduce_beyond_the_scaleup_domain_uses_the_nic_and_is_slower():
    g = hwdb.load_gpu("h100_sxm")  # 8 GPUs per NVLink domain
    assert g.scaleup_domain_gpus == 8
    size, n = 32e6, 16
    nic_bw = g.scaleout_bw_gbps * 1e9 * g.efficiency.scaleout
    nic_lat = g.efficiency.scaleout_latency_us * 1e-6
    expect = min(2 * nic_lat + (n - 1) * size / nic_bw, 2 * (n - 1) * (nic_lat + size / (n * nic_bw)))
    across = comm.allreduce("ar", size, n, g)
    assert across.time_s == pytest.approx(expect, rel=1e-12)
    nvl72 = dataclasses.replace(g, scaleup_domain_gpus=72)  # same GPU, a 16-GPU group now stays on NVLink
    assert across.time_s > 3 * comm.allreduce("ar", size, n, nvl72).time_s
    assert across.time_s > comm.allreduce("ar", size, 8, g).time_s


def test_tp16_step_pays_the_nic_for_its_allreduces():
    m = load_model("llama-3.1-405b")
    g, engine = gpu_and_engine("h100_sxm")
    shape = StepShape(decode_seqs=64, decode_context=4096)
    par = ParallelConfig(16)
    node = step_time(m, g, par, shape, engine=engine)
    rack = step_time(m, dataclasses.replace(g, scaleup_domain_gpus=16), par, shape, engine=engine)
    ar = lambda s: sum(o.time_s for o in s.ops if o.kind == "allreduce")  # noqa: E731
    assert ar(node) > 2 * ar(rack)
    assert node.time_s > rack.time_s


# ---- MoE ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("experts,k,tokens,distinct", [
    (256, 8, 1, 8.0), (8, 2, 1, 2.0), (128, 8, 0, 0.0), (256, 8, 2, 256 * (1 - (1 - 8 / 256) ** 2)),
    (8, 2, 10_000, 8.0),
])
def test_expected_distinct_experts(experts, k, tokens, distinct):
    assert expected_distinct_experts(experts, k, tokens) == pytest.approx(distinct, rel=1e-12, abs=1e-12)


@SETTINGS
@given(experts=st.sampled_from([8, 16, 32, 64, 128, 256]), k=st.integers(1, 8), tokens=st.integers(1, 100_000))
def test_distinct_experts_lie_between_k_and_min_of_all_and_k_per_token(experts, k, tokens):
    k = min(k, experts)
    d = expected_distinct_experts(experts, k, tokens)
    assert k * (1 - 1e-12) <= d <= min(experts, k * tokens) * (1 + 1e-12)
    assert expected_distinct_experts(experts, k, tokens + 1) >= d


def test_moe_decode_reads_only_the_experts_the_batch_touches():
    """DeepSeek-V3 at batch 1, TP8 without EP: 8 of 256 routed experts (each TP-sliced 8 ways) are read per MoE
    layer, not all 256; at a 4096-token step practically all are."""
    ds = load_model("deepseek-v3")
    g = hwdb.load_gpu("h200_sxm")
    par = ParallelConfig(8)
    w = ds.expert_intermediate_size // 8
    per_expert = 3 * ds.hidden_size * w * dtype_bytes("fp8")

    def moe_op(tokens):
        return next(o for o in stage_ops(ds, g, par, StepShape(decode_seqs=tokens, decode_context=1000), "fp8",
                                         "bf16") if o.name == "moe_experts")

    one = moe_op(1)
    acts = 4 * 8 * ds.hidden_size * ACT_BYTES
    assert one.bytes == pytest.approx(ds.num_moe_layers * (8 * per_expert + acts), rel=1e-9)
    full = moe_op(4096)
    assert full.bytes >= ds.num_moe_layers * 255 * per_expert
    assert full.bytes / one.bytes > 25
