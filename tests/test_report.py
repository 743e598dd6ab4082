"""The HTML report is one offline file whose tables and chart carry the same numbers as the JSON."""

import json
from html.parser import HTMLParser

import pytest

from planner.core.errors import PlannerInputError
from planner.render.report import result_html, result_json, sweep_csv
from planner.search.optimize import optimize, parse_sweep, sweep
from planner.search.scenario import build_request


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.row, self.cell, self.in_script, self.script = [], None, None, False, ""
        self.external = []
        self.chosen = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("link", "img", "script") and (a.get("href") or a.get("src")):
            self.external.append(a)
        if tag == "tr" and a.get("class") == "plan":
            self.row = []
        if tag == "td" and self.row is not None:
            self.cell = ""
        if tag == "script" and a.get("id") == "plan-data":
            self.in_script = True
        if tag == "circle" and a.get("class") == "chosen":
            self.chosen += 1

    def handle_endtag(self, tag):
        if tag == "td" and self.row is not None:
            self.row.append(self.cell)
            self.cell = None
        if tag == "tr" and self.row is not None:
            self.rows.append(self.row)
            self.row = None
        if tag == "script":
            self.in_script = False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data
        if self.in_script:
            self.script += data


@pytest.fixture(scope="module")
def report():
    req = build_request("llama-3.1-8b", slo="ttft=2s,tpot=50ms", workload="isl=1024,osl=256", gpus="h100_sxm:4")
    res = optimize(req)
    page = _Collect()
    page.feed(result_html(res, req))
    return res, req, page


def test_report_is_self_contained(report):
    _, _, page = report
    assert page.external == []


def test_embedded_json_is_the_optimize_json(report):
    from planner.render.jsonio import canonical

    res, req, page = report
    embedded = json.loads(page.script.replace("<\\/", "</"))
    assert embedded == json.loads(json.dumps(canonical(result_json(res, req))))


def test_plan_table_rows_match_the_plans(report):
    res, _, page = report
    plans = res.plans + res.family_bests
    assert len(page.rows) == len(plans)
    for row, p in zip(page.rows, plans):
        assert float(row[3]) == pytest.approx(p.goodput_rps, abs=0.005)
        assert float(row[5]) == pytest.approx(p.cost_usd_per_h, abs=0.005)


def test_pareto_chart_highlights_every_chosen_plan(report):
    res, _, page = report
    assert page.chosen == len(res.plans) + len(res.family_bests)


def test_sweep_gives_a_cost_curve_that_never_falls_with_rate():
    req = build_request("llama-3.1-8b", slo="ttft=2s,tpot=50ms", workload="isl=1024,osl=256", gpus="h100_sxm:8",
                        objective="cost", mode="agg")
    rows = sweep(req, parse_sweep("rate=5..40:4"))
    costs = [r["cost_usd_per_h"] for r in rows if r["status"] == "ok"]
    assert len(costs) == 4 and costs == sorted(costs)
    assert sweep_csv(rows).splitlines()[0].startswith("rate_rps,goodput_rps,cost_usd_per_h")


def test_bad_sweep_spec_is_bad_input():
    with pytest.raises(PlannerInputError, match="--sweep"):
        parse_sweep("rate=10")
