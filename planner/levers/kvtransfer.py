"""KV-cache transfer between disaggregated prefill and decode pools (issue 8, lever 4; docs/levers/kv-transfer.md).

- `--link prefill-decode=100Gbps`: the P and D pools sit in different places (another hall, another datacenter:
  Prefill-as-a-Service) joined by one link of that bandwidth. Every request's KV crosses it, so
    per request   hand-off = kv_bytes / min(link, the prefill instance's NICs) + latency   (adds to TTFT;
                  planner/perf/comm.kv_transfer_s via serving.kv_handoff_s)
    fleet-wide    Σ_classes served_rate · kv_bytes ≤ link      (a row of the fleet MILP: MixProblem.kv_link_bytes_per_s)
  Without the flag P and D share a cluster fabric: each prefill instance ships over its own NICs (kv_egress).
- `--kv-compression R`: a transfer codec (KVServe-style quantisation / entropy coding of the KV stream, or
  shipping a lower-precision copy) sends kv_bytes / R over the wire; both the hand-off time and the MILP's link
  and egress rows use the compressed bytes. The codec's own GPU time is not modelled (it overlaps the send).
- `--kv-dtype fp8 | int4` stores the cache itself smaller (QServe's KV4, SAW-INT4): memory per token, the
  attention's KV reads, the max batch and the shipped bytes all follow the dtype (int4 = 0.5 B + one fp16
  scale per 128 elements, planner/model.DTYPE_BYTES).
"""

from __future__ import annotations

from hwdb.units import UnitError, parse_bandwidth_gbytes_per_s
from planner.core.bounds import MAX_BANDWIDTH_GBPS, MAX_KV_COMPRESSION, bounded
from planner.core.errors import PlannerInputError

LINK_NAMES = ("prefill-decode", "p-d", "pd")


def parse_bandwidth_gbps(text: str, field: str = "--link") -> float:
    """'100Gbps' -> 12.5 GB/s, '25GBps' / '25GB/s' -> 25 GB/s, '1.6Tbps' -> 200 GB/s."""
    try:
        gbytes_per_s = parse_bandwidth_gbytes_per_s(text)
    except UnitError:
        gbytes_per_s = 0.0  # refused below, like a zero bandwidth
    if gbytes_per_s > 0:
        return bounded(gbytes_per_s, field, 0, MAX_BANDWIDTH_GBPS, unit=" GB/s")
    raise PlannerInputError(f"{field}: expected a bandwidth like 100Gbps (bits) or 12.5GBps (bytes), got '{text}'")


def parse_link(text: str) -> float:
    """'prefill-decode=100Gbps' -> the P <-> D link in GB/s."""
    name, eq, value = (s.strip() for s in str(text).partition("="))
    if not eq or name.lower() not in LINK_NAMES:
        raise PlannerInputError(f"--link: expected prefill-decode=BANDWIDTH (e.g. prefill-decode=100Gbps), got '{text}'")
    return parse_bandwidth_gbps(value)


def parse_compression(value) -> float:
    """`--kv-compression R`: R ≥ 1 (1 = none)."""
    try:
        r = float(value)
    except (TypeError, ValueError):
        r = float("nan")
    if not r >= 1 or r == float("inf"):
        raise PlannerInputError(f"--kv-compression: expected a ratio ≥ 1 (e.g. 4 for 4× smaller), got '{value}'")
    return bounded(r, "--kv-compression", 1, MAX_KV_COMPRESSION)
