"""Specification of one instance's latency / throughput estimate (planner/capacity/estimate.py, docs/architecture.md "Formulas").

Bounds every estimate must respect (the NanoFlow compute ceiling), how memory limits it (does not fit, KV-limited
max batch, fp8 KV), and the consistency of its closed-loop and open-loop forms.
"""

from __future__ import annotations

import pytest

import hwdb
from planner.capacity import estimate
from planner.capacity.estimate import Setup
from planner.core.errors import InfeasibleError, PlannerInputError
from planner.core.model import load_model
from planner.core.parallel import ParallelConfig
from planner.perf.ops import compute_dtype
from planner.perf.step import StepShape


def make_setup(model: str, gpu: str, par: ParallelConfig = ParallelConfig(), dtype: str = "bf16",
               kv_dtype: str = "bf16", engine: str = "vllm") -> Setup:
    g = hwdb.load_gpu(gpu)
    return Setup(load_model(model), g, par, hwdb.load_engine(engine).for_gpu(g), dtype, kv_dtype)


# ---- NanoFlow ceiling -----------------------------------------------------------------------------------------

def nanoflow_ceiling(setup: Setup) -> float:
    """Output tokens/s per GPU if every GEMM ran at the GPU's peak · GEMM efficiency for its math dtype and nothing
    else took time: peak·eff / (2 · active params). A model with experts in another dtype (gpt-oss MXFP4) gets
    the faster of its two dtypes, so the bound stays a bound."""
    g, m = setup.gpu, setup.model
    dtypes = {compute_dtype(setup.dtype, g)}
    if m.expert_weight_dtype:
        dtypes.add(compute_dtype(m.expert_weight_dtype, g))
    return max(g.peak_flops(d) * g.gemm_efficiency(d) for d in dtypes) / (2 * m.active_params)


CEILING_CASES = [
    ("llama-3.1-8b", "h100_sxm", ParallelConfig(1), "bf16"),
    ("llama-3.1-8b", "a100_80g", ParallelConfig(1), "bf16"),
    ("llama-3.1-8b", "b200_sxm", ParallelConfig(1), "fp8"),
    ("qwen3-8b", "l40s", ParallelConfig(1), "bf16"),
    ("llama-3.1-70b", "h100_sxm", ParallelConfig(4), "bf16"),
    ("llama-3.1-70b", "h200_sxm", ParallelConfig(8), "fp8"),
    ("llama-3.1-405b", "h200_sxm", ParallelConfig(8), "fp8"),
    ("qwen3-30b-a3b", "h100_sxm", ParallelConfig(1), "bf16"),
    ("mixtral-8x7b", "h100_sxm", ParallelConfig(2), "bf16"),
    ("gpt-oss-120b", "b200_sxm", ParallelConfig(1), "bf16"),
    ("qwen3-235b-a22b", "b200_sxm", ParallelConfig(8, ep=8), "fp8"),
    ("deepseek-v3", "h200_sxm", ParallelConfig(8, ep=8), "fp8"),
]


@pytest.mark.parametrize("model,gpu,par,dtype", CEILING_CASES, ids=lambda v: str(v) if isinstance(v, str) else
                         (v.label() if isinstance(v, ParallelConfig) else None))
@pytest.mark.parametrize("isl,osl", [(1024, 1024), (2048, 256), (128, 2048), (8192, 1024)])
def test_offline_throughput_never_beats_the_nanoflow_compute_ceiling(model, gpu, par, dtype, isl, osl):
    s = make_setup(model, gpu, par, dtype)
    e = estimate.offline(s, isl, osl)
    assert e.tokens_per_s_per_gpu > 0
    assert e.tokens_per_s_per_gpu <= nanoflow_ceiling(s)


