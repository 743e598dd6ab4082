"""Optimize results -> JSON (docs/architecture.md, "Data flow"), markdown for PR comments, and launch commands per plan."""

from __future__ import annotations

import html
import math

from planner.core.vocab import FAMILY_LABEL, Role
from planner.render import Block, table
from planner.render.launch import LaunchCommand, launch_commands
from planner.search.optimize import Request, Result, instance_builder
from planner.search.plan import Plan


def instance_label(i) -> str:
    """'2× agg h100_sxm TP2·PP2 C2048': degrees above 1 only, the chunk budget of collocated instances, the SM
    split of multiplexed ones and the speculation depth when speculative decoding was searched."""
    par = f"TP{i.tp}" + "".join(f"·{k}{v}" for k, v in (("PP", i.pp), ("EP", i.ep), ("DP", i.dp)) if v > 1)
    return (f"{i.count}× {i.role} {i.gpu} {par}" + (f" C{i.chunk_tokens}" if i.role == Role.agg else "")
            + (f" f{i.sm_fraction:g}" if i.role == Role.multiplex else "")
            + (f" spec k={i.spec_k}" if i.spec_k is not None and i.role != Role.prefill else ""))


def launch_for(plan: Plan, req: Request) -> list[LaunchCommand]:
    """The plan's launch commands, with the memory fraction the memory model took for each GPU type."""
    builder = instance_builder(req)
    max_len = max(c.isl + c.osl for c in req.classes)
    return launch_commands(plan, req.model, req.engine, req.dtype, req.kv_dtype, max_len,
                           {g: builder.gpu(g).scaleup_domain_gpus for g in plan.gpus},
                           {g: builder.engine_for(g).gpu_memory_utilization for g in plan.gpus},
                           spec=req.levers.spec)


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
                      "slo": {"ttft_ms": c.slo.ttft_ms, "tpot_ms": c.slo.tpot_ms, "percentile": c.slo.percentile},
                      **({"arrival": c.arrival.to_json()} if c.arrival is not None else {})}
                     for c in req.classes],
        **({"levers": levers} if (levers := req.levers.to_json()) else {}),
        "plans": [plan_json(p) for p in result.plans],
        "family_bests": [plan_json(p) for p in result.family_bests],
        "solver": dict(result.solver),
        "notes": result.notes,
        "wall_time_s": result.wall_s,
    }


