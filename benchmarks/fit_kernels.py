"""Fit the per-GPU roofline efficiencies to measured kernel latencies and print each op's error.

    python benchmarks/fit_kernels.py            # fit, print the table (no files touched)
    python benchmarks/fit_kernels.py --write    # also write the fitted values into hwdb/gpus/<gpu>.yaml

Data: ../shared/data/kernel_samples.csv (aiconfigurator-core 0.12.0, TRT-LLM 1.3.0rc20 kernels on H100/H200/B200).
Each parameter group is fitted on its own op class by scipy least squares on log(predicted/measured):
  gemm rows        -> gemm[bf16], gemm[fp8], memory, kernel_launch_us
  attention rows   -> attention, attention_latency_us          (memory from the gemm fit)
  all-reduce rows  -> scaleup, scaleup_latency_us             (TRT-LLM custom all-reduce: what engines run)
  moe rows         -> grouped_gemm_half_tokens (tokens per expert at half the dense GEMM efficiency)
GPUs with only GEMM samples (H200, B200) keep their other values.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from yaml_edit import set_efficiency  # noqa: E402

import hwdb  # noqa: E402
from planner.perf.kernels import load_samples, predict_ms  # noqa: E402

SAMPLES = ROOT.parent / "shared" / "data" / "kernel_samples.csv"
GROUPS = {
    "gemm": (("gemm",), ("gemm.bf16", "gemm.fp8", "memory", "kernel_launch_us")),
    "attention": (("attention_decode", "attention_prefill"), ("attention", "attention_latency_us")),
    "allreduce": (("allreduce",), ("scaleup", "scaleup_latency_us")),
    "moe": (("moe",), ("grouped_gemm_half_tokens",)),
}
# Physical bounds: no kernel streams HBM faster than ~92% of the datasheet bandwidth (STREAM-class results
# on H100 reach ~90%); without this cap the fit trades bandwidth for launch latency on GEMV rows.
BOUNDS = {"kernel_launch_us": (0.0, 30.0), "attention_latency_us": (0.0, 60.0), "scaleup_latency_us": (0.0, 20.0),
          "memory": (0.3, 0.92), "grouped_gemm_half_tokens": (1.0, 4096.0)}


def _with(gpu, values: dict):
    gemm = {k.split(".")[1]: v for k, v in values.items() if k.startswith("gemm.") and k.split(".")[1] in gpu.peak_tflops}
    other = {k: v for k, v in values.items() if not k.startswith("gemm.")}
    return hwdb.with_efficiency(gpu, **({"gemm": gemm} if gemm else {}), **other)


def _current(gpu, name: str) -> float:
    if name.startswith("gemm."):
        return gpu.efficiency.gemm.get(name.split(".")[1], gpu.efficiency.gemm["bf16"])
    return getattr(gpu.efficiency, name)


def in_engine_path(s) -> bool:
    """The all-reduce engines run at serving sizes is the custom (one/two-shot) kernel, not plain NCCL."""
    return not (s.op_class == "allreduce" and s.op.startswith("nccl"))


def fit_gpu(gpu, samples) -> tuple[object, dict]:
    fitted = {}
    for group, (classes, names) in GROUPS.items():
        rows = [s for s in samples if s.op_class in classes and in_engine_path(s)]
        names = [n for n in names if not n.startswith("gemm.") or n.split(".")[1] in gpu.peak_tflops]
        if not rows:
            continue
        x0 = np.array([_current(gpu, n) for n in names])
        lo = np.array([BOUNDS.get(n, (0.05, 1.0))[0] for n in names])
        hi = np.array([BOUNDS.get(n, (0.05, 1.0))[1] for n in names])

        def residuals(x, rows=rows, names=names):
            g = _with(gpu, dict(zip(names, x)))
            return [np.log(predict_ms(s, g) / s.measured_ms) for s in rows]

        sol = least_squares(residuals, np.clip(x0, lo + 1e-9, hi - 1e-9), bounds=(lo, hi), loss="soft_l1",
                            f_scale=0.2)
        values = {n: round(float(v), 3) for n, v in zip(names, sol.x)}
        gpu = _with(gpu, values)
        fitted.update(values)
    return gpu, fitted


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write fitted efficiencies into hwdb/gpus/*.yaml")
    args = ap.parse_args()
    samples = load_samples(SAMPLES)
    by_system = defaultdict(list)
    for s in samples:
        by_system[s.system].append(s)
    print("| GPU | op class | samples | median abs error | worst |\n|---|---|---|---|---|")
    reference = {}
    for system, rows in sorted(by_system.items(), key=lambda kv: (kv[0] != "h100_sxm", kv[0])):
        base = hwdb.load_gpu(system)
        if system != "h100_sxm":  # same software stack: start from the H100 values for what has no samples here
            base = hwdb.with_efficiency(base, **{k: v for k, v in reference.items() if k in PROPAGATED})
        gpu, fitted = fit_gpu(base, rows)
        if system == "h100_sxm":
            reference = fitted
        errs = defaultdict(list)
        for s in rows:
            label = s.op_class if in_engine_path(s) else "allreduce_nccl (not fitted)"
            errs[label].append(predict_ms(s, gpu) / s.measured_ms - 1)
        for cls, e in sorted(errs.items()):
            a = [abs(x) for x in e]
            print(f"| {system} | {cls} | {len(e)} | {statistics.median(a):.1%} | {max(e, key=abs):+.0%} |")
        print(f"fitted {system}: {fitted}", file=sys.stderr)
        if args.write:
            groups = sorted({g for g, (classes, _) in GROUPS.items() if any(s.op_class in classes for s in rows)})
            fitted = {**{k: v for k, v in reference.items() if k in PROPAGATED}, **fitted}
            set_efficiency(system, fitted, f"least squares on log error (benchmarks/fit_kernels.py) over {len(rows)} "
                                       f"kernel latencies of shared/data/kernel_samples.csv (aiconfigurator-core "
                                       f"0.12.0, TRT-LLM 1.3.0rc20) for {system}: groups {', '.join(groups)}; "
                                       f"parameters of groups without samples here come from the h100_sxm fit.")
    if args.write:
        propagate(reference, set(by_system))


# Parameters a GPU without its own samples takes from the H100 fit: kernel/attention latencies, attention and
# grouped-GEMM efficiencies and the streaming-bandwidth fraction are properties of the software stack (TRT-LLM /
# FlashAttention-class kernels) more than of the die; each file's GEMM efficiencies stay its own.
PROPAGATED = ("memory", "kernel_launch_us", "attention", "attention_latency_us", "grouped_gemm_half_tokens", "scaleup",
              "scaleup_latency_us")


def propagate(reference: dict, fitted_systems: set[str]) -> None:
    for gpu in hwdb.list_gpus():
        if gpu.name in fitted_systems:
            continue
        own = {k: v for k, v in reference.items() if k in PROPAGATED}
        set_efficiency(gpu.name, own, "gemm efficiencies: defaults (no kernel samples for this part); memory, "
                                  "latencies, attention, grouped GEMM and scale-up taken by analogy from the "
                                  "h100_sxm least-squares fit (benchmarks/fit_kernels.py) on "
                                  "shared/data/kernel_samples.csv; not measured on this part.")


if __name__ == "__main__":
    main()
