"""Predict measured single-kernel latencies (shared/data/kernel_samples.csv) with the per-op roofline.

Used by the kernel-accuracy tests and by benchmarks/fit_kernels.py, which fits the hwdb efficiencies.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from planner.perf import comm
from planner.perf.ops import attention, expected_distinct_experts, gemm, grouped_moe, op_time

if TYPE_CHECKING:
    from hwdb import GpuSpec

OP_CLASS = {"gemm": "gemm", "generation_attention": "attention_decode", "context_attention": "attention_prefill",
            "custom_allreduce(trtllm)": "allreduce", "nccl_all_reduce": "allreduce", "nccl_alltoall": "alltoall",
            "moe(moe_torch_flow_cutlass)": "moe"}


@dataclass(frozen=True)
class KernelSample:
    system: str
    op: str
    op_class: str
    dtype: str
    shape: dict[str, int]  # the numeric fields of the shape description (m, n, k, batch, num_gpus, bytes...)
    measured_ms: float


def _shape(desc: str) -> dict[str, int]:
    out = {}
    for k, v in re.findall(r"([a-z_()]+)=([0-9]+)", desc):
        out[k.replace("(step)", "")] = int(v)
    m = re.search(r"\((\d+) bytes\)", desc)
    if m:
        out["bytes"] = int(m.group(1))
    return out


def load_samples(path: str | os.PathLike[str]) -> list[KernelSample]:
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            if r["op"] not in OP_CLASS:
                continue
            rows.append(KernelSample(r["system"], r["op"], OP_CLASS[r["op"]], r["dtype"], _shape(r["shape_desc"]),
                                     float(r["measured_latency_ms"])))
    return rows


def predict_ms(s: KernelSample, gpu: GpuSpec) -> float:
    sh = s.shape
    if s.op_class == "gemm":
        dtype = "fp8" if "fp8" in s.dtype else "bf16"
        return op_time(gemm("gemm", sh["m"], sh["n"], sh["k"], dtype, gpu), gpu).time_s * 1e3
    if s.op_class == "attention_decode":
        kv = "fp8" if "kv=fp8" in s.dtype else "bf16"
        b, hd = sh["batch"], sh["head_dim"]
        op = attention("a", b, sh["kv_len"], b, sh["q_heads"], sh["kv_heads"], hd, hd, 2 * sh["kv_heads"] * hd, kv, 1)
        return op_time(op, gpu).time_s * 1e3
    if s.op_class == "attention_prefill":
        b, n, hd = sh["batch"], sh["isl"], sh["head_dim"]
        op = attention("a", b * n, n / 2, b, sh["q_heads"], sh["kv_heads"], hd, hd, 2 * sh["kv_heads"] * hd, "bf16", 1)
        return op_time(op, gpu).time_s * 1e3
    if s.op_class == "allreduce":
        return comm.allreduce("ar", sh["bytes"], sh["num_gpus"], gpu).time_s * 1e3
    if s.op_class == "alltoall":
        return comm.alltoall("a2a", sh["bytes"], sh["num_gpus"], gpu).time_s * 1e3
    if s.op_class == "moe":
        e, ep, k, t = sh["experts"], sh["moe_ep"], sh["topk"], sh["num_tokens"]
        touched = expected_distinct_experts(e, k, t) / ep
        op = grouped_moe("moe", t * k / ep, e / ep, touched, sh["hidden"], sh["inter"] // sh["moe_tp"], "fp8", gpu,
                         1.0, 1)
        return op_time(op, gpu).time_s * 1e3
    raise ValueError(f"no predictor for op class {s.op_class}")
