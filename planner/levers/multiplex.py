"""Intra-GPU prefill/decode multiplexing (issue 8; semi-PD, DuetServe, Nexus): one instance splits its SMs,
a fraction f running prefill and 1 − f running decode concurrently, both on the same weights and KV cache.

Model (docs/levers/multiplex.md):
  compute     a partition with a share x of the SMs gets x of every peak FLOP rate (tensor cores are per SM);
  bandwidth   HBM is shared. A partition cannot pull more than min(1, x / SM_SATURATION)·BW (a few SMs cannot keep
              enough loads in flight to saturate HBM; about half of an H100's SMs can); the two share the rest in
              proportion to demand: prefill at the engine's token budget is compute-bound and draws
              D_p = (bytes of a full-budget prefill iteration) / (its time), charged in full to the decode side
              (as if prefill were always busy: conservative), so decode gets min(cap_d, BW − D_p);
  step times  each partition runs the roofline step model (planner/perf) on its scaled GPU, with the engine's
              own per-iteration overhead (each side is its own scheduler loop);
  memory      one copy of the weights, one KV pool: the instance's memory model with the prefill budget's
              activation workspace; the decode partition's max batch is the instance's;
  capacity    every request is prefilled and decoded on the same instance, so the rate λ must meet TTFT on the
              prefill side (an M/D/1 prompt queue like a prefill instance, no KV transfer: the KV stays on the GPU)
              and TPOT on the decode side (Little's law like a decode instance): cap = min(cap_prefill, cap_decode).
f is searched over SM_FRACTIONS.
"""

from __future__ import annotations

from dataclasses import replace

from planner.capacity.estimate import Setup
from planner.capacity.serving import Capacity, decode_capacity, decode_tpot_s, prefill_capacity, prefill_ttft_s
from planner.core.workload import RequestClass
from planner.perf.step import StepShape

SM_FRACTIONS = (0.25, 0.5, 0.75)  # prefill's share of the SMs searched
SM_SATURATION = 0.5  # share of the SMs that saturates HBM bandwidth (assumption, see the module doc)


def _scaled_gpu(gpu, compute: float, bandwidth: float):
    from hwdb.loader import FrozenDict

    return replace(gpu, peak_tflops=FrozenDict({k: v * compute for k, v in gpu.peak_tflops.items()}),
                   mem_bw_gbps=gpu.mem_bw_gbps * bandwidth)


def partition_setups(setup: Setup, f: float) -> tuple[Setup, Setup]:
    """(prefill partition, decode partition) of an instance whose prefill runs on a share f of the SMs."""
    if not 0 < f < 1:
        raise ValueError(f"sm_fraction must be in (0, 1), got {f}")
    gpu = setup.gpu
    pre = replace(setup, gpu=_scaled_gpu(gpu, f, min(1.0, f / SM_SATURATION)))
    st = pre.step(StepShape(prefill_tokens=setup.chunk, prefill_seq_len=min(setup.chunk, 2048)))
    bytes_per_gpu = sum(o.bytes for o in st.ops if o.kind not in ("comm", "allreduce", "alltoall", "p2p"))
    demand = bytes_per_gpu / st.gpu_s / (gpu.mem_bw_gbps * 1e9) if st.gpu_s > 0 else 0.0
    dec_bw = max(0.05, min(min(1.0, (1 - f) / SM_SATURATION), 1.0 - demand))
    dec = replace(setup, gpu=_scaled_gpu(gpu, 1 - f, dec_bw))
    return pre, dec


def multiplex_capacity(setup: Setup, f: float, cls: RequestClass) -> Capacity:
    """Goodput of one multiplexed instance for one class: the rate both partitions sustain within the SLOs."""
    pre, dec = partition_setups(setup, f)
    p = prefill_capacity(pre, cls, handoff=False)
    d = decode_capacity(dec, cls)
    if p.rate_rps <= 0 or d.rate_rps <= 0:
        return Capacity(0.0, p.ttft_ms, d.tpot_ms, 0.0, "slo_floor")
    rate = min(p.rate_rps, d.rate_rps)
    binding = "ttft" if p.rate_rps <= d.rate_rps else d.binding
    ttft, tpot = multiplex_latency(setup, f, cls, rate)
    return Capacity(rate, ttft, tpot, d.batch * rate / d.rate_rps, binding)


def multiplex_latency(setup: Setup, f: float, cls: RequestClass, rate: float) -> tuple[float, float]:
    """(TTFT_p ms, TPOT_p ms) of a multiplexed instance at per-instance `rate`."""
    pre, dec = partition_setups(setup, f)
    return prefill_ttft_s(pre, cls, rate, handoff=False) * 1e3, decode_tpot_s(dec, cls, rate) * 1e3
