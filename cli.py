"""`planner` command line: parses flags, calls planner / solvers / hwdb, renders with rich. No modelling here.

Exit codes: 0 ok, 1 infeasible (the binding constraint and what would fix it), 2 bad input (one line).
"""

from __future__ import annotations

import functools
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="servplan: plan LLM serving deployments (GPU mix, parallelism, P/D split) under latency SLOs.")
hw_app = typer.Typer(no_args_is_help=True, help="The hardware database.")
model_app = typer.Typer(no_args_is_help=True, help="Bundled and user model specs.")
app.add_typer(hw_app, name="hw")
app.add_typer(model_app, name="model")


class Fmt(str, Enum):
    table = "table"
    json = "json"


class PlanFmt(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _fail(code: int, message: str) -> None:
    _console(stderr=True).print(f"[bold red]error:[/] {message}" if code == 2 else f"[bold yellow]infeasible:[/] "
                                f"{message}", markup=True)
    raise typer.Exit(code)


def guarded(fn):
    """Turn our domain errors into one-line messages and exit codes; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from hwdb import HwdbError
        from planner.errors import InfeasibleError, PlannerInputError
        from solvers import SolverInputError

        try:
            return fn(*args, **kwargs)
        except InfeasibleError as e:
            msg = str(e) + (f"\n  binding: {e.binding}" if e.binding else "") + (f"\n  to fix: {e.hint}" if e.hint
                                                                                 else "")
            _fail(1, msg)
        except (PlannerInputError, HwdbError, SolverInputError) as e:
            _fail(2, str(e).splitlines()[0] if str(e) else type(e).__name__)

    return wrapper


def _emit(text: str, out: Optional[Path] = None) -> None:
    if out:
        out.write_text(text)
        _console(stderr=True).print(f"wrote {out}")
    else:
        sys.stdout.write(text)


def _table(title: str, columns: list[str], rows: list[list], caption: str = ""):
    from rich.table import Table

    t = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    for c in columns:
        t.add_column(c, justify="left" if c in ("", "GPU", "name", "op", "field", "role", "gpu") else "right")
    for r in rows:
        t.add_row(*[str(x) for x in r])
    return t


# ---- hw ----------------------------------------------------------------------------------------------------

@hw_app.command("list")
@guarded
def hw_list(fmt: Fmt = typer.Option(Fmt.table, "--format", help="table or json"),
            hwdb_dir: Optional[list[Path]] = typer.Option(None, "--hwdb", help="Extra folder of GPU YAMLs.")):
    """List the accelerators in the hardware database."""
    import hwdb
    from planner.jsonio import canonical_json

    gpus = hwdb.list_gpus(extra_dirs=tuple(hwdb_dir or ()))
    if fmt == Fmt.json:
        _emit(canonical_json([_gpu_summary(g) for g in gpus]))
        return
    rows = [[g.name, g.display_name, f"{g.memory_gb:g}", f"{g.mem_bw_gbps:,.0f}", f"{g.peak_tflops.get('bf16', 0):,.0f}",
             f"{g.peak_tflops['fp8']:,.0f}" if "fp8" in g.peak_tflops else "-",
             f"{g.peak_tflops['fp4']:,.0f}" if "fp4" in g.peak_tflops else "-",
             f"{g.scaleup_bw_gbps:g}×{g.scaleup_domain_gpus}", f"${g.cost_usd_per_h:.2f}"] for g in gpus]
    _console().print(_table("GPUs", ["name", "", "HBM GB", "HBM GB/s", "bf16 TF", "fp8 TF", "fp4 TF",
                                     "scale-up GB/s×GPUs", "$/GPU-h"], rows))


def _gpu_summary(g) -> dict:
    return dict(name=g.name, display_name=g.display_name, vendor=g.vendor, memory_gb=g.memory_gb,
                mem_bw_gbps=g.mem_bw_gbps, peak_tflops=g.peak_tflops, scaleup_bw_gbps=g.scaleup_bw_gbps,
                scaleup_domain_gpus=g.scaleup_domain_gpus, scaleout_bw_gbps=g.scaleout_bw_gbps,
                cost_usd_per_h=g.cost_usd_per_h, tdp_w=g.tdp_w)


@hw_app.command("show")
@guarded
def hw_show(gpu: str = typer.Argument(..., help="GPU name or alias, e.g. h100_sxm"),
            fmt: Fmt = typer.Option(Fmt.table, "--format"),
            hwdb_dir: Optional[list[Path]] = typer.Option(None, "--hwdb")):
    """Show one accelerator with the source of every number."""
    import dataclasses

    import hwdb
    from planner.jsonio import canonical_json

    g = hwdb.load_gpu(gpu, extra_dirs=tuple(hwdb_dir or ()))
    if fmt == Fmt.json:
        d = dataclasses.asdict(g)
        d.pop("path", None)
        _emit(canonical_json(d))
        return
    rows = [[k, v, g.sources.get(k, "")] for k, v in _gpu_summary(g).items() if k not in ("name",)]
    eff = g.efficiency
    rows.append(["efficiency", f"gemm {eff.gemm}, attention {eff.attention}, memory {eff.memory}, "
                 f"scale-up {eff.scaleup}", eff.fitted_on])
    _console().print(_table(f"{g.name} ({g.path})", ["field", "value", "source"], rows))


# ---- model ---------------------------------------------------------------------------------------------------

@model_app.command("show")
@guarded
def model_show(model: str = typer.Argument(..., help="Bundled name, HF id, our YAML or a config.json path."),
               fmt: Fmt = typer.Option(Fmt.table, "--format"),
               engine: str = typer.Option("vllm", help="Engine whose memory reserve to assume.")):
    """Parameters, KV bytes per token, weight memory per dtype, and the fewest GPUs of each type that hold it."""
    import hwdb
    from planner.jsonio import canonical_json
    from planner.model import load_model
    from planner.perf.memory import min_gpus_to_hold

    m = load_model(model)
    eng = hwdb.load_engine(engine)
    dtypes = ["bf16", "fp8", "fp4"]
    weights = {d: m.weight_bytes(d) / 1e9 for d in dtypes}
    fit = {}
    for g in hwdb.list_gpus():
        fit[g.name] = {}
        for d in dtypes:
            r = min_gpus_to_hold(m, g, d, eng)
            fit[g.name][d] = None if r is None else {"gpus": r[0], "config": r[1].label()}
    data = dict(name=m.name, hf_id=m.hf_id, params_total=m.total_params, params_active=m.active_params,
                moe=m.is_moe, mla=m.is_mla, layers=m.num_layers, kv_bytes_per_token_bf16=m.kv_bytes_per_token("bf16"),
                kv_bytes_per_token_fp8=m.kv_bytes_per_token("fp8"), weights_gb=weights, min_gpus=fit,
                source=m.source)
    if fmt == Fmt.json:
        _emit(canonical_json(data))
        return
    c = _console()
    kind = "MoE" if m.is_moe else "dense"
    c.print(f"[bold]{m.name}[/] ({m.hf_id}) — {kind}{', MLA' if m.is_mla else ''}, {m.num_layers} layers, "
            f"{m.total_params / 1e9:.2f} B params, {m.active_params / 1e9:.2f} B active per token")
    c.print(f"KV cache: {m.kv_bytes_per_token('bf16') / 1024:,.0f} KiB/token bf16, "
            f"{m.kv_bytes_per_token('fp8') / 1024:,.0f} KiB/token fp8")
    c.print("weights: " + ", ".join(f"{d} {w:,.1f} GB" for d, w in weights.items()))
    rows = [[g] + [f"{v['gpus']} ({v['config']})" if v else "-" for v in fit[g].values()] for g in fit]
    c.print(_table(f"fewest GPUs that hold the weights + one {4096}-token sequence ({engine} memory reserve)",
                   ["gpu"] + dtypes, rows))


if __name__ == "__main__":
    app()