def result_markdown(result: Result, req: Request, launch: bool = False) -> str:
    lines = [f"### servplan: {req.model.name} ({req.objective})", ""]
    for c in req.classes:
        lines.append(f"- class `{c.name}`: ISL {c.isl}, OSL {c.osl}" + (f", {c.rate_rps:g} req/s" if c.rate_rps else "")
                     + f"; SLO TTFT ≤ {c.slo.ttft_ms:g} ms, TPOT ≤ {c.slo.tpot_ms:g} ms at p{c.slo.percentile:g}")
    lines += [f"- note: {n}" for n in result.notes]
    with_energy = any(p.energy is not None for p in result.plans + result.family_bests)
    lines += ["", "| # | GPUs | instances | goodput req/s | tok/s/GPU | $/h | $/M tok | TTFT ms | TPOT ms | binding |"
              + (" W | J/tok |" if with_energy else ""),
              "|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if with_energy else "")]
    for p in result.plans + result.family_bests:
        inst = "<br>".join(instance_label(i) for i in p.instances)
        gpus = ", ".join(f"{n}× {g}" for g, n in sorted(p.gpus.items()))
        lines.append(f"| {p.family or p.rank} | {gpus} | {inst} | {p.goodput_rps:.2f} | {p.tokens_per_s_per_gpu:,.0f} | "
                     f"{p.cost_usd_per_h:,.2f} | {p.usd_per_million_tokens:,.2f} | {p.predicted['ttft_ms']:,.0f} | "
                     f"{p.predicted['tpot_ms']:,.1f} | {p.binding} |"
                     + ((f" {p.energy['watts']:,.0f} | {p.energy['joules_per_token']:.3g} |" if p.energy else " - | - |")
                        if with_energy else ""))
    s = result.solver
    lines += ["", f"solver: {s['backend']} {s['status']}, gap {s['gap']:.2%}, {s['candidates']} instance types"]
    if launch and result.plans:
        lines += ["", "```bash"] + [f"# {c.role} ×{c.replicas}\n{c.shell}" for c in launch_for(result.plans[0], req)]
        lines.append("```")
    return "\n".join(lines) + "\n"


def result_text(result: Result, req: Request, sweep_rows: list[dict] | None, fmt: str, launch: bool) -> str:
    """`planner optimize`'s output as text: the sweep's CSV when there is one, else JSON or markdown."""
    from planner.render.jsonio import canonical_json

    if sweep_rows is not None:
        return sweep_csv(sweep_rows)
    if fmt == "json":
        return canonical_json(result_json(result, req, launch))
    return result_markdown(result, req, launch)


def result_view(result: Result, req: Request, launch: bool = False) -> list[Block]:
    """The table form of `planner optimize`: the request, ranked plans, each family's best, what binds them."""
    cls = ", ".join(f"{k.name}: ISL {k.isl} / OSL {k.osl}" + (f" @ {k.rate_rps:g} req/s" if k.rate_rps else "")
                    + f" (TTFT ≤ {k.slo.ttft_ms:g} ms, TPOT ≤ {k.slo.tpot_ms:g} ms at p{k.slo.percentile:g})"
                    for k in req.classes)
    out: list[Block] = [f"{req.model.name} — {cls}; objective {req.objective}, engine {req.engine}, {req.dtype} "
                        f"weights", *(f"note: {n}" for n in result.notes)]
    p_label = "/".join(sorted({f"p{k.slo.percentile:g}" for k in req.classes}))
    cols = ["#", "instances", "GPUs", "req/s", "tok/s/GPU", "$/h", "$/Mtok", f"TTFT {p_label}", f"TPOT {p_label}"]
    with_energy = any(p.energy is not None for p in result.plans + result.family_bests)
    if with_energy:
        cols += ["W", "J/tok"]

    def row(p: Plan) -> list:
        return [FAMILY_LABEL.get(p.family, str(p.rank)), "\n".join(instance_label(i) for i in p.instances),
                "\n".join(f"{n} {g}" for g, n in sorted(p.gpus.items())), f"{p.goodput_rps:,.2f}",
                f"{p.tokens_per_s_per_gpu:,.0f}", f"{p.cost_usd_per_h:,.2f}", f"{p.usd_per_million_tokens:,.2f}",
                f"{p.predicted['ttft_ms']:,.0f}", f"{p.predicted['tpot_ms']:,.1f}"] + (
            ([f"{p.energy['watts']:,.0f}", f"{p.energy['joules_per_token']:.3g}"] if p.energy else ["-", "-"])
            if with_energy else [])

    for title, plans in (("ranked plans", result.plans), ("best plan of each family", result.family_bests)):
        if plans:
            out.append(table(title, cols, [row(p) for p in plans], caption="latencies in ms",
                             no_wrap=frozenset({"#", "instances", "GPUs"})))
    out.append("binding constraints:")
    out += [f"  {FAMILY_LABEL.get(p.family, p.rank)}: {p.binding}" for p in result.plans + result.family_bests]
    s = result.solver
    out.append(f"solver: {s['backend']} {s['status']} (gap {s['gap']:.2%}) in {s['time_s']:.2f} s over "
               f"{s['candidates']} instance types ({s['evaluated']} evaluated); total {result.wall_s:.2f} s")
    if launch and result.plans:
        out.append("\nlaunch plan #1")
        for cmd in launch_for(result.plans[0], req):
            out += [f"# {cmd.role} ×{cmd.replicas}" + (f" — {cmd.note}" if cmd.note else ""), cmd.shell]
    return out


# ---- HTML -------------------------------------------------------------------------------------------------

def single_type_points(result: Result, req: Request) -> list[dict]:
    """Every evaluated collocated instance type deployed alone, at every count the inventory and budget allow
    (up to what the demand needs): the cloud of alternatives the chosen plans are compared against."""
    pts = []
    total_rate = sum(c.rate_rps for c in req.classes)
    for c in result.candidates:
        caps = [c.capacity[k.name].rate_rps for k in req.classes]
        if c.role != Role.agg or min(caps) <= 0:
            continue
        per_instance = len(caps) / sum(1 / x for x in caps)  # an equal mix of the classes
        limit = req.inventory.get(c.gpu, 0) // c.gpus if req.inventory else 64
        if req.budget_usd_per_h:
            limit = min(limit, int(req.budget_usd_per_h // c.cost_usd_per_h))
        if total_rate:
            limit = min(limit, math.ceil(total_rate / per_instance))
        step = max(1, limit // 40)
        for n in range(step, limit + 1, step):
            rate = min(n * per_instance, total_rate) if total_rate else n * per_instance
            pts.append({"name": c.name, "cost_usd_per_h": n * c.cost_usd_per_h, "goodput_rps": rate, "count": n})
    return pts


def _pareto_svg(points: list[dict], chosen: list[dict], width: int = 720, height: int = 420) -> str:
    allp = points + chosen
    if not allp:
        return "<p>no plans to chart</p>"
    xmax = max(p["cost_usd_per_h"] for p in allp) * 1.08 or 1
    ymax = max(p["goodput_rps"] for p in allp) * 1.08 or 1
    left, bottom, top, right = 70, 50, 20, 20

    def xy(p):
        x = left + p["cost_usd_per_h"] / xmax * (width - left - right)
        y = height - bottom - p["goodput_rps"] / ymax * (height - bottom - top)
        return x, y

    frontier, best = [], -1.0
    for p in sorted(allp, key=lambda p: (p["cost_usd_per_h"], -p["goodput_rps"])):
        if p["goodput_rps"] > best:
            frontier.append(p)
            best = p["goodput_rps"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
           f'aria-label="cost versus goodput">',
           f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#333"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#333"/>']
    for i in range(6):
        xv, yv = xmax * i / 5, ymax * i / 5
        x, _ = xy({"cost_usd_per_h": xv, "goodput_rps": 0})
        _, y = xy({"cost_usd_per_h": 0, "goodput_rps": yv})
        out.append(f'<text x="{x:.1f}" y="{height - bottom + 18}" font-size="11" text-anchor="middle">${xv:,.0f}</text>')
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{yv:,.1f}</text>')
    out.append(f'<text x="{(left + width) / 2}" y="{height - 10}" font-size="12" text-anchor="middle">cost ($/h)</text>')
    out.append(f'<text x="16" y="{(top + height - bottom) / 2}" font-size="12" text-anchor="middle" '
               f'transform="rotate(-90 16 {(top + height - bottom) / 2})">goodput (req/s)</text>')
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(xy(p) for p in frontier))
    out.append(f'<path d="{path}" fill="none" stroke="#999" stroke-dasharray="4 3"/>')
    for p in points:
        x, y = xy(p)
        out.append(f'<circle class="evaluated" cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="#8aa7c9">'
                   f'<title>{html.escape(p["name"])}: ×{p["count"]}, ${p["cost_usd_per_h"]:,.2f}/h, '
                   f'{p["goodput_rps"]:.2f} req/s</title></circle>')
    for k, p in enumerate(chosen):
        x, y = xy(p)
        out.append(f'<circle class="chosen" cx="{x:.1f}" cy="{y:.1f}" r="6" fill="#d9480f" stroke="#000">'
                   f'<title>plan {html.escape(str(p["label"]))}: ${p["cost_usd_per_h"]:,.2f}/h, '
                   f'{p["goodput_rps"]:.2f} req/s</title></circle>')
        out.append(f'<text x="{x + 8:.1f}" y="{y - 8 + 12 * k:.1f}" font-size="11">{html.escape(str(p["label"]))}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _breakdown_html(plan: Plan, req: Request) -> str:
    """Decode-iteration time by op for each instance group of the plan, at its routed load."""
    from planner.capacity.estimate import breakdown_rows
    from planner.core.parallel import ParallelConfig
    from planner.perf.step import StepShape

    builder = instance_builder(req)
    parts = []
    cls = req.classes[0]
    for inst in plan.instances:
        if inst.role == Role.prefill:
            shape = StepShape(prefill_tokens=cls.isl, prefill_seq_len=cls.isl)
        else:
            shape = StepShape(max(inst.max_batch * inst.utilization, 1.0), cls.isl + cls.osl / 2)
        setup = builder.build(inst.gpu, ParallelConfig(inst.tp, inst.pp, inst.ep, inst.dp), inst.chunk_tokens,
                              inst.skew, inst.spec_k or 0)
        rows = breakdown_rows(setup.step(shape))
        bars = "".join(f'<tr><td>{html.escape(r["op"])}</td><td>{r["bound"]}</td><td>{r["time_ms"]:.3f}</td>'
                       f'<td><div class="bar" style="width:{max(r["share"], 0.002) * 300:.0f}px"></div></td></tr>'
                       for r in rows)
        what = "prefill of one prompt" if inst.role == Role.prefill else "decode iteration at the routed batch"
        parts.append(f"<h4>{html.escape(instance_label(inst))} — "
                     f"{what} (class {html.escape(cls.name)})</h4><table class='bd'><tr><th>op</th><th>bound</th>"
                     f"<th>ms</th><th>share</th></tr>{bars}</table>")
    return "\n".join(parts)


def sweep_csv(rows: list[dict]) -> str:
    cols = ["rate_rps", "goodput_rps", "cost_usd_per_h", "usd_per_million_tokens", "gpus", "mode", "status", "binding"]
    lines = [",".join(cols)]
    for r in rows:
        lines.append(",".join(f"{r[c]:.6g}" if isinstance(r[c], float) else f'"{r[c]}"' if "," in str(r[c])
                              else str(r[c]) for c in cols))
    return "\n".join(lines) + "\n"


def _sweep_svg(rows: list[dict]) -> str:
    """Cost of the best plan against the requested rate (infeasible rates left out)."""
    ok = [r for r in rows if r["status"] == "ok"]
    pts = [{"name": f"{r['rate_rps']:.3g} req/s", "cost_usd_per_h": r["cost_usd_per_h"],
            "goodput_rps": r["goodput_rps"], "count": r["gpus"]} for r in ok]
    return _pareto_svg(pts, [])


def result_html(result: Result, req: Request, sweep_rows: list[dict] | None = None) -> str:
    """One self-contained HTML page (no external assets): ranked plans, Pareto chart, latency breakdowns.
    The JSON document is embedded verbatim in <script id="plan-data"> so tools can read it back."""
    from planner.render.jsonio import canonical_json

    doc = result_json(result, req)
    plans = result.plans + result.family_bests
    chosen = [{"label": p.family or p.rank, "cost_usd_per_h": p.cost_usd_per_h, "goodput_rps": p.goodput_rps}
              for p in plans]
    rows = "".join(
        f'<tr class="plan"><td>{html.escape(str(p.family or p.rank))}</td><td>{html.escape(p.mode)}</td>'
        f'<td>{"<br>".join(html.escape(instance_label(i)) for i in p.instances)}</td>'
        f'<td class="goodput">{p.goodput_rps:.2f}</td><td>{p.tokens_per_s_per_gpu:,.0f}</td>'
        f'<td class="cost">{p.cost_usd_per_h:.2f}</td><td>{p.usd_per_million_tokens:.2f}</td>'
        f'<td>{p.predicted["ttft_ms"]:,.0f}</td><td>{p.predicted["tpot_ms"]:,.1f}</td>'
        f'<td>{html.escape(p.binding)}</td>'
        + (f'<td class="watts">{p.energy["watts"]:,.0f}</td><td class="jpt">{p.energy["joules_per_token"]:.3g}</td>'
           if p.energy is not None else '') + '</tr>' for p in plans)
    energy_th = "<th>W</th><th>J/tok</th>" if any(p.energy is not None for p in plans) else ""
    classes = "".join(f"<li>{html.escape(c.name)}: ISL {c.isl}, OSL {c.osl}"
                      + (f", {c.rate_rps:g} req/s" if c.rate_rps else "")
                      + f"; TTFT ≤ {c.slo.ttft_ms:g} ms, TPOT ≤ {c.slo.tpot_ms:g} ms at p{c.slo.percentile:g}</li>"
                      for c in req.classes)
    breakdowns = "".join(f"<h3>plan {html.escape(str(p.family or p.rank))}</h3>{_breakdown_html(p, req)}"
                         for p in result.plans)
    payload = canonical_json(doc).replace("</", "<\\/")
    s = result.solver
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>servplan: {html.escape(req.model.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin: 8px 0 16px; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; font-size: 13px; vertical-align: top; }}
th {{ background: #f3f3f3; }}
.bar {{ height: 10px; background: #d9480f; }}
.note {{ color: #555; font-size: 13px; }}
</style></head><body>
<h1>servplan — {html.escape(req.model.name)}</h1>
<p>objective <b>{html.escape(req.objective)}</b>, engine {html.escape(req.engine)}, {html.escape(req.dtype)} weights,
{html.escape(req.kv_dtype)} KV cache.</p><ul>{classes}</ul>
{''.join(f'<p class="note">note: {html.escape(n)}</p>' for n in result.notes)}
<h2>Ranked plans</h2>
<table id="plans"><tr><th>#</th><th>mode</th><th>instances</th><th>goodput req/s</th><th>tok/s/GPU</th><th>$/h</th>
<th>$/M tok</th><th>TTFT ms</th><th>TPOT ms</th><th>binding</th>{energy_th}</tr>{rows}</table>
<p class="note">solver {html.escape(str(s["backend"]))} {html.escape(str(s["status"]))}, gap {s["gap"]:.2%},
{s["candidates"]} instance types ({s["evaluated"]} evaluated).</p>
<h2>Cost against goodput</h2>
<p class="note">Blue: every evaluated collocated instance type deployed alone, at every count the fleet, budget and demand allow;
orange: the chosen plans; dashed: the Pareto frontier.</p>
{_pareto_svg(single_type_points(result, req), chosen)}
{"<h2>Rate sweep</h2><p class='note'>Best plan's cost and goodput at each swept request rate.</p>" + _sweep_svg(sweep_rows) if sweep_rows else ""}
<h2>Latency breakdown</h2>{breakdowns}
<script type="application/json" id="plan-data">{payload}</script>
</body></html>
"""
