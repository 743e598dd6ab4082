"""`planner` command line: parses flags, calls planner / solvers / hwdb, prints with rich. No modelling here: each
command calls planner.commands (or planner.search.optimize) and prints a planner.render view or its JSON document.

Exit codes: 0 ok, 1 infeasible (the binding constraint and what would fix it), 2 bad input (one line naming the
flag or field, checked before any work), 3 an internal error (one line asking for a report; SERVPLAN_DEBUG=1
re-raises it with its traceback), 130 interrupted (Ctrl-C), 141 the reader of stdout went away (`| head`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional, cast

import typer
from typer.core import TyperGroup

from planner.commands import CALIBRATE_HELP
from planner.core.vocab import Engine, Mode, Objective

_CLICK = sys.modules[typer.BadParameter.__module__]  # click.exceptions, or the copy of it typer >= 0.20 carries
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader went away (`| head`)
_LABEL = {1: "[bold yellow]infeasible:[/]", 2: "[bold red]error:[/]", 3: "[bold red]internal error:[/]"}


class _OneLineUsageErrors(TyperGroup):
    """A flag click/typer refuses (a value not among the choices, out of range, missing) is one line naming it,
    exit 2, like the flags planner itself checks; typer would draw a multi-line box."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except _CLICK.UsageError as e:
            if isinstance(e, getattr(_CLICK, "NoArgsIsHelpError", ())):  # `planner hw`: the help, as typer does
                raise
            _fail(2, e.format_message())


app = typer.Typer(cls=_OneLineUsageErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="servplan: plan LLM serving deployments (GPU mix, parallelism, P/D split) under latency SLOs.",
                  epilog="Exit codes: 0 ok, 1 infeasible, 2 bad input, 3 internal error (please report it; "
                         "SERVPLAN_DEBUG=1 shows the traceback), 130 interrupted.")
hw_app = typer.Typer(no_args_is_help=True, help="The hardware database.")
model_app = typer.Typer(no_args_is_help=True, help="Bundled and user model specs.")
app.add_typer(hw_app, name="hw")
app.add_typer(model_app, name="model")


Fmt = StrEnum("Fmt", ["table", "json"])  # values: the lower-case names
PlanFmt = StrEnum("PlanFmt", ["table", "json", "markdown"])


# ---- options shared by several commands: declared once ------------------------------------------------------
FormatOpt = Annotated[Fmt, typer.Option("--format", help="A table or JSON.")]
HwdbOpt = Annotated[Optional[list[Path]], typer.Option("--hwdb", metavar="DIR", help="Extra folder of GPU YAMLs.")]
CalibrationOpt = Annotated[Optional[Path], typer.Option("--calibration", help="YAML from planner calibrate.")]
EngineOpt = Annotated[Engine, typer.Option("--engine", help="Serving engine (its memory reserve and overheads).")]
DtypeOpt = Annotated[Optional[str], typer.Option("--dtype", help="Weight dtype: bf16, fp8, fp4, int4.")]
KvDtypeOpt = Annotated[Optional[str], typer.Option("--kv-dtype", help="KV-cache dtype: bf16, fp8 or int4.")]
SloOpt = Annotated[Optional[str], typer.Option("--slo", help="ttft=2s,tpot=50ms,p=90 (times need ms or s; p applies "
                                                              "to both).")]
SeedOpt = Annotated[int, typer.Option("--seed")]
ModelArg = Annotated[str, typer.Argument(help="Bundled name, HF id, our YAML or a config.json path.")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", help="Write the output to FILE.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="No progress display on stderr.")]
Degree = Annotated[int, typer.Option(min=1)]


# ---- exit codes ---------------------------------------------------------------------------------------------

def _console(stderr: bool = False):
    """Rich console; when the output is not a terminal (a pipe, a file) tables are laid out 140 wide."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or "COLUMNS" in os.environ else 140
    console = Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)
    # rich's own handler exits 1, which means "infeasible" here
    console.on_broken_pipe = _broken_pipe  # type: ignore[method-assign]
    return console


def _broken_pipe() -> None:
    """The reader of stdout went away: stop quietly with the SIGPIPE exit code."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit would fail again
    raise SystemExit(EXIT_BROKEN_PIPE)


def _say(code: int, message: str) -> None:
    from rich.markup import escape

    _console(stderr=True).print(f"{_LABEL[code]} {escape(message)}", markup=True)


def _fail(code: int, message: str) -> None:
    _say(code, message)
    raise typer.Exit(code)


def _internal(e: Exception) -> int:
    """An exception we did not expect: one line asking for a report, exit 3 (never 1, which means infeasible).
    SERVPLAN_DEBUG=1 re-raises it for developers."""
    if os.environ.get("SERVPLAN_DEBUG", "") not in ("", "0"):
        raise e
    text = str(e).strip().splitlines()
    _say(3, f"{type(e).__name__}: {text[0] if text else '(no message)'} — please report it with the command line")
    return 3


