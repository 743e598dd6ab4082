"""Specification of `planner calibrate` (planner/search/calibrate.py, docs/architecture.md "Formulas"): it recovers known constants from points
generated with them, reports bad CSV rows by line number, and its YAML changes what `planner estimate` predicts.
"""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from typer.testing import CliRunner

import cli
from planner.core.errors import PlannerInputError
from planner.core.parallel import ParallelConfig
from planner.search.calibrate import Calibration, MeasuredPoint, fit, load_calibration, load_points, predict

COLUMNS = ["model", "gpu", "engine", "dtype", "kv_dtype", "tp", "pp", "ep", "dp", "isl", "osl", "concurrency", "mode",
           "ttft_ms", "tpot_ms", "output_tokens_per_s_per_gpu"]
GOOD = dict(model="llama-3.1-8b", gpu="h100_sxm", engine="vllm", dtype="bf16", kv_dtype="bf16", tp="1", pp="1",
            ep="1", dp="1", isl="1024", osl="256", concurrency="16", mode="concurrency", ttft_ms="120",
            tpot_ms="12.5", output_tokens_per_s_per_gpu="1200")

# the constants a user's measurements would pin down, with values far from the bundled hwdb ones
TRUTH = {
    ("engines", "vllm", "step_overhead_ms", ""): 1.2,
    ("engines", "vllm", "per_seq_overhead_us", ""): 40.0,
    ("gpus", "h100_sxm", "memory", ""): 0.7,
}
TRUE_CALIBRATION = Calibration(gpus={"h100_sxm": {"memory": 0.7}},
                               engines={"vllm": {"step_overhead_ms": 1.2, "per_seq_overhead_us": 40.0}},
                               fitted_on="ground truth")


def write_csv(path, rows, columns=COLUMNS):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, columns)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in columns})
    return path


def synthetic_rows(calibration: Calibration, grid) -> list[dict]:
    """CSV rows whose metrics are exactly what `calibration` predicts (full float precision)."""
    rows = []
    for model, isl, osl, conc in grid:
        mode = "concurrency" if conc else "offline"
        point = MeasuredPoint(0, "synthetic", model, "h100_sxm", "vllm", "bf16", "bf16", ParallelConfig(1), isl, osl,
                              mode, float(conc or 0), {})
        metrics = predict(point, calibration)
        rows.append({**GOOD, "model": model, "isl": str(isl), "osl": str(osl), "mode": mode,
                     "concurrency": str(conc) if conc else "", **{k: repr(v) for k, v in metrics.items()}})
    return rows


GRID = [(m, isl, osl, conc) for m in ("llama-3.1-8b", "qwen3-8b")
        for isl, osl, conc in ((128, 128, 1), (512, 256, 8), (2048, 256, 32), (1024, 512, 128), (256, 1024, 0),
                               (4096, 128, 64))]


# ---- fitting ----------------------------------------------------------------------------------------------------

def test_fit_recovers_known_engine_overheads_and_memory_efficiency_within_two_percent(tmp_path):
    assert len(GRID) == 12
    points = load_points(write_csv(tmp_path / "m.csv", synthetic_rows(TRUE_CALIBRATION, GRID)))
    assert {p.mode for p in points} == {"concurrency", "offline"}
    cal, report = fit(points, "test", params=list(TRUTH), prior_weight=0)
    recovered = {
        ("engines", "vllm", "step_overhead_ms", ""): cal.engines["vllm"]["step_overhead_ms"],
        ("engines", "vllm", "per_seq_overhead_us", ""): cal.engines["vllm"]["per_seq_overhead_us"],
        ("gpus", "h100_sxm", "memory", ""): cal.gpus["h100_sxm"]["memory"],
    }
    for key, truth in TRUTH.items():
        assert recovered[key] == pytest.approx(truth, rel=0.02), key
    assert report["points"] == 12 and report["parameters"] == 3
    assert report["median_abs_error_before"] > 0.05  # the bundled constants really were off
    assert report["median_abs_error_after"] < 0.005


