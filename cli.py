"""`planner` command line: parses flags, calls planner / solvers / hwdb, renders with rich. No modelling here.

Exit codes: 0 ok, 1 infeasible (the binding constraint and what would fix it), 2 bad input (one line naming the
flag or field, checked before any work), 3 an internal error (one line asking for a report; SERVPLAN_DEBUG=1
re-raises it with its traceback), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import functools
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="servplan: plan LLM serving deployments (GPU mix, parallelism, P/D split) under latency SLOs.",
                  epilog="Exit codes: 0 ok, 1 infeasible, 2 bad input, 3 internal error (please report it; "
                         "SERVPLAN_DEBUG=1 shows the traceback), 130 interrupted.")
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
    """Rich console; when the output is not a terminal (a pipe, a file) tables are laid out 140 wide."""
    import os

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or "COLUMNS" in os.environ else 140
    console = Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)
    console.on_broken_pipe = _broken_pipe  # rich's own handler exits 1, which means "infeasible" here
    return console


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader went away (`| head`)


def _broken_pipe() -> None:
    """The reader of stdout went away: stop quietly with the SIGPIPE exit code."""
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit would fail again
    raise SystemExit(EXIT_BROKEN_PIPE)


_LABEL = {1: "[bold yellow]infeasible:[/]", 2: "[bold red]error:[/]", 3: "[bold red]internal error:[/]"}


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
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except BrokenPipeError:
            _broken_pipe()
        except Exception as e:
            if type(e).__module__.startswith(("typer.", "click.")):  # usage errors: typer (its vendored click) exits 2
                raise
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


def _writable(path: Optional[Path], flag: str) -> None:
    """An output file must be creatable or overwritable; checked before the work, not after it."""
    if path is None:
        return
    if path.is_dir():
        raise _bad(f"{flag}: '{path}' is a folder; give a file name")
    if not path.parent.is_dir():
        raise _bad(f"{flag}: folder '{path.parent}' does not exist")
    existed = path.exists()
    try:  # opening for append is the only check that also holds for root, read-only mounts and /proc
        with path.open("a"):
            pass
    except OSError as e:
        raise _bad(f"{flag}: '{path}' is not writable ({e.strerror})") from None
    if not existed:
        path.unlink()


def _bounded(flag: str, value, lo: float, hi: float, **kw) -> None:
    """A numeric flag (when given) is finite and within planner.bounds."""
    from planner.bounds import bounded

    if value is not None:
        bounded(value, flag, lo, hi, **kw)


def _emit(text: str, out: Optional[Path] = None) -> None:
    if out:
        out.write_text(text)
        _console(stderr=True).print(f"wrote {out}")
    else:
        sys.stdout.write(text)


def _table(title: str, columns: list[str], rows: list[list], caption: str = "", no_wrap: set = frozenset()):
    from rich.table import Table

    t = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    for c in columns:
        t.add_column(c, justify="left" if c in ("", "#", "GPU", "GPUs", "instances", "instance", "class", "name", "op", "field", "role",
                                                "gpu") else "right", no_wrap=c in no_wrap)
    for r in rows:
        t.add_row(*[_plain(x) for x in r])
    return t


def _plain(x) -> str:
    """A table cell as a person writes it, never a Python repr: {'bf16': 989.0} -> 'bf16 989', None -> '-'."""
    from collections.abc import Mapping

    if x is None:
        return "-"
    if isinstance(x, Mapping):
        return ", ".join(f"{k} {_plain(v)}" for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return ", ".join(_plain(v) for v in x)
    if isinstance(x, float):
        return f"{x:g}"
    return str(x)


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
    rows.append(["efficiency", f"gemm ({_plain(eff.gemm)}), attention {_plain(eff.attention)}, memory "
                 f"{_plain(eff.memory)}, scale-up {_plain(eff.scaleup)}", eff.fitted_on])
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


# ---- estimate ------------------------------------------------------------------------------------------------

def _setup(model, gpu, tp, pp, ep, dp, engine, dtype, kv_dtype, chunk, calibration, hwdb_dirs=()):
    from planner.instance import InstanceBuilder, Levers
    from planner.model import dtype_bytes, load_model
    from planner.parallel import ParallelConfig, check_parallel

    m = load_model(model)
    for field_name, d in (("--dtype", dtype), ("--kv-dtype", kv_dtype)):
        dtype_bytes(d, field_name)
    cal = None
    if calibration:
        from planner.calibrate import load_calibration

        cal = load_calibration(calibration)
    builder = InstanceBuilder(m, engine, dtype, kv_dtype, Levers(calibration=cal, hwdb_dirs=tuple(map(str, hwdb_dirs))))
    par = ParallelConfig(tp, pp, ep, dp)
    check_parallel(m, par, builder.gpu(gpu).scaleup_domain_gpus, dtype=dtype)
    return builder.build(gpu, par, chunk or 0)


@app.command()
@guarded
def estimate(model: str = typer.Argument(..., help="Bundled name, HF id, our YAML or a config.json path."),
             gpu: str = typer.Option(..., "--gpu", help="GPU type, e.g. h100_sxm"),
             tp: int = typer.Option(1, "--tp", min=1), pp: int = typer.Option(1, "--pp", min=1),
             ep: int = typer.Option(1, "--ep", min=1), dp: int = typer.Option(1, "--dp", min=1),
             isl: int = typer.Option(..., "--isl", min=1, help="Prompt tokens."),
             osl: int = typer.Option(..., "--osl", min=1, help="Output tokens."),
             batch: Optional[float] = typer.Option(None, "--batch", help="Concurrent requests (closed loop)."),
             rate: Optional[float] = typer.Option(None, "--rate", help="Arrival rate, req/s (open loop)."),
             chunk: Optional[int] = typer.Option(None, "--chunk", min=1, help="Chunked-prefill token budget."),
             dtype: str = typer.Option("bf16", "--dtype", help="Weight dtype: bf16, fp8, fp4, int4."),
             kv_dtype: str = typer.Option("bf16", "--kv-dtype", help="KV-cache dtype: bf16 or fp8."),
             engine: str = typer.Option("vllm", "--engine", help="vllm, sglang or trtllm."),
             slo: Optional[str] = typer.Option(None, "--slo", help="ttft=2s,tpot=50ms,p=90 (times need ms or s): also "
                                                                      "report goodput."),
             calibration: Optional[Path] = typer.Option(None, "--calibration", help="YAML from planner calibrate."),
             fmt: Fmt = typer.Option(Fmt.table, "--format")):
    """Latency and throughput of one instance (offline max batch unless --batch or --rate)."""
    from planner import estimate as est
    from planner.bounds import MAX_BATCH, MAX_CHUNK_TOKENS, MAX_GPUS_PER_TYPE, MAX_RATE_RPS, MAX_TOKENS, check_context
    from planner.jsonio import canonical_json
    from planner.workload import parse_slo

    if batch is not None and rate is not None:
        raise _bad("--batch/--rate: give one of them, not both")
    for flag, v in (("--isl", isl), ("--osl", osl)):
        _bounded(flag, v, 1, MAX_TOKENS, unit=" tokens")
    for flag, v in (("--tp", tp), ("--pp", pp), ("--ep", ep), ("--dp", dp)):
        _bounded(flag, v, 1, MAX_GPUS_PER_TYPE)
    _bounded("--batch", batch, 1, MAX_BATCH)
    _bounded("--rate", rate, 0, MAX_RATE_RPS, lo_open=True, unit=" req/s")
    _bounded("--chunk", chunk, 1, MAX_CHUNK_TOKENS, unit=" tokens")
    the_slo = parse_slo(slo) if slo is not None else None
    s = _setup(model, gpu, tp, pp, ep, dp, engine, dtype, kv_dtype, chunk, calibration)
    check_context(s.model, isl, osl, "--isl/--osl")
    if rate is not None:
        e = est.at_rate(s, isl, osl, rate)
    elif batch is not None:
        e = est.at_concurrency(s, isl, osl, batch)
    else:
        e = est.offline(s, isl, osl)
    goodput = None
    if the_slo is not None:
        from planner.serving import collocated_capacity
        from planner.workload import RequestClass

        goodput = collocated_capacity(s, RequestClass("estimate", isl, osl, 0.0, the_slo)).rate_rps
    mem = e.memory
    data = {"model": s.model.name, "gpu": s.gpu.name, "parallel": s.par.label(), "engine": s.engine.name,
            "dtype": dtype, "kv_dtype": kv_dtype, "isl": isl, "osl": osl, "batch": e.batch,
            "ttft_ms": e.ttft_ms, "tpot_ms": e.tpot_ms, "throughput_tokens_per_s": e.throughput_tokens_per_s,
            "tokens_per_s_per_gpu": e.tokens_per_s_per_gpu, "request_rate_rps": e.request_rate_rps,
            "goodput_rps": goodput, "chunk_tokens": s.chunk,
            "memory_gb": {"usable": mem.usable_gb, "weights": mem.weights_gb, "activations": mem.activations_gb,
                          "kv_cache": mem.kv_cache_gb, "max_batch": mem.max_batch},
            "breakdown": est.breakdown_rows(e.decode_step),
            "prefill_breakdown": est.breakdown_rows(e.prefill_step)}
    if fmt == Fmt.json:
        _emit(canonical_json(data))
        return
    c = _console()
    c.print(f"[bold]{s.model.name}[/] on {s.par.gpus}× {s.gpu.name} ({s.par.label()}, {engine}, {dtype} weights, "
            f"{kv_dtype} KV), ISL {isl} / OSL {osl}, batch {e.batch:.4g}")
    c.print(f"TTFT {e.ttft_ms:,.1f} ms   TPOT {e.tpot_ms:,.2f} ms   {e.throughput_tokens_per_s:,.0f} output tok/s   "
            f"{e.tokens_per_s_per_gpu:,.0f} tok/s/GPU   {e.request_rate_rps:.3g} req/s"
            + (f"   goodput {goodput:.3g} req/s under {slo}" if slo else ""))
    c.print(f"memory per GPU: {mem.weights_gb:.1f} GB weights + {mem.activations_gb:.1f} GB workspace + "
            f"{mem.kv_cache_gb:.1f} GB KV of {mem.usable_gb:.1f} GB usable → max batch {mem.max_batch}")
    for title, rows in (("decode iteration", data["breakdown"]), ("iteration carrying a prefill chunk", data["prefill_breakdown"])):
        c.print(_table(title, ["op", "kind", "ms", "share", "bound"],
                       [[r["op"], r["kind"], f"{r['time_ms']:.3f}", f"{r['share']:.0%}", r["bound"]] for r in rows]))


def _bad(message: str):
    from planner.errors import PlannerInputError

    return PlannerInputError(message)


# ---- optimize ------------------------------------------------------------------------------------------------

@app.command()
@guarded
def optimize(model: str = typer.Argument(..., help="Scenario YAML, bundled model name, our YAML or config.json."),
             slo: Optional[str] = typer.Option(None, "--slo", help="ttft=2s,tpot=50ms,p=90 (times need ms or s; p "
                                                                      "applies to both)."),
             workload: Optional[str] = typer.Option(None, "--workload", help="isl=2048,osl=256,rate=20 or w.yaml."),
             gpus: Optional[str] = typer.Option(None, "--gpus", help="Fleet: h100_sxm:16,a100_80g:32."),
             budget: Optional[str] = typer.Option(None, "--budget", help="Max $/h, e.g. 120/h."),
             objective: Optional[str] = typer.Option(None, "--objective", help="goodput (default), cost or energy "
                                                                                  "(min W at the demand)."),
             mode: Optional[str] = typer.Option(None, "--mode", help="auto (default), agg, disagg, or multiplex "
                                                                     "(auto + intra-GPU P/D)."),
             engine: Optional[str] = typer.Option(None, "--engine", help="vllm (default), sglang, trtllm."),
             dtype: Optional[str] = typer.Option(None, "--dtype", help="Weight dtype: bf16, fp8, fp4, int4."),
             kv_dtype: Optional[str] = typer.Option(None, "--kv-dtype", help="KV-cache dtype: bf16, fp8 or int4."),
             top: Optional[int] = typer.Option(None, "--top", min=1, max=50, help="How many ranked plans."),
             fmt: PlanFmt = typer.Option(PlanFmt.table, "--format"),
             out: Optional[Path] = typer.Option(None, "--out", help="Write the output to FILE."),
             launch: bool = typer.Option(False, "--launch", help="Print vLLM / SGLang launch commands."),
             calibration: Optional[Path] = typer.Option(None, "--calibration", help="YAML from planner calibrate."),
             backend: str = typer.Option("highs", "--backend", help="MILP backend: highs or cbc."),
             expert_stats: Optional[Path] = typer.Option(None, "--expert-stats", help="CSV expert,count (MoE)."),
             hwdb_dir: Optional[list[Path]] = typer.Option(None, "--hwdb", help="Extra folder of GPU YAMLs."),
             power_cap: Optional[str] = typer.Option(None, "--power-cap", help="Board power cap per GPU type, "
                                                     "h100_sxm=500,b200=700 (W): lower clocks, lower peak FLOPs."),
             spec: Optional[str] = typer.Option(None, "--spec", help="Speculative decoding: draft=MODEL,k=4,accept=0.7 "
                                                "or mtp,k=1,accept=0.8 (k: the most draft tokens tried)."),
             kv_compression: Optional[float] = typer.Option(None, "--kv-compression", help="P->D KV transfer "
                                                            "compression ratio R (ships bytes/R)."),
             link: Optional[str] = typer.Option(None, "--link", help="prefill-decode=100Gbps: P and D pools apart, "
                                                "joined by one link of that bandwidth (Gbps bits, GBps bytes)."),
             time_limit: float = typer.Option(300.0, "--time-limit", min=0.1, max=86400.0,
                                              help="Wall-clock safety stop for the solvers, s. Plans do not "
                                              "depend on it (the solvers stop at deterministic node limits); "
                                              "if it fires, the output says so."),
             report: Optional[Path] = typer.Option(None, "--report", help="Also write a self-contained HTML report."),
             sweep: Optional[str] = typer.Option(None, "--sweep", help="rate=LOW..HIGH[:POINTS]: curves as CSV."),
             quiet: bool = typer.Option(False, "--quiet", help="No progress display on stderr.")):
    """Ranked deployment plans: GPU mix, parallelism, agg vs P/D, chunk size — by goodput under the SLOs."""
    from planner.bounds import MAX_TIME_LIMIT_S
    from planner.calibrate import load_calibration
    from planner.optimize import optimize as run
    from planner.scenario import build_request

    _bounded("--time-limit", time_limit, 0.1, MAX_TIME_LIMIT_S, unit=" s")
    _writable(out, "--out")
    _writable(report, "--report")
    if sweep is not None:
        from planner.optimize import parse_sweep

        rates = parse_sweep(sweep)
    extra = dict(backend=backend, time_limit_s=time_limit, extra_hwdb=tuple(hwdb_dir or ()))
    if power_cap is not None:
        from planner.energy import parse_power_cap

        extra["power_cap"] = parse_power_cap(power_cap)
    if spec is not None:
        from planner.spec import parse_spec

        extra["spec"] = parse_spec(spec)
    if kv_compression is not None:
        from planner.kvtransfer import parse_compression

        extra["kv_compression"] = parse_compression(kv_compression)
    if link is not None:
        from planner.kvtransfer import parse_link

        extra["link_gbps"] = parse_link(link)
    if calibration:
        extra["calibration"] = load_calibration(calibration)
    if expert_stats:
        from solvers import load_expert_counts_csv

        extra["expert_loads"] = tuple(load_expert_counts_csv(expert_stats))
    req = build_request(model, slo=slo, workload=workload, gpus=gpus, budget=budget, objective=objective,
                        mode=mode, engine=engine, dtype=dtype, kv_dtype=kv_dtype, top=top, **extra)
    with _progress(quiet) as progress:
        rows = None
        if sweep is not None:
            from planner.optimize import sweep as run_sweep

            rows = run_sweep(req, rates, progress)
        result = run(req, progress)
    from planner.report import result_html, result_json, result_markdown, sweep_csv

    if report:
        report.write_text(result_html(result, req, rows))
        _console(stderr=True).print(f"wrote {report}")
    if rows is not None:
        _emit(sweep_csv(rows), out)
        return
    if fmt == PlanFmt.json:
        from planner.jsonio import canonical_json

        _emit(canonical_json(result_json(result, req, launch)), out)
    elif fmt == PlanFmt.markdown:
        _emit(result_markdown(result, req, launch), out)
    else:
        _print_plans(result, req, launch, out)


FAMILY_LABEL = {"agg": "agg", "disagg": "P/D", "single_gpu_type": "1-type", "multiplex": "mux"}


class _progress:
    """A rich progress bar on stderr for the search, only when stderr is a terminal and not --quiet."""

    def __init__(self, quiet: bool):
        self.enabled = not quiet and sys.stderr.isatty()
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                            TimeElapsedColumn(), console=_console(stderr=True), transient=True)
        self.bar.start()
        self.task = self.bar.add_task("starting", total=1)
        return self

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.bar.update(self.task, description=stage, completed=done, total=total)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


def _print_plans(result, req, launch: bool, out: Optional[Path]) -> None:
    from planner.report import instance_label, launch_for

    c = _console()
    c.record = out is not None
    cls = ", ".join(f"{k.name}: ISL {k.isl} / OSL {k.osl}" + (f" @ {k.rate_rps:g} req/s" if k.rate_rps else "")
                    + f" (TTFT ≤ {k.slo.ttft_ms:g} ms, TPOT ≤ {k.slo.tpot_ms:g} ms at p{k.slo.percentile:g})"
                    for k in req.classes)
    c.print(f"[bold]{req.model.name}[/] — {cls}; objective {req.objective}, engine {req.engine}, {req.dtype} weights")
    for n in result.notes:
        c.print(f"[dim]note:[/] {n}")

    def rows(plans):
        for p in plans:
            yield [FAMILY_LABEL.get(p.family, str(p.rank)), "\n".join(instance_label(i) for i in p.instances),
                   "\n".join(f"{n} {g}" for g, n in sorted(p.gpus.items())), f"{p.goodput_rps:,.2f}",
                   f"{p.tokens_per_s_per_gpu:,.0f}", f"{p.cost_usd_per_h:,.2f}", f"{p.usd_per_million_tokens:,.2f}",
                   f"{p.predicted['ttft_ms']:,.0f}", f"{p.predicted['tpot_ms']:,.1f}"] + (
                [f"{p.energy['watts']:,.0f}", f"{p.energy['joules_per_token']:.3g}"] if with_energy else [])

    p_label = "/".join(sorted({f"p{k.slo.percentile:g}" for k in req.classes}))
    cols = ["#", "instances", "GPUs", "req/s", "tok/s/GPU", "$/h", "$/Mtok", f"TTFT {p_label}", f"TPOT {p_label}"]
    with_energy = any(p.energy is not None for p in result.plans + result.family_bests)
    if with_energy:
        cols += ["W", "J/tok"]
    for title, plans in (("ranked plans", result.plans), ("best plan of each family", result.family_bests)):
        if plans:
            c.print(_table(title, cols, list(rows(plans)), caption="latencies in ms", no_wrap={"#", "instances", "GPUs"}))
    c.print("binding constraints:")
    for p in result.plans + result.family_bests:
        c.print(f"  {FAMILY_LABEL.get(p.family, p.rank)}: {p.binding}", markup=False)
    s = result.solver
    c.print(f"solver: {s['backend']} {s['status']} (gap {s['gap']:.2%}) in {s['time_s']:.2f} s over "
            f"{s['candidates']} instance types ({s['evaluated']} evaluated); total {result.wall_s:.2f} s")
    if launch and result.plans:
        c.print("\n[bold]launch plan #1[/]")
        for cmd in launch_for(result.plans[0], req):
            c.print(f"# {cmd.role} ×{cmd.replicas}" + (f" — {cmd.note}" if cmd.note else ""))
            c.print(cmd.shell, markup=False)
    if out is not None:
        out.write_text(c.export_text())


# ---- simulate ------------------------------------------------------------------------------------------------

@app.command()
@guarded
def simulate(plan: Path = typer.Argument(..., help="JSON from `planner optimize --format json`."),
             plan_rank: int = typer.Option(1, "--plan-rank", min=1, help="Which ranked plan to simulate."),
             rate: Optional[float] = typer.Option(None, "--rate", help="Total arrival rate, req/s (default: the "
                                                                         "plan's goodput)."),
             duration_s: float = typer.Option(300.0, "--duration-s", min=1.0, help="Simulated arrival window."),
             seed: int = typer.Option(0, "--seed"),
             trace: Optional[Path] = typer.Option(None, "--trace", help="CSV arrival_s,isl,osl[,class] to replay."),
             router: str = typer.Option("least_work", "--router", help="least_work, round_robin or random."),
             calibration: Optional[Path] = typer.Option(None, "--calibration", help="YAML from planner calibrate."),
             arrival: Optional[str] = typer.Option(None, "--arrival", help="poisson or gamma(cv=2): override the "
                                                                         "plan workload's arrival process."),
             fmt: Fmt = typer.Option(Fmt.table, "--format")):
    """Discrete-event check of a plan: Poisson, bursty (gamma) or traced arrivals, continuous batching, P/D."""
    from planner.bounds import MAX_DURATION_S, MAX_RATE_RPS, MAX_SEED, MAX_SIM_REQUESTS
    from planner.jsonio import canonical_json
    from planner.simulate import load_plan_json, load_trace_csv, simulate_plan

    _bounded("--seed", seed, 0, MAX_SEED)
    _bounded("--rate", rate, 0, MAX_RATE_RPS, lo_open=True, unit=" req/s")
    _bounded("--duration-s", duration_s, 1, MAX_DURATION_S, unit=" s")
    if rate is not None and rate * duration_s > MAX_SIM_REQUESTS:
        raise _bad(f"--rate × --duration-s: {rate * duration_s:,.0f} requests to simulate, at most "
                   f"{MAX_SIM_REQUESTS:,} (shorten --duration-s)")
    cal = None
    if calibration:
        from planner.calibrate import load_calibration

        cal = load_calibration(calibration)
    arrival_cv = None
    if arrival is not None:
        from planner.workload import parse_arrival

        a = parse_arrival(arrival, "--arrival")
        if a is not None and a.kind == "trace":
            raise _bad("--arrival: give a trace with --trace (arrival_s,isl,osl[,class])")
        arrival_cv = 1.0 if a is None else a.cv
    res = simulate_plan(load_plan_json(plan), rank=plan_rank, rate_rps=rate, duration_s=duration_s, seed=seed,
                        trace=load_trace_csv(trace) if trace else None, calibration=cal, router=router,
                        arrival_cv=arrival_cv)
    if fmt == Fmt.json:
        _emit(canonical_json(res.to_json()))
        return
    c = _console()
    c.print(f"[bold]{res.model}[/] plan #{res.plan_rank}: {res.rate_rps:.3g} req/s offered for {res.duration_s:g} s "
            f"({res.requests} requests, {res.measured} measured after warm-up, {res.dropped} not finished), "
            f"router {res.router}")
    c.print(f"SLO attainment {res.attainment:.1%} (TTFT {res.ttft_attainment:.1%}, TPOT {res.tpot_attainment:.1%}); "
            f"goodput {res.goodput_rps:.3g} req/s vs {res.predicted_goodput_rps:.3g} predicted")
    rows = [[k, f"{v.rate_rps:.3g}", f"{v.ttft_ms['p50']:,.0f} / {v.ttft_ms['p90']:,.0f} / {v.ttft_ms['p99']:,.0f}",
             f"{v.tpot_ms['p50']:,.1f} / {v.tpot_ms['p90']:,.1f} / {v.tpot_ms['p99']:,.1f}",
             f"{v.slo['ttft_ms']:g} / {v.slo['tpot_ms']:g} at p{v.slo['percentile']:g}", f"{v.attainment:.1%}"]
            for k, v in sorted(res.per_class.items())]
    c.print(_table("per class", ["class", "req/s", "TTFT p50/p90/p99 ms", "TPOT p50/p90/p99 ms", "SLO", "attained"],
                   rows))
    rows = [[i.name, f"{i.utilization:.0%}", i.requests, f"{i.mean_decode_batch:.1f}", f"{i.kv_occupancy:.0%}"]
            for i in res.instances]
    c.print(_table("per instance", ["instance", "busy", "requests", "mean decode batch", "KV used"], rows))
    for n in res.notes:
        c.print(f"[dim]note:[/] {n}")


# ---- calibrate / experts -----------------------------------------------------------------------------------------

@app.command()
@guarded
def calibrate(measurements: Path = typer.Argument(..., help="CSV of measured runs (columns above)."),
              out: Path = typer.Option(Path("calib.yaml"), "--out", help="Where to write the calibration YAML."),
              fmt: Fmt = typer.Option(Fmt.table, "--format")):
    """Fit efficiencies and engine overheads to your own measurements; use with --calibration.

    CSV, one row per measured run (an empty cell: not measured):
      required  model, gpu (planner hw list), tp, isl, osl (tokens)
      measured  one or more means: ttft_ms, tpot_ms (ms),
                output_tokens_per_s_per_gpu
      load      concurrency (or batch): closed loop; rate: open loop, req/s;
                neither: offline max throughput; mode (concurrency, rate or
                offline) says it explicitly
      optional  engine (vllm, sglang, trtllm; default vllm), dtype and
                kv_dtype (default bf16), pp, ep, dp (default 1), id;
                other columns are ignored
      long form metric and value columns instead of the metric columns

    Example:
      model,gpu,engine,tp,isl,osl,rate,ttft_ms,tpot_ms
      llama-3.1-8b,h100_sxm,trtllm,1,467,256,32,50,19
    """
    from planner.calibrate import fit, load_points
    from planner.jsonio import canonical_json

    _writable(out, "--out")
    points = load_points(measurements)
    cal, report = fit(points, f"{measurements.name} ({len(points)} points)")
    out.write_text(cal.to_yaml())
    data = {"out": str(out), **report, "gpus": cal.gpus, "engines": cal.engines}
    if fmt == Fmt.json:
        _emit(canonical_json(data))
        return
    c = _console()
    c.print(f"fitted {report['parameters']} constants to {report['points']} points: median abs error "
            f"{report['median_abs_error_before']:.1%} → {report['median_abs_error_after']:.1%}")
    rows = [[f"engine {n}", k, f"{v:g}"] for n, kv in sorted(cal.engines.items()) for k, v in sorted(kv.items())]
    rows += [[f"gpu {n}", k, v] for n, kv in sorted(cal.gpus.items()) for k, v in sorted(kv.items())]
    c.print(_table("calibration", ["name", "constant", "value"], rows))
    c.print(f"wrote {out}; apply with --calibration {out}")


@app.command()
@guarded
def experts(model: str = typer.Argument(..., help="A MoE model: bundled name or config path."),
            ep: int = typer.Option(..., "--ep", min=1, help="Expert-parallel ranks."),
            stats: Optional[Path] = typer.Option(None, "--stats", help="CSV expert,count of routed tokens."),
            zipf: float = typer.Option(0.5, "--zipf", min=0.0, help="Zipf exponent of the default loads."),
            replicate: int = typer.Option(0, "--replicate", min=0, help="Spare slots per rank for hot copies."),
            seed: int = typer.Option(0, "--seed"),
            time_limit: float = typer.Option(5.0, "--time-limit", min=0.1, max=3600.0,
                                             help="CP-SAT deterministic time (about s on one idle core; the same "
                                             "placement on every machine). The wall clock stops it only at 20x "
                                             "(at least 60 s), and the output then says so."),
            fmt: Fmt = typer.Option(Fmt.table, "--format")):
    """Place one layer's experts on EP ranks (CP-SAT) and compare with round-robin."""
    from planner.bounds import MAX_SEED, MAX_TIME_LIMIT_S, MAX_ZIPF_S
    from planner.errors import PlannerInputError
    from planner.jsonio import canonical_json
    from planner.model import load_model
    from solvers import ExpertProblem, load_expert_counts_csv, place_experts, zipf_loads

    _bounded("--seed", seed, 0, MAX_SEED)
    _bounded("--zipf", zipf, 0, MAX_ZIPF_S)
    _bounded("--time-limit", time_limit, 0.1, MAX_TIME_LIMIT_S, unit=" s")
    m = load_model(model)
    if not m.is_moe:
        raise PlannerInputError(f"{m.name}: not a MoE model (no experts to place)")
    if m.num_experts % ep:
        raise PlannerInputError(f"--ep: {ep} must divide the {m.num_experts} experts")
    _bounded("--replicate", replicate, 0, m.num_experts - m.num_experts // ep,
             unit=f" (a rank holds at most all {m.num_experts} experts)")
    loads = tuple(load_expert_counts_csv(stats)) if stats else zipf_loads(m.num_experts, s=zipf, seed=seed)
    if len(loads) != m.num_experts:
        raise PlannerInputError(f"--stats: {len(loads)} experts in the file, {m.name} has {m.num_experts}")
    prob = ExpertProblem(loads, ep, m.num_experts // ep + replicate, replicate=replicate > 0)
    res = place_experts(prob, time_limit_s=time_limit, seed=seed)
    data = {"model": m.name, "ep": ep, "experts": m.num_experts, "imbalance": res.imbalance,
            "round_robin_imbalance": res.round_robin_imbalance, "status": res.status, "gap": res.gap,
            "time_s": res.time_s, "safety_stop": res.safety_stop, "rank_loads": list(res.rank_loads),
            "placement": [list(r) for r in res.placement]}
    if fmt == Fmt.json:
        _emit(canonical_json(data))
        return
    c = _console()
    c.print(f"[bold]{m.name}[/]: {m.num_experts} experts on {ep} EP ranks ({'stats ' + str(stats) if stats else f'Zipf s={zipf:g} loads'})")
    c.print(f"imbalance (max/mean rank load): {res.imbalance:.3f} placed vs {res.round_robin_imbalance:.3f} "
            f"round-robin; CP-SAT {res.status}, gap {res.gap:.2%}, {res.time_s:.2f} s")
    rows = [[r, f"{load:.4g}", " ".join(map(str, experts_on))] for r, (load, experts_on) in
            enumerate(zip(res.rank_loads, res.placement))]
    c.print(_table("placement", ["rank", "load", "experts"], rows))


if __name__ == "__main__":
    main()