def guarded(fn):
    """Turn our domain errors into one-line messages and exit codes, anything else into exit 3; never a
    traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from hwdb import HwdbError
        from planner.core.errors import InfeasibleError, PlannerInputError
        from solvers import SolverInputError

        try:
            return fn(*args, **kwargs)
        except InfeasibleError as e:
            _fail(1, str(e) + (f"\n  binding: {e.binding}" if e.binding else "")
                  + (f"\n  to fix: {e.hint}" if e.hint else ""))
        except (PlannerInputError, HwdbError, SolverInputError) as e:
            _fail(2, str(e).splitlines()[0] if str(e) else type(e).__name__)
        except (typer.Exit, typer.Abort, _CLICK.ClickException):
            raise
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except BrokenPipeError:
            _broken_pipe()
        except Exception as e:
            raise typer.Exit(_internal(e)) from None

    return wrapper


def main() -> None:
    """Console-script and `python -m cli` entry point: `app` with a last guard for errors outside a command."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        sys.exit(_internal(e))


# ---- output -------------------------------------------------------------------------------------------------

def _emit(text: str, out: Optional[Path] = None) -> None:
    if out:
        out.write_text(text)
        _console(stderr=True).print(f"wrote {out}")
    else:
        sys.stdout.write(text)


def _print(data, fmt: str, view) -> None:
    """`data` as canonical JSON for --format json, else the text view `view()` (planner.render blocks)."""
    if fmt == Fmt.json:
        from planner.render.jsonio import canonical_json

        _emit(canonical_json(data))
    else:
        _show(view())


def _show(blocks, out: Optional[Path] = None) -> None:
    """Lines and planner.render.Table blocks on stdout (and, with `out`, the same text into that file)."""
    from rich.table import Table

    from planner.render import TEXT_COLUMNS

    c = _console()
    c.record = out is not None
    for b in blocks:
        if isinstance(b, str):
            c.print(b, markup=False)
            continue
        t = Table(title=b.title, caption=b.caption, title_justify="left", caption_justify="left")
        for col in b.columns:
            t.add_column(col, justify="left" if col in TEXT_COLUMNS else "right", no_wrap=col in b.no_wrap)
        for r in b.rows:
            t.add_row(*r)
        c.print(t)
    if out is not None:
        out.write_text(c.export_text())