def test_nanoflow_ceiling_value_for_llama_8b_on_h100():
    """989 TFLOP/s bf16 · GEMM efficiency / (2 · 8.03 B) ≈ 61.6 k tokens/s at 100 % efficiency."""
    s = make_setup("llama-3.1-8b", "h100_sxm")
    eff = s.gpu.gemm_efficiency("bf16")
    assert nanoflow_ceiling(s) == pytest.approx(989e12 * eff / (2 * 8.03e9), rel=0.01)


# ---- memory ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [estimate.offline, lambda s, i, o: estimate.at_concurrency(s, i, o, 8),
                                lambda s, i, o: estimate.steady_state(s, i, o, 8),
                                lambda s, i, o: estimate.at_rate(s, i, o, 1.0)])
def test_a_model_that_does_not_fit_is_infeasible_with_the_gigabytes_in_the_message(fn):
    s = make_setup("llama-3.1-405b", "a100_80g")  # ~811 GB of bf16 weights on one 80 GB GPU
    with pytest.raises(InfeasibleError, match="does not fit") as exc:
        fn(s, 1024, 128)
    msg = str(exc.value)
    assert "GB" in msg and "a100_80g" in msg
    assert exc.value.binding == "memory"
    assert exc.value.hint


def test_weights_that_fit_but_leave_no_room_for_one_sequence_are_infeasible_too():
    s = make_setup("llama-3.1-8b", "l4")  # 16 GB of weights in 21.6 usable GB, 100k-token prompt needs 13 GB KV
    assert s.memory(1024).fits
    with pytest.raises(InfeasibleError, match="does not fit") as exc:
        estimate.offline(s, 100_000, 100)
    assert "GB" in str(exc.value)


def test_no_room_for_kv_message_does_not_claim_the_weights_exceed_memory():
    s = make_setup("llama-3.1-8b", "l4")
    mem = s.memory(100_100)
    assert mem.weights_gb + mem.activations_gb < mem.usable_gb  # the weights do fit
    with pytest.raises(InfeasibleError) as exc:
        estimate.offline(s, 100_000, 100)
    assert "exceed" not in str(exc.value), str(exc.value)


@pytest.mark.parametrize("model,gpu,par,dtype,context", [
    ("llama-3.1-70b", "h100_sxm", ParallelConfig(4), "bf16", 8192 + 1024),
    ("qwen3-32b", "a100_80g", ParallelConfig(2), "bf16", 16384),
    ("mixtral-8x7b", "h100_sxm", ParallelConfig(2), "bf16", 32768),
    ("deepseek-v3", "h200_sxm", ParallelConfig(8, ep=8), "fp8", 16384),
])
def test_fp8_kv_about_doubles_the_kv_limited_max_batch(model, gpu, par, dtype, context):
    bf16 = make_setup(model, gpu, par, dtype, "bf16")
    fp8 = make_setup(model, gpu, par, dtype, "fp8")
    b, f = bf16.memory(context).max_batch, fp8.memory(context).max_batch
    assert f < fp8.engine.max_num_seqs  # KV-limited, not capped by the engine
    assert b >= 5
    assert 1.8 <= f / b <= 2 * (b + 1) / b
    assert fp8.memory(context).kv_bytes_per_token == bf16.memory(context).kv_bytes_per_token / 2


def test_offline_batch_is_the_kv_limited_max_batch():
    s = make_setup("llama-3.1-70b", "h100_sxm", ParallelConfig(4))
    mem = s.memory(8192 + 1024)
    assert mem.max_batch == 45  # 34.3 GB of KV at 80 kB/token/GPU for 9216-token sequences
    assert estimate.offline(s, 8192, 1024).batch == mem.max_batch


def test_pipeline_parallel_halves_weights_per_gpu_but_does_not_cut_batch_one_tpot():
    tp4 = make_setup("llama-3.1-70b", "h100_sxm", ParallelConfig(4))
    pp2 = make_setup("llama-3.1-70b", "h100_sxm", ParallelConfig(4, 2))
    assert pp2.memory(2048).weights_gb == pytest.approx(tp4.memory(2048).weights_gb / 2, rel=0.02)
    one = StepShape(decode_seqs=1, decode_context=2048)
    assert pp2.step(one).time_s >= tp4.step(one).time_s


