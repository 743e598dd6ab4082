"""JSON documents and text views of the one-shot commands (hw, model show, estimate, simulate, calibrate,
experts). `*_json` is what `--format json` prints (canonical_json of it); `*_view` the table form."""

from __future__ import annotations

import dataclasses

from planner.render import Block, cell, table

# ---- hw ----------------------------------------------------------------------------------------------------

def gpu_summary(g) -> dict:
    """One row of `planner hw list --format json`."""
    return dict(name=g.name, display_name=g.display_name, vendor=g.vendor, memory_gb=g.memory_gb,
                mem_bw_gbps=g.mem_bw_gbps, peak_tflops=g.peak_tflops, scaleup_bw_gbps=g.scaleup_bw_gbps,
                scaleup_domain_gpus=g.scaleup_domain_gpus, scaleout_bw_gbps=g.scaleout_bw_gbps,
                cost_usd_per_h=g.cost_usd_per_h, tdp_w=g.tdp_w)


def gpu_json(g) -> dict:
    """Every field of one GPU with its sources (`planner hw show --format json`); the file path left out."""
    d = dataclasses.asdict(g)
    d.pop("path", None)
    return d


def _tflops(g, dtype: str) -> str:
    return f"{g.peak_tflops[dtype]:,.0f}" if dtype in g.peak_tflops else "-"


def hw_list_view(gpus) -> list[Block]:
    rows = [[g.name, g.display_name, f"{g.memory_gb:g}", f"{g.mem_bw_gbps:,.0f}",
             f"{g.peak_tflops.get('bf16', 0):,.0f}", _tflops(g, "fp8"), _tflops(g, "fp4"),
             f"{g.scaleup_bw_gbps:g}×{g.scaleup_domain_gpus}", f"${g.cost_usd_per_h:.2f}"] for g in gpus]
    return [table("GPUs", ["name", "", "HBM GB", "HBM GB/s", "bf16 TF", "fp8 TF", "fp4 TF", "scale-up GB/s×GPUs",
                           "$/GPU-h"], rows)]


def hw_show_view(g) -> list[Block]:
    rows = [[k, v, g.sources.get(k, "")] for k, v in gpu_summary(g).items() if k != "name"]
    eff = g.efficiency
    rows.append(["efficiency", f"gemm ({cell(eff.gemm)}), attention {cell(eff.attention)}, memory "
                 f"{cell(eff.memory)}, scale-up {cell(eff.scaleup)}", eff.fitted_on])
    return [table(f"{g.name} ({g.path})", ["field", "value", "source"], rows)]


# ---- model ---------------------------------------------------------------------------------------------------

def model_view(d: dict, engine: str, context_tokens: int) -> list[Block]:
    """`d`: planner.commands.model_facts."""
    kind = "MoE" if d["moe"] else "dense"
    rows = [[g] + [f"{v['gpus']} ({v['config']})" if v else "-" for v in fit.values()]
            for g, fit in d["min_gpus"].items()]
    return [f"{d['name']} ({d['hf_id']}) — {kind}{', MLA' if d['mla'] else ''}, {d['layers']} layers, "
            f"{d['params_total'] / 1e9:.2f} B params, {d['params_active'] / 1e9:.2f} B active per token",
            f"KV cache: {d['kv_bytes_per_token_bf16'] / 1024:,.0f} KiB/token bf16, "
            f"{d['kv_bytes_per_token_fp8'] / 1024:,.0f} KiB/token fp8",
            "weights: " + ", ".join(f"{k} {w:,.1f} GB" for k, w in d["weights_gb"].items()),
            table(f"fewest GPUs that hold the weights + one {context_tokens}-token sequence ({engine} memory reserve)",
                  ["gpu", *d["weights_gb"]], rows)]


# ---- estimate ------------------------------------------------------------------------------------------------

def estimate_json(run) -> dict:
    """`run`: planner.commands.EstimateRun."""
    from planner.capacity.estimate import breakdown_rows

    s, e, mem = run.setup, run.estimate, run.estimate.memory
    return {"model": s.model.name, "gpu": s.gpu.name, "parallel": s.par.label(), "engine": s.engine.name,
            "dtype": s.dtype, "kv_dtype": s.kv_dtype, "isl": run.isl, "osl": run.osl, "batch": e.batch,
            "ttft_ms": e.ttft_ms, "tpot_ms": e.tpot_ms, "throughput_tokens_per_s": e.throughput_tokens_per_s,
            "tokens_per_s_per_gpu": e.tokens_per_s_per_gpu, "request_rate_rps": e.request_rate_rps,
            "goodput_rps": run.goodput_rps, "chunk_tokens": s.chunk,
            "memory_gb": {"usable": mem.usable_gb, "weights": mem.weights_gb, "activations": mem.activations_gb,
                          "kv_cache": mem.kv_cache_gb, "max_batch": mem.max_batch},
            "breakdown": breakdown_rows(e.decode_step), "prefill_breakdown": breakdown_rows(e.prefill_step)}


