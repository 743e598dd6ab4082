"""Optimize results -> JSON (DESIGN §6), markdown for PR comments, and launch commands per plan."""

from __future__ import annotations

from planner.launch import LaunchCommand, launch_commands
from planner.optimize import Request, Result
from planner.plan import Plan


def launch_for(plan: Plan, req: Request) -> list[LaunchCommand]:
    import hwdb

    domains = {g: hwdb.load_gpu(g, extra_dirs=req.extra_hwdb).scaleup_domain_gpus for g in plan.gpus}
    max_len = max(c.isl + c.osl for c in req.classes)
    return launch_commands(plan, req.model, req.engine, req.dtype, req.kv_dtype, max_len, domains)


def result_json(result: Result, req: Request, launch: bool = False) -> dict:
    def plan_json(p: Plan) -> dict:
        d = p.to_json()
        if launch:
            d["launch"] = [c.to_json() for c in launch_for(p, req)]
        return d

    return {
        "model": req.model.name,
        "objective": req.objective,
        "engine": req.engine,
        "dtype": req.dtype,
        "kv_dtype": req.kv_dtype,
        "workload": [{"name": c.name, "isl": c.isl, "osl": c.osl, "rate_rps": c.rate_rps,
                      "slo": {"ttft_ms": c.slo.ttft_ms, "tpot_ms": c.slo.tpot_ms, "percentile": c.slo.percentile}}
                     for c in req.classes],
        "plans": [plan_json(p) for p in result.plans],
        "family_bests": [plan_json(p) for p in result.family_bests],
        "solver": {k: v for k, v in result.solver.items()},
        "notes": result.notes,
        "wall_time_s": result.wall_s,
    }


def result_markdown(result: Result, req: Request, launch: bool = False) -> str:
    lines = [f"### servplan: {req.model.name} ({req.objective})", ""]
    for c in req.classes:
        lines.append(f"- class `{c.name}`: ISL {c.isl}, OSL {c.osl}" + (f", {c.rate_rps:g} req/s" if c.rate_rps else "")
                     + f"; SLO TTFT ≤ {c.slo.ttft_ms:g} ms, TPOT ≤ {c.slo.tpot_ms:g} ms at p{c.slo.percentile:g}")
    lines += [f"- note: {n}" for n in result.notes]
    lines += ["", "| # | GPUs | instances | goodput req/s | tok/s/GPU | $/h | $/M tok | TTFT ms | TPOT ms | binding |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for p in result.plans + result.family_bests:
        inst = "<br>".join(f"{i.count}× {i.role} {i.gpu} TP{i.tp}" + (f" PP{i.pp}" if i.pp > 1 else "")
                           + (f" EP{i.ep}" if i.ep > 1 else "") + (f" DP{i.dp}" if i.dp > 1 else "")
                           for i in p.instances)
        gpus = ", ".join(f"{n}× {g}" for g, n in sorted(p.gpus.items()))
        lines.append(f"| {p.family or p.rank} | {gpus} | {inst} | {p.goodput_rps:.2f} | {p.tokens_per_s_per_gpu:,.0f} | "
                     f"{p.cost_usd_per_h:,.2f} | {p.usd_per_million_tokens:,.2f} | {p.predicted['ttft_ms']:,.0f} | "
                     f"{p.predicted['tpot_ms']:,.1f} | {p.binding} |")
    s = result.solver
    lines += ["", f"solver: {s['backend']} {s['status']}, gap {s['gap']:.2%}, {s['candidates']} instance types"]
    if launch and result.plans:
        lines += ["", "```bash"] + [f"# {c.role} ×{c.replicas}\n{c.shell}" for c in launch_for(result.plans[0], req)]
        lines.append("```")
    return "\n".join(lines) + "\n"