# ---- closed and open loop ------------------------------------------------------------------------------------

def test_closed_loop_tpot_lies_between_a_pure_decode_step_and_a_mixed_step():
    s = make_setup("llama-3.1-8b", "h100_sxm")
    e = estimate.at_concurrency(s, 1024, 256, 64)
    assert e.decode_step.time_s * 1e3 <= e.tpot_ms <= e.prefill_step.time_s * 1e3
    assert e.ttft_ms >= e.prefill_step.time_s * 1e3
    assert e.throughput_tokens_per_s == pytest.approx(e.request_rate_rps * 256, rel=1e-12)


def test_more_clients_than_the_kv_holds_wait_in_line():
    s = make_setup("llama-3.1-70b", "h100_sxm", ParallelConfig(4))
    cap = s.memory(8192 + 1024).max_batch
    at_cap = estimate.at_concurrency(s, 8192, 1024, cap)
    over = estimate.at_concurrency(s, 8192, 1024, 2 * cap)
    assert over.batch == cap
    assert over.throughput_tokens_per_s == pytest.approx(at_cap.throughput_tokens_per_s, rel=1e-12)
    assert over.ttft_ms > at_cap.ttft_ms + 0.9 * (1024 * at_cap.tpot_ms)  # a whole request cycle of waiting


def test_open_loop_rate_is_recovered_by_littles_law_and_capped_by_capacity():
    s = make_setup("llama-3.1-8b", "h100_sxm")
    top = estimate.steady_state(s, 1024, 256, s.memory(1024 + 256).max_batch)
    half = estimate.at_rate(s, 1024, 256, top.request_rate_rps / 2)
    assert half.request_rate_rps == pytest.approx(top.request_rate_rps / 2, rel=1e-6)
    assert 1 <= half.batch < top.batch
    assert half.tpot_ms <= top.tpot_ms
    with pytest.raises(InfeasibleError) as exc:
        estimate.at_rate(s, 1024, 256, top.request_rate_rps * 1.5)
    assert exc.value.binding == "capacity"


def test_bad_loads_are_input_errors():
    s = make_setup("llama-3.1-8b", "h100_sxm")
    with pytest.raises(PlannerInputError, match="batch"):
        estimate.at_concurrency(s, 1024, 256, 0.5)
    with pytest.raises(PlannerInputError, match="rate"):
        estimate.at_rate(s, 1024, 256, 0.0)
    with pytest.raises(InfeasibleError) as exc:
        estimate.steady_state(s, 1024, 256, 10 * s.memory(1280).max_batch)
    assert exc.value.binding == "kv_memory"


def test_estimate_works_for_every_bundled_model_on_every_gpu_it_fits():
    """The issue's bar: `planner estimate` runs for each bundled model on each hwdb GPU (at the fewest GPUs that
    hold it, with the engine's defaults), giving finite positive latencies."""
    import math as _math

    import hwdb
    from planner.core.model import bundled_models
    from planner.perf.memory import min_gpus_to_hold

    engine = hwdb.load_engine("vllm")
    ran = 0
    for model in bundled_models().values():
        for gpu in hwdb.list_gpus():
            fit = min_gpus_to_hold(model, gpu, "fp8", engine.for_gpu(gpu), max_gpus=64)
            if fit is None:
                continue
            e = estimate.offline(estimate.Setup(model, gpu, fit[1], engine.for_gpu(gpu), "fp8"), 1024, 256)
            assert e.tokens_per_s_per_gpu > 0 and _math.isfinite(e.ttft_ms) and e.tpot_ms > 0, (model.name, gpu.name)
            ran += 1
    assert ran >= 150