def estimate_view(run, slo_text: str | None) -> list[Block]:
    s, e, mem, d = run.setup, run.estimate, run.estimate.memory, estimate_json(run)
    out: list[Block] = [
        f"{s.model.name} on {s.par.gpus}× {s.gpu.name} ({s.par.label()}, {s.engine.name}, {s.dtype} weights, "
        f"{s.kv_dtype} KV), ISL {run.isl} / OSL {run.osl}, batch {e.batch:.4g}",
        f"TTFT {e.ttft_ms:,.1f} ms   TPOT {e.tpot_ms:,.2f} ms   {e.throughput_tokens_per_s:,.0f} output tok/s   "
        f"{e.tokens_per_s_per_gpu:,.0f} tok/s/GPU   {e.request_rate_rps:.3g} req/s"
        + (f"   goodput {run.goodput_rps:.3g} req/s under {slo_text}" if slo_text else ""),
        f"memory per GPU: {mem.weights_gb:.1f} GB weights + {mem.activations_gb:.1f} GB workspace + "
        f"{mem.kv_cache_gb:.1f} GB KV of {mem.usable_gb:.1f} GB usable → max batch {mem.max_batch}"]
    for title, rows in (("decode iteration", d["breakdown"]),
                        ("iteration carrying a prefill chunk", d["prefill_breakdown"])):
        out.append(table(title, ["op", "kind", "ms", "share", "bound"],
                         [[r["op"], r["kind"], f"{r['time_ms']:.3f}", f"{r['share']:.0%}", r["bound"]] for r in rows]))
    return out


# ---- simulate ------------------------------------------------------------------------------------------------

def simulate_view(res) -> list[Block]:
    """`res`: planner.simulate.SimResult."""
    classes = [[k, f"{v.rate_rps:.3g}", f"{v.ttft_ms['p50']:,.0f} / {v.ttft_ms['p90']:,.0f} / {v.ttft_ms['p99']:,.0f}",
                f"{v.tpot_ms['p50']:,.1f} / {v.tpot_ms['p90']:,.1f} / {v.tpot_ms['p99']:,.1f}",
                f"{v.slo['ttft_ms']:g} / {v.slo['tpot_ms']:g} at p{v.slo['percentile']:g}", f"{v.attainment:.1%}"]
               for k, v in sorted(res.per_class.items())]
    instances = [[i.name, f"{i.utilization:.0%}", i.requests, f"{i.mean_decode_batch:.1f}", f"{i.kv_occupancy:.0%}"]
                 for i in res.instances]
    return [f"{res.model} plan #{res.plan_rank}: {res.rate_rps:.3g} req/s offered for {res.duration_s:g} s "
            f"({res.requests} requests, {res.measured} measured after warm-up, {res.dropped} not finished), "
            f"router {res.router}",
            f"SLO attainment {res.attainment:.1%} (TTFT {res.ttft_attainment:.1%}, TPOT {res.tpot_attainment:.1%}); "
            f"goodput {res.goodput_rps:.3g} req/s vs {res.predicted_goodput_rps:.3g} predicted",
            table("per class", ["class", "req/s", "TTFT p50/p90/p99 ms", "TPOT p50/p90/p99 ms", "SLO", "attained"],
                  classes),
            table("per instance", ["instance", "busy", "requests", "mean decode batch", "KV used"], instances),
            *(f"note: {n}" for n in res.notes)]


# ---- calibrate / experts -------------------------------------------------------------------------------------

def calibration_view(d: dict) -> list[Block]:
    """`d`: planner.commands.calibrate."""
    rows = [[f"engine {n}", k, f"{v:g}"] for n, kv in sorted(d["engines"].items()) for k, v in sorted(kv.items())]
    rows += [[f"gpu {n}", k, v] for n, kv in sorted(d["gpus"].items()) for k, v in sorted(kv.items())]
    return [f"fitted {d['parameters']} constants to {d['points']} points: median abs error "
            f"{d['median_abs_error_before']:.1%} → {d['median_abs_error_after']:.1%}",
            table("calibration", ["name", "constant", "value"], rows),
            f"wrote {d['out']}; apply with --calibration {d['out']}"]


def experts_view(d: dict, loads_from: str) -> list[Block]:
    """`d`: planner.commands.experts; `loads_from` says where the expert loads came from."""
    rows = [[r, f"{load:.4g}", " ".join(map(str, on))] for r, (load, on) in
            enumerate(zip(d["rank_loads"], d["placement"]))]
    return [f"{d['model']}: {d['experts']} experts on {d['ep']} EP ranks ({loads_from})",
            f"imbalance (max/mean rank load): {d['imbalance']:.3f} placed vs {d['round_robin_imbalance']:.3f} "
            f"round-robin; CP-SAT {d['status']}, gap {d['gap']:.2%}, {d['time_s']:.2f} s",
            table("placement", ["rank", "load", "experts"], rows)]