def test_calibration_round_trips_through_yaml_and_applies(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(TRUE_CALIBRATION.to_yaml())
    back = load_calibration(path)
    assert back.gpus == TRUE_CALIBRATION.gpus and back.engines == TRUE_CALIBRATION.engines
    import hwdb

    gpu = back.apply_gpu(hwdb.load_gpu("h100_sxm"))
    assert gpu.efficiency.memory == 0.7
    assert gpu.efficiency.gemm == hwdb.load_gpu("h100_sxm").efficiency.gemm  # untouched constants stay
    assert back.apply_engine(hwdb.load_engine("vllm")).per_seq_overhead_us == 40.0


@pytest.mark.parametrize("text,match", [
    ("gpus: {h100_sxm: {memory: 1.7}}", "must lie in"),
    ("engines: {vllm: {max_num_seqs: 8}}", "not a calibratable constant"),
    ("- 1\n- 2", "expected a mapping"),
])
def test_bad_calibration_files_are_input_errors(tmp_path, text, match):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(PlannerInputError, match=match):
        load_calibration(path)


# ---- bad rows -----------------------------------------------------------------------------------------------

BAD_ROWS = {
    "non-numeric tp": {"tp": "two"},
    "missing isl": {"isl": ""},
    "negative value": {"ttft_ms": "-5"},
    "unknown mode": {"mode": "burst"},
    "no metric": {"ttft_ms": "", "tpot_ms": "", "output_tokens_per_s_per_gpu": ""},
    "concurrency mode without concurrency": {"concurrency": ""},
}


@pytest.mark.parametrize("what", sorted(BAD_ROWS))
@pytest.mark.parametrize("good_before", [0, 1, 3])
def test_a_bad_row_is_reported_by_its_line_number(tmp_path, what, good_before):
    rows = [GOOD] * good_before + [{**GOOD, **BAD_ROWS[what]}] + [GOOD]
    line = good_before + 2  # the header is line 1
    with pytest.raises(PlannerInputError, match=rf"^line {line}\b"):
        load_points(write_csv(tmp_path / "bad.csv", rows))


def test_long_form_rows_merge_into_one_point_and_unknown_metrics_are_rejected(tmp_path):
    cols = ["model", "gpu", "tp", "isl", "osl", "batch", "metric", "value"]
    base = dict(model="llama-3.1-8b", gpu="h100_sxm", tp="1", isl="1024", osl="256", batch="16")
    rows = [{**base, "metric": "ttft_ms", "value": "120"}, {**base, "metric": "tpot_ms", "value": "12"}]
    points = load_points(write_csv(tmp_path / "long.csv", rows, cols))
    assert len(points) == 1
    assert points[0].metrics == {"ttft_ms": 120.0, "tpot_ms": 12.0}
    assert points[0].mode == "concurrency" and points[0].load == 16
    rows.append({**base, "metric": "latency", "value": "3"})
    with pytest.raises(PlannerInputError, match=r"^line 4: field 'metric'"):
        load_points(write_csv(tmp_path / "long2.csv", rows, cols))


def test_a_file_without_a_required_column_is_rejected(tmp_path):
    with pytest.raises(PlannerInputError, match="missing column 'isl'"):
        load_points(write_csv(tmp_path / "c.csv", [GOOD], [c for c in COLUMNS if c != "isl"]))


# ---- CLI end to end -----------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_calibrate_reports_a_bad_row_and_exits_2(tmp_path):
    bad = write_csv(tmp_path / "bad.csv", [GOOD, {**GOOD, "tp": "x"}])
    result = runner.invoke(cli.app, ["calibrate", str(bad), "--out", str(tmp_path / "c.yaml")])
    assert result.exit_code == 2
    assert "line 3" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "c.yaml").exists()


def test_cli_calibration_yaml_changes_the_estimate_towards_the_measurements(tmp_path):
    slow = Calibration(engines={"vllm": {"step_overhead_ms": 6.0}}, fitted_on="slow host")
    grid = [("llama-3.1-8b", 512, 256, 8), ("llama-3.1-8b", 2048, 256, 32), ("llama-3.1-8b", 1024, 512, 64),
            ("llama-3.1-8b", 128, 128, 1)]
    measured = write_csv(tmp_path / "measured.csv", synthetic_rows(slow, grid))
    out = tmp_path / "calib.yaml"
    result = runner.invoke(cli.app, ["calibrate", str(measured), "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = yaml.safe_load(out.read_text())
    assert "vllm" in written["engines"]

    args = ["estimate", "llama-3.1-8b", "--gpu", "h100_sxm", "--isl", "1024", "--osl", "256", "--batch", "16",
            "--format", "json"]
    plain = runner.invoke(cli.app, args)
    calibrated = runner.invoke(cli.app, args + ["--calibration", str(out)])
    assert plain.exit_code == 0 and calibrated.exit_code == 0, calibrated.output
    before, after = json.loads(plain.stdout)["tpot_ms"], json.loads(calibrated.stdout)["tpot_ms"]
    point = MeasuredPoint(0, "x", "llama-3.1-8b", "h100_sxm", "vllm", "bf16", "bf16", ParallelConfig(1), 1024, 256,
                          "concurrency", 16.0, {})
    truth = predict(point, slow)["tpot_ms"]
    assert after != pytest.approx(before, rel=0.01)
    assert abs(after - truth) < abs(before - truth) / 2