@contextlib.contextmanager
def _progress(quiet: bool):
    """A rich progress bar on stderr for the search (a callback (stage, done, total)), only when stderr is a
    terminal and not --quiet; else None."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=_console(stderr=True), transient=True) as bar:
        task = bar.add_task("starting", total=1)
        yield lambda stage, done, total: bar.update(task, description=stage, completed=done, total=total)


# ---- hw / model ---------------------------------------------------------------------------------------------

@hw_app.command("list")
@guarded
def hw_list(fmt: FormatOpt = Fmt.table, hwdb_dir: HwdbOpt = None):
    """List the accelerators in the hardware database."""
    import hwdb
    from planner.render.views import gpu_summary, hw_list_view

    gpus = hwdb.list_gpus(extra_dirs=tuple(hwdb_dir or ()))
    _print([gpu_summary(g) for g in gpus], fmt, lambda: hw_list_view(gpus))


@hw_app.command("show")
@guarded
def hw_show(gpu: Annotated[str, typer.Argument(help="GPU name or alias, e.g. h100_sxm")],
            fmt: FormatOpt = Fmt.table, hwdb_dir: HwdbOpt = None):
    """Show one accelerator with the source of every number."""
    import hwdb
    from planner.render.views import gpu_json, hw_show_view

    g = hwdb.load_gpu(gpu, extra_dirs=tuple(hwdb_dir or ()))
    _print(gpu_json(g), fmt, lambda: hw_show_view(g))


@model_app.command("show")
@guarded
def model_show(model: ModelArg, fmt: FormatOpt = Fmt.table, engine: EngineOpt = Engine.vllm):
    """Parameters, KV bytes per token, weight memory per dtype, and the fewest GPUs of each type that hold it."""
    from planner.commands import MODEL_SHOW_CONTEXT, model_facts
    from planner.render.views import model_view

    data = model_facts(model, engine)
    _print(data, fmt, lambda: model_view(data, engine, MODEL_SHOW_CONTEXT))


# ---- estimate / optimize ------------------------------------------------------------------------------------

@app.command()
@guarded
def estimate(model: ModelArg,
             gpu: Annotated[str, typer.Option("--gpu", help="GPU type, e.g. h100_sxm")],
             isl: Annotated[int, typer.Option("--isl", min=1, help="Prompt tokens.")],
             osl: Annotated[int, typer.Option("--osl", min=1, help="Output tokens.")],
             tp: Degree = 1, pp: Degree = 1, ep: Degree = 1, dp: Degree = 1,
             batch: Annotated[Optional[float], typer.Option(help="Concurrent requests (closed loop).")] = None,
             rate: Annotated[Optional[float], typer.Option(help="Arrival rate, req/s (open loop).")] = None,
             chunk: Annotated[Optional[int], typer.Option(min=1, help="Chunked-prefill token budget.")] = None,
             dtype: DtypeOpt = "bf16", kv_dtype: KvDtypeOpt = "bf16", engine: EngineOpt = Engine.vllm,
             slo: SloOpt = None, calibration: CalibrationOpt = None, fmt: FormatOpt = Fmt.table):
    """Latency and throughput of one instance (offline max batch unless --batch or --rate); --slo also reports
    goodput."""
    from planner import commands
    from planner.render.views import estimate_json, estimate_view

    run = commands.estimate(model, gpu, tp=tp, pp=pp, ep=ep, dp=dp, isl=isl, osl=osl, batch=batch, rate=rate,
                            chunk=chunk, dtype=cast(str, dtype), kv_dtype=cast(str, kv_dtype), engine=engine, slo=slo,
                            calibration=calibration)
    _print(estimate_json(run), fmt, lambda: estimate_view(run, slo))


@app.command()
@guarded
def optimize(model: Annotated[str, typer.Argument(help="Scenario YAML, bundled model name, our YAML or config.json.")],
             slo: SloOpt = None,
             workload: Annotated[Optional[str], typer.Option(help="isl=2048,osl=256,rate=20 or w.yaml.")] = None,
             gpus: Annotated[Optional[str], typer.Option(help="Fleet: h100_sxm:16,a100_80g:32.")] = None,
             budget: Annotated[Optional[str], typer.Option(help="Max $/h, e.g. 120/h.")] = None,
             objective: Annotated[Optional[Objective], typer.Option(
                 help="goodput (default), cost or energy (min W at the demand).")] = None,
             mode: Annotated[Optional[Mode], typer.Option(
                 help="auto (default), agg, disagg, or multiplex (auto + intra-GPU P/D).")] = None,
             engine: Annotated[Optional[Engine], typer.Option(help="Serving engine (default vllm).")] = None,
             dtype: DtypeOpt = None, kv_dtype: KvDtypeOpt = None,
             top: Annotated[Optional[int], typer.Option(min=1, max=50, help="How many ranked plans.")] = None,
             fmt: Annotated[PlanFmt, typer.Option("--format", help="A table, JSON or markdown.")] = PlanFmt.table,
             out: OutOpt = None,
             launch: Annotated[bool, typer.Option("--launch", help="Print vLLM / SGLang launch commands.")] = False,
             calibration: CalibrationOpt = None,
             backend: Annotated[str, typer.Option(help="MILP backend: highs or cbc.")] = "highs",
             expert_stats: Annotated[Optional[Path], typer.Option(help="CSV expert,count (MoE).")] = None,
             hwdb_dir: HwdbOpt = None,
             power_cap: Annotated[Optional[str], typer.Option(help="Board power cap per GPU type, h100_sxm=500,"
                                                              "b200=700 (W): lower clocks, lower peak FLOPs.")] = None,
             spec: Annotated[Optional[str], typer.Option(
                 help="Speculative decoding: draft=MODEL,k=4,accept=0.7 or mtp,k=1,accept=0.8 (k: the most draft "
                 "tokens tried).")] = None,
             kv_compression: Annotated[Optional[float], typer.Option(
                 help="P->D KV transfer compression ratio R (ships bytes/R).")] = None,
             link: Annotated[Optional[str], typer.Option(help="prefill-decode=100Gbps: P and D pools apart, joined by "
                                                         "one link of that bandwidth (Gbps bits, GBps bytes).")] = None,
             time_limit: Annotated[float, typer.Option(
                 min=0.1, max=86400.0, help="Wall-clock safety stop for the solvers, s. Plans do not depend on it "
                 "(the solvers stop at deterministic node limits); if it fires, the output says so.")] = 300.0,
             report: Annotated[Optional[Path], typer.Option(help="Also write a self-contained HTML report.")] = None,
             sweep: Annotated[Optional[str], typer.Option(help="rate=LOW..HIGH[:POINTS]: curves as CSV.")] = None,
             quiet: QuietOpt = False):
    """Ranked deployment plans: GPU mix, parallelism, agg vs P/D, chunk size — by goodput under the SLOs."""
    from planner.commands import given, writable
    from planner.core.bounds import MAX_TIME_LIMIT_S
    from planner.render.report import result_html, result_text, result_view
    from planner.search import optimize as opt
    from planner.search.scenario import build_request

    given("--time-limit", time_limit, 0.1, MAX_TIME_LIMIT_S, unit=" s")
    writable(out, "--out")
    writable(report, "--report")
    rates = opt.parse_sweep(sweep) if sweep is not None else None
    req = build_request(model, slo=slo, workload=workload, gpus=gpus, budget=budget, objective=objective, mode=mode,
                        engine=engine, dtype=dtype, kv_dtype=kv_dtype, top=top, power_cap=power_cap, spec=spec,
                        kv_compression=kv_compression, link=link, calibration=calibration,
                        expert_stats=expert_stats, backend=backend, time_limit_s=time_limit,
                        extra_hwdb=tuple(hwdb_dir or ()))
    with _progress(quiet) as progress:
        rows = opt.sweep(req, rates, progress) if rates is not None else None
        result = opt.optimize(req, progress)
    if report:
        report.write_text(result_html(result, req, rows))
        _console(stderr=True).print(f"wrote {report}")
    if rows is None and fmt == PlanFmt.table:
        _show(result_view(result, req, launch), out)
    else:
        _emit(result_text(result, req, rows, fmt, launch), out)


# ---- simulate / calibrate / experts -------------------------------------------------------------------------

@app.command()
@guarded
def simulate(plan: Annotated[Path, typer.Argument(help="JSON from `planner optimize --format json`.")],
             plan_rank: Annotated[int, typer.Option(min=1, help="Which ranked plan to simulate.")] = 1,
             rate: Annotated[Optional[float], typer.Option(
                 help="Total arrival rate, req/s (default: the plan's goodput).")] = None,
             duration_s: Annotated[float, typer.Option(min=1.0, help="Simulated arrival window.")] = 300.0,
             seed: SeedOpt = 0,
             trace: Annotated[Optional[Path], typer.Option(help="CSV arrival_s,isl,osl[,class] to replay.")] = None,
             router: Annotated[str, typer.Option(help="least_work, round_robin or random.")] = "least_work",
             calibration: CalibrationOpt = None,
             arrival: Annotated[Optional[str], typer.Option(
                 help="poisson or gamma(cv=2): override the plan workload's arrival process.")] = None,
             fmt: FormatOpt = Fmt.table):
    """Discrete-event check of a plan: Poisson, bursty (gamma) or traced arrivals, continuous batching, P/D."""
    from planner import commands
    from planner.render.views import simulate_view

    res = commands.simulate(plan, plan_rank=plan_rank, rate=rate, duration_s=duration_s, seed=seed, trace=trace,
                            router=router, calibration=calibration, arrival=arrival)
    _print(res.to_json(), fmt, lambda: simulate_view(res))


@app.command(help=CALIBRATE_HELP)
@guarded
def calibrate(measurements: Annotated[Path, typer.Argument(help="CSV of measured runs (columns above).")],
              out: Annotated[Path, typer.Option(help="Where to write the calibration YAML.")] = Path("calib.yaml"),
              fmt: FormatOpt = Fmt.table):
    from planner import commands
    from planner.render.views import calibration_view

    commands.writable(out, "--out")
    data = commands.calibrate(measurements, out)
    _print(data, fmt, lambda: calibration_view(data))


@app.command()
@guarded
def experts(model: Annotated[str, typer.Argument(help="A MoE model: bundled name or config path.")],
            ep: Annotated[int, typer.Option(min=1, help="Expert-parallel ranks.")],
            stats: Annotated[Optional[Path], typer.Option(help="CSV expert,count of routed tokens.")] = None,
            zipf: Annotated[float, typer.Option(min=0.0, help="Zipf exponent of the default loads.")] = 0.5,
            replicate: Annotated[int, typer.Option(min=0, help="Spare slots per rank for hot copies.")] = 0,
            seed: SeedOpt = 0,
            time_limit: Annotated[float, typer.Option(
                min=0.1, max=3600.0, help="CP-SAT deterministic time (about s on one idle core; the same placement "
                "on every machine). The wall clock stops it only at 20x (at least 60 s), and the output then says "
                "so.")] = 5.0,
            fmt: FormatOpt = Fmt.table):
    """Place one layer's experts on EP ranks (CP-SAT) and compare with round-robin."""
    from planner import commands
    from planner.render.views import experts_view

    data = commands.experts(model, ep=ep, stats=stats, zipf=zipf, replicate=replicate, seed=seed,
                            time_limit_s=time_limit)
    _print(data, fmt, lambda: experts_view(data, f"stats {stats}" if stats else f"Zipf s={zipf:g} loads"))


if __name__ == "__main__":
    main()
