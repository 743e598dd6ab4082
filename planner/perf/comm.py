"""Collectives and transfers: TP all-reduce, EP all-to-all, PP point-to-point, P/D KV transfer.

A group that fits the GPU's scale-up domain (NVLink / xGMI) uses its bandwidth; otherwise the scale-out NIC.
Bandwidths in hwdb are per GPU, one direction, in GB/s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from planner.perf.ops import Bound, OpTime

if TYPE_CHECKING:
    from hwdb import GpuSpec


def _link(gpu: GpuSpec, group: int, domain: int | None = None) -> tuple[float, float]:
    """(bytes/s, per-step latency s) of the slowest link a `group`-GPU collective crosses."""
    eff = gpu.efficiency
    if group <= (domain or gpu.scaleup_domain_gpus):
        return gpu.scaleup_bw_gbps * 1e9 * eff.scaleup, eff.scaleup_latency_us * 1e-6
    return gpu.scaleout_bw_gbps * 1e9 * eff.scaleout, eff.scaleout_latency_us * 1e-6


def allreduce(name: str, message_bytes: float, group: int, gpu: GpuSpec, count: float = 1.0) -> OpTime:
    """All-reduce as engines run it: the faster of
    one-shot (each GPU reads the n−1 peers' buffers):  2α + (n−1) · bytes / bw
    ring / two-shot (2(n−1) steps of bytes/n):        2(n−1) · (α + bytes / (n · bw))
    with α the per-step latency of the link the group crosses (docs/architecture.md, "Formulas")."""
    if group <= 1 or message_bytes <= 0:
        return OpTime(name, "allreduce", 0.0, "link")
    bw, lat = _link(gpu, group)
    one_shot = 2 * lat + (group - 1) * message_bytes / bw
    ring = 2 * (group - 1) * (lat + message_bytes / (group * bw))
    t = min(one_shot, ring)
    bound: Bound = "link" if t > 4 * lat * (group - 1) else "latency"
    return OpTime(name, "allreduce", t * count, bound, 0.0, message_bytes * count)


def alltoall(name: str, bytes_per_gpu: float, group: int, gpu: GpuSpec, count: float = 1.0) -> OpTime:
    """All-to-all: n−1 steps, each sending bytes/n to one peer: (n−1) · (α + bytes / (n · bw))."""
    if group <= 1 or bytes_per_gpu <= 0:
        return OpTime(name, "alltoall", 0.0, "link")
    bw, lat = _link(gpu, group)
    t_bw = (group - 1) * bytes_per_gpu / (group * bw)
    t_lat = (group - 1) * lat
    return OpTime(name, "alltoall", (t_bw + t_lat) * count, "link" if t_bw >= t_lat else "latency", 0.0,
                  bytes_per_gpu * count)


def p2p(name: str, message_bytes: float, crosses_node: bool, gpu: GpuSpec, count: float = 1.0) -> OpTime:
    """Point-to-point send of activations between pipeline stages: bytes / bw + latency."""
    if message_bytes <= 0 or count <= 0:
        return OpTime(name, "p2p", 0.0, "link")
    bw, lat = _link(gpu, 2, domain=1 if crosses_node else None)
    return OpTime(name, "p2p", (message_bytes / bw + lat) * count, "link", 0.0, message_bytes * count)


def kv_transfer_s(kv_bytes: float, gpu: GpuSpec, same_node: bool, link_gbps: float | None = None,
                  gpus_sending: int = 1) -> float:
    """P/D hand-off of one request's KV cache: bytes / path bandwidth + latency. The prefill instance's GPUs
    send their shards in parallel; `link_gbps` (GB/s) overrides the path (e.g. a cross-datacenter link)."""
    if kv_bytes <= 0:
        return 0.0
    if link_gbps is not None:  # the slower of that path and the sending GPUs' own NICs
        nic, lat = _link(gpu, 2, domain=1)
        return kv_bytes / min(link_gbps * 1e9, nic * gpus_sending) + lat
    bw, lat = _link(gpu, 2, domain=None if same_node else 1)
    return kv_bytes / (bw * gpus_sending) + lat
