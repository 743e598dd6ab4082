"""Every file the planner reads is checked at the edge: a hostile YAML / JSON / CSV exits 2 with one line naming
the file or the field, never a traceback, in bounded time and memory (issue 11, item 3).

Each case builds its files in a temporary folder and returns the command line and a phrase the message must
contain. Cases marked isolated (alias bombs, 100,000-deep nesting, files over the size caps, 10^6-row CSVs) run
in a subprocess under a 2 GiB address-space limit, so a regression fails the test instead of the machine.
`python tests/test_hostile_files.py PYTHONPATH` runs the whole corpus against another tree and tallies the outcomes.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parents[1]
HF = ROOT / "tests" / "fixtures" / "hf_configs"
PLAN = ROOT / "examples" / "goldens" / "llama-3.1-70b.json"  # fp8 Llama-3.1-70B, TP2 instances on h100_sxm
MAX_S = 10.0
ADDRESS_SPACE = 2 << 30


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path], tuple[list[str], str]]  # tmp folder -> (argv, phrase the one-line message contains)
    isolated: bool = False


CASES: list[Case] = []


def case(id: str, isolated: bool = False):
    def register(build):
        CASES.append(Case(id, build, isolated))
        return build
    return register


# ---- file contents -------------------------------------------------------------------------------------------

def laughs() -> str:
    """Billion laughs as one flow value: nine levels of nine aliases, 9^9 strings once expanded."""
    levels = ["&a [" + ", ".join(["lol"] * 9) + "]"]
    levels += [f"&{cur} [" + ", ".join([f"*{prev}"] * 9) + "]" for prev, cur in zip("abcdefgh", "bcdefghi")]
    return "[" + ", ".join(levels) + "]"


BOMB = laughs()


DEEP = "[" * 100_000 + "]" * 100_000
BINARY = {"random": random.Random(11).randbytes(20_000),
          "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64),
          "nul": b"name: x\x00\x00\nhidden_size: 4096\n"}
HUGE_BYTES = 5 * 2**20  # over the 4 MiB cap of a YAML / JSON document

OUR_MODEL = dict(name="tiny", hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=8, head_dim=128,
                 intermediate_size=14336, vocab_size=128256)


def write(path: Path, content) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


def yaml_text(d: dict) -> str:
    """A flat YAML mapping; a string value starting with [ or . is written raw (flow lists, .inf, .nan)."""
    return "".join(f"{k}: {v if isinstance(v, str) and v[:1] in '[.' else json.dumps(v)}\n" for k, v in d.items())


def hf_config(**over) -> str:
    cfg = json.loads((HF / "llama-3.1-8b.json").read_text())
    for k, v in over.items():
        if v is ...:
            cfg.pop(k)
        else:
            cfg[k] = v
    return json.dumps(cfg)


def plan(**edits) -> str:
    """The golden plan with `path.to.field=value` edits (instances of every plan edited alike)."""
    doc = json.loads(PLAN.read_text())
    for dotted, v in edits.items():
        *head, last = dotted.split("__")
        targets = [doc]
        for part in head:
            targets = [x for t in targets for x in (t[part] if isinstance(t[part], list) else [t[part]])]
        for t in targets:
            t[last] = copy.deepcopy(v)
    return json.dumps(doc)


SCENARIO = "model: llama-3.1-8b\nworkload: {isl: 512, osl: 64}\nslo: {ttft: 2s, tpot: 50ms}\ngpus: {h100_sxm: 2}\n"
GPU_YAML = (ROOT / "hwdb" / "gpus" / "h100_sxm.yaml").read_text().replace("name: h100_sxm", "name: my_gpu") \
    .replace("aliases: [h100, h100_80g, h100-sxm5]", "aliases: []")
OPTIMIZE = ["optimize", "llama-3.1-8b", "--workload", "isl=512,osl=64,rate=2", "--gpus", "h100_sxm:2", "--top", "1"]
ESTIMATE = ["estimate", "llama-3.1-8b", "--gpu", "h100_sxm", "--isl", "512", "--osl", "64"]
CAL_COLUMNS = "model,gpu,engine,tp,isl,osl,concurrency,ttft_ms,tpot_ms\n"
CAL_ROW = "llama-3.1-8b,h100_sxm,vllm,1,1024,256,16,120,12.5\n"
TRACE_HEAD = "arrival_s,isl,osl\n"


# ---- the model file: our YAML (model show) -------------------------------------------------------------------

@case("model-yaml-alias-bomb", isolated=True)
def _(t):
    return ["model", "show", write(t / "m.yaml", yaml_text({**OUR_MODEL, "name": BOMB}))], "aliases"


@case("model-yaml-deep-nesting", isolated=True)
def _(t):
    return ["model", "show", write(t / "m.yaml", f"name: x\nhidden_size: {DEEP}\n")], "nesting deeper"


@case("model-yaml-huge-file", isolated=True)
def _(t):
    return ["model", "show", write(t / "m.yaml", yaml_text(OUR_MODEL) + "# " + "x" * HUGE_BYTES + "\n")], "MiB limit"


for _kind, _data in BINARY.items():
    case(f"model-yaml-binary-{_kind}")(lambda t, d=_data: (["model", "show", write(t / "m.yaml", d)], "m.yaml"))


@case("model-yaml-utf16")
def _(t):
    return ["model", "show", write(t / "m.yaml", yaml_text(OUR_MODEL).encode("utf-16"))], "UTF-16"


@case("model-yaml-latin1")
def _(t):
    latin1 = yaml_text(OUR_MODEL).replace('"tiny"', "caf\xe9").encode("latin-1")
    return ["model", "show", write(t / "m.yaml", latin1)], "not UTF-8"


@case("model-yaml-empty")
def _(t):
    return ["model", "show", write(t / "m.yaml", "")], "empty"


@case("model-yaml-string-hidden-size")
def _(t):
    return ["model", "show", write(t / "m.yaml", yaml_text({**OUR_MODEL, "hidden_size": "4096x"}))], "hidden_size"


@case("model-yaml-inf-heads")
def _(t):
    return ["model", "show", write(t / "m.yaml", yaml_text({**OUR_MODEL, "num_heads": ".inf"}))], "num_heads"


@case("model-yaml-list-name")
def _(t):
    return ["model", "show", write(t / "m.yaml", yaml_text({**OUR_MODEL, "name": list(range(10_000))}))], "'name'"


@case("model-yaml-integer-key")
def _(t):
    return ["model", "show", write(t / "m.yaml", yaml_text(OUR_MODEL) + "1: 2\n")], "unknown field '1'"


@case("model-yaml-zero-kv-heads")
def _(t):
    return ["model", "show", write(t / "m.yaml", yaml_text({**OUR_MODEL, "num_kv_heads": 0}))], "num_kv_heads"


@case("model-yaml-bool-experts")
def _(t):
    return ["model", "show", write(t / "m.yaml", yaml_text({**OUR_MODEL, "num_experts": True}))], "num_experts"


@case("model-yaml-top-level-list")
def _(t):
    return ["model", "show", write(t / "m.yaml", "- 1\n- 2\n")], "mapping"


# ---- the model file: a HuggingFace config.json (model show / estimate / optimize) ----------------------------

_HF_CASES = {
    "string-hidden-size": (dict(hidden_size="4096"), "hidden_size"),
    "list-hidden-size": (dict(hidden_size=[4096]), "hidden_size"),
    "null-hidden-size": (dict(hidden_size=None), "hidden_size"),
    "bool-hidden-size": (dict(hidden_size=True), "hidden_size"),
    "float-hidden-size": (dict(hidden_size=4096.0), "hidden_size"),
    "negative-layers": (dict(num_hidden_layers=-32), "num_hidden_layers"),
    "zero-layers": (dict(num_hidden_layers=0), "num_layers"),
    "1e30-hidden-size": (dict(hidden_size=1e30), "hidden_size"),
    "10^30-vocab": (dict(vocab_size=10**30), "vocab_size"),
    "zero-kv-heads": (dict(num_key_value_heads=0), "num_kv_heads"),
    "zero-heads": (dict(num_attention_heads=0), "num_attention_heads"),
    "kv-heads-not-dividing-heads": (dict(num_key_value_heads=12), "num_kv_heads"),
    "heads-not-dividing-hidden": (dict(num_attention_heads=30), "num_attention_heads"),
    "zero-head-dim": (dict(head_dim=0), "head_dim"),
    "negative-intermediate": (dict(intermediate_size=-1), "intermediate_size"),
    "unknown-architecture": (dict(architectures=["GPT2LMHeadModel"]), "architectures"),
    "architectures-string": (dict(architectures="LlamaForCausalLM"), "architectures"),
    "architectures-dict": (dict(architectures=[{"a": 1}]), "architectures"),
    "no-architectures": (dict(architectures=...), "architectures"),
    "string-tie-embeddings": (dict(tie_word_embeddings="false"), "tie_word_embeddings"),
    "quantization-config-string": (dict(quantization_config="fp8"), "quantization_config"),
    "string-context": (dict(max_position_embeddings="128k"), "max_position_embeddings"),
    "zero-context": (dict(max_position_embeddings=0), "max_context"),
}
for _name, (_over, _needle) in _HF_CASES.items():
    case(f"config-json-{_name}")(
        lambda t, o=_over, n=_needle: (["model", "show", write(t / "m" / "config.json", hf_config(**o))], n))


@case("config-json-nan")
def _(t):
    return ["model", "show", write(t / "m" / "config.json", hf_config().replace('"hidden_size": 4096',
                                                                                '"hidden_size": NaN'))], "NaN"


@case("config-json-infinity")
def _(t):
    return ["model", "show", write(t / "m" / "config.json", hf_config().replace('"hidden_size": 4096',
                                                                                '"hidden_size": Infinity'))], "Infinity"


@case("config-json-1e999")
def _(t):
    return ["model", "show", write(t / "m" / "config.json", hf_config().replace('"hidden_size": 4096',
                                                                                '"hidden_size": 1e999'))], "hidden_size"


@case("config-json-text-config-list")
def _(t):
    return ["model", "show", write(t / "m" / "config.json", json.dumps({"text_config": [1]}))], "text_config"


@case("config-json-deep-nesting", isolated=True)
def _(t):
    return ["model", "show", write(t / "m" / "config.json", '{"hidden_size": ' + DEEP + "}")], "nesting deeper"


@case("config-json-truncated")
def _(t):
    return ["model", "show", write(t / "m" / "config.json", hf_config()[:100])], "malformed JSON"


@case("config-json-nul-bytes")
def _(t):
    return ["model", "show", write(t / "m" / "config.json", hf_config().encode() + b"\x00")], "NUL"


@case("estimate-config-json-zero-kv-heads")
def _(t):
    path = write(t / "m" / "config.json", hf_config(num_key_value_heads=0))
    return ["estimate", path, "--gpu", "h100_sxm", "--isl", "512", "--osl", "64"], "num_kv_heads"


@case("optimize-config-json-string-layers")
def _(t):
    path = write(t / "m" / "config.json", hf_config(num_hidden_layers="32"))
    return ["optimize", path, *OPTIMIZE[2:]], "num_hidden_layers"


# ---- the scenario YAML (optimize SCENARIO) ---------------------------------------------------------------------

def _scenario(t: Path, text) -> list[str]:
    return ["optimize", write(t / "scen.yaml", text), "--top", "1"]


@case("scenario-alias-bomb", isolated=True)
def _(t):
    return _scenario(t, SCENARIO.replace("gpus: {h100_sxm: 2}", f"gpus: {{h100_sxm: {BOMB}}}")), "aliases"


@case("scenario-deep-nesting", isolated=True)
def _(t):
    return _scenario(t, SCENARIO + f"top: {DEEP}\n"), "nesting deeper"


@case("scenario-binary")
def _(t):
    return _scenario(t, b"model: llama-3.1-8b\n" + BINARY["random"]), "scen.yaml"


@case("scenario-utf16")
def _(t):
    return _scenario(t, SCENARIO.encode("utf-16")), "UTF-16"


@case("scenario-empty")
def _(t):
    return _scenario(t, "\n"), "empty"


_SCENARIO_EDITS = {
    "gpus-1e30": ("gpus: {h100_sxm: 2}", "gpus: {h100_sxm: 1e30}", "gpus.h100_sxm"),
    "gpus-10^12": ("gpus: {h100_sxm: 2}", "gpus: {h100_sxm: 1000000000000}", "gpus.h100_sxm"),
    "gpus-negative": ("gpus: {h100_sxm: 2}", "gpus: {h100_sxm: -3}", "gpus.h100_sxm"),
    "gpus-list": ("gpus: {h100_sxm: 2}", "gpus: [h100_sxm]", "gpus"),
    "isl-inf": ("isl: 512", "isl: .inf", "isl"),
    "isl-1e30": ("isl: 512", "isl: 1e30", "isl"),
    "isl-bool": ("isl: 512", "isl: true", "isl"),
    "rate-nan": ("osl: 64}", "osl: 64, rate: .nan}", "rate"),
    "ttft-inf": ("ttft: 2s", "ttft: .inf", "ttft"),
    "ttft-1e309s": ("ttft: 2s", "ttft: 1e309s", "ttft"),
    "slo-string": ("slo: {ttft: 2s, tpot: 50ms}", "slo: fast", "slo"),
    "workload-string": ("workload: {isl: 512, osl: 64}", "workload: chat", "workload"),
    "model-number": ("model: llama-3.1-8b", "model: 42", "model"),
}
for _name, (_old, _new, _needle) in _SCENARIO_EDITS.items():
    case(f"scenario-{_name}")(lambda t, o=_old, n=_new, e=_needle: (_scenario(t, SCENARIO.replace(o, n)), e))


@case("scenario-top-string")
def _(t):
    return _scenario(t, SCENARIO + "top: five\n"), "top"


@case("scenario-engine-list")
def _(t):
    return _scenario(t, SCENARIO + "engine: [vllm, sglang]\n"), "engine"


@case("scenario-unknown-field")
def _(t):
    return _scenario(t, SCENARIO + "gpu_count: 8\n"), "gpu_count"


@case("scenario-names-itself")
def _(t):
    path = t / "scen.yaml"
    return _scenario(t, SCENARIO.replace("model: llama-3.1-8b", f"model: {path}")), "model"


@case("scenario-hwdb-number")
def _(t):
    return _scenario(t, SCENARIO + "hwdb: 5\n"), "hwdb"


# ---- the workload YAML (optimize --workload W.yaml) --------------------------------------------------------------

def _workload(t: Path, text) -> list[str]:
    return ["optimize", "llama-3.1-8b", "--gpus", "h100_sxm:2", "--top", "1", "--workload", write(t / "w.yaml", text)]


@case("workload-alias-bomb", isolated=True)
def _(t):
    return _workload(t, f"name: {BOMB}\nisl: 512\nosl: 64\n"), "aliases"


@case("workload-deep-nesting", isolated=True)
def _(t):
    return _workload(t, f"isl: {DEEP}\nosl: 64\n"), "nesting deeper"


@case("workload-binary-png")
def _(t):
    return _workload(t, BINARY["png"]), "w.yaml"


@case("workload-isl-bool")
def _(t):
    return _workload(t, "isl: true\nosl: 64\n"), "isl"


@case("workload-classes-string")
def _(t):
    return _workload(t, "classes: chat\n"), "classes"


@case("workload-class-slo-list")
def _(t):
    return _workload(t, "classes:\n  - {isl: 512, osl: 64, slo: [1, 2]}\n"), "slo"


@case("workload-arrival-trace-number")
def _(t):
    return _workload(t, "isl: 512\nosl: 64\narrival: {trace: 5}\n"), "arrival"


@case("workload-osl-negative")
def _(t):
    return _workload(t, "isl: 512\nosl: -64\n"), "osl"


# ---- GPU YAMLs in a --hwdb folder (optimize --hwdb DIR) ------------------------------------------------------------

def _hwdb(t: Path, text) -> list[str]:
    write(t / "hw" / "my_gpu.yaml", text)
    return ["optimize", "llama-3.1-8b", "--workload", "isl=512,osl=64,rate=2", "--gpus", "my_gpu:2", "--top", "1",
            "--hwdb", str(t / "hw")]


@case("hwdb-gpu-alias-bomb", isolated=True)
def _(t):
    return _hwdb(t, GPU_YAML.replace("memory_gb: 80", f"memory_gb: {BOMB}")), "aliases"


@case("hwdb-gpu-deep-nesting", isolated=True)
def _(t):
    return _hwdb(t, GPU_YAML.replace("memory_gb: 80", f"memory_gb: {DEEP}")), "nesting deeper"


@case("hwdb-gpu-huge-file", isolated=True)
def _(t):
    return _hwdb(t, GPU_YAML + "# " + "x" * HUGE_BYTES + "\n"), "MiB limit"


@case("hwdb-gpu-binary")
def _(t):
    return _hwdb(t, BINARY["nul"]), "my_gpu.yaml"


@case("hwdb-gpu-utf16")
def _(t):
    return _hwdb(t, GPU_YAML.encode("utf-16")), "UTF-16"


@case("hwdb-gpu-empty")
def _(t):
    return _hwdb(t, ""), "empty"


@case("hwdb-gpu-string-bandwidth")
def _(t):
    return _hwdb(t, GPU_YAML.replace("mem_bw_gbps: 3350", "mem_bw_gbps: fast")), "mem_bw_gbps"


@case("hwdb-gpu-nan-memory")
def _(t):
    return _hwdb(t, GPU_YAML.replace("memory_gb: 80", "memory_gb: .nan")), "memory_gb"


# ---- calibration YAML (optimize / estimate --calibration) ---------------------------------------------------------

def _calibration(t: Path, text, command=OPTIMIZE) -> list[str]:
    return [*command, "--calibration", write(t / "cal.yaml", text)]


@case("calibration-alias-bomb", isolated=True)
def _(t):
    return _calibration(t, f"fitted_on: {BOMB}\n"), "aliases"


@case("calibration-deep-nesting", isolated=True)
def _(t):
    return _calibration(t, f"gpus: {DEEP}\n", ESTIMATE), "nesting deeper"


@case("calibration-binary")
def _(t):
    return _calibration(t, BINARY["random"], ESTIMATE), "cal.yaml"


@case("calibration-gpus-list")
def _(t):
    return _calibration(t, "gpus: [h100_sxm]\n"), "gpus"


@case("calibration-unknown-gpu")
def _(t):
    return _calibration(t, "gpus: {h900: {memory: 0.8}}\n"), "gpus.h900"


@case("calibration-unknown-engine")
def _(t):
    return _calibration(t, "engines: {vllm2: {step_overhead_ms: 1.0}}\n", ESTIMATE), "engines.vllm2"


@case("calibration-bool-constant")
def _(t):
    return _calibration(t, "gpus: {h100_sxm: {memory: true}}\n"), "gpus.h100_sxm.memory"


@case("calibration-nan-constant")
def _(t):
    return _calibration(t, "engines: {vllm: {step_overhead_ms: .nan}}\n", ESTIMATE), "engines.vllm.step_overhead_ms"


@case("calibration-gemm-unknown-dtype")
def _(t):
    return _calibration(t, "gpus: {h100_sxm: {gemm: {fp3: 0.5}}}\n"), "gemm"


@case("calibration-gpu-entry-number")
def _(t):
    return _calibration(t, "gpus: {h100_sxm: 5}\n", ESTIMATE), "gpus.h100_sxm"


@case("calibration-unknown-top-field")
def _(t):
    return _calibration(t, "gpu: {h100_sxm: {memory: 0.8}}\n"), "'gpu'"


# ---- expert stats CSV (optimize --expert-stats, experts --stats) --------------------------------------------------

def _experts(t: Path, text, optimize=False) -> list[str]:
    path = write(t / "loads.csv", text)
    if optimize:
        return ["optimize", "qwen3-30b-a3b", "--workload", "isl=512,osl=64,rate=2", "--gpus", "h100_sxm:8", "--top",
                "1", "--expert-stats", path]
    return ["experts", "qwen3-30b-a3b", "--ep", "8", "--stats", path]


def _loads(bad: str = "") -> str:
    return "expert,count\n" + "".join(f"{e},{100 + e}\n" for e in range(127)) + f"127,{bad or 5}\n"


for _name, _bad in {"negative": "-5", "nan": "nan", "inf": "inf", "non-numeric": "many"}.items():
    case(f"expert-stats-{_name}")(lambda t, b=_bad: (_experts(t, _loads(b)), "loads.csv:129"))
    case(f"optimize-expert-stats-{_name}")(lambda t, b=_bad: (_experts(t, _loads(b), optimize=True), "loads.csv:129"))


@case("expert-stats-binary")
def _(t):
    return _experts(t, BINARY["png"]), "loads.csv"


@case("expert-stats-utf16")
def _(t):
    return _experts(t, _loads().encode("utf-16"), optimize=True), "UTF-16"


@case("expert-stats-too-many-rows")
def _(t):
    return _experts(t, "expert,count\n" + "".join(f"{e},1\n" for e in range(70_000))), "65,536"


@case("expert-stats-huge-field")
def _(t):
    return _experts(t, 'expert,count\n0,"' + "9" * 200_000 + '"\n'), "malformed CSV"


# ---- calibrate measurements CSV ------------------------------------------------------------------------------------

def _calibrate(t: Path, text) -> list[str]:
    return ["calibrate", write(t / "m.csv", text), "--out", str(t / "cal.yaml")]


@case("calibrate-10^6-rows", isolated=True)
def _(t):
    return _calibrate(t, CAL_COLUMNS + CAL_ROW * 1_000_000), "10,000 rows"


_CALIBRATE_ROWS = {
    "unknown-gpu": (CAL_ROW.replace("h100_sxm", "h900"), "'gpu'"),
    "unknown-engine": (CAL_ROW.replace("vllm", "vllm2"), "'engine'"),
    "unknown-model": (CAL_ROW.replace("llama-3.1-8b", "llama-9"), "'model'"),
    "inf-ttft": (CAL_ROW.replace(",120,", ",inf,"), "ttft_ms"),
    "nan-tpot": (CAL_ROW.replace(",12.5", ",nan"), "tpot_ms"),
    "negative-tp": (CAL_ROW.replace("vllm,1,", "vllm,-1,"), "'tp'"),
    "tp-not-dividing-heads": (CAL_ROW.replace("vllm,1,", "vllm,3,"), "line 2"),
    "isl-1e30": (CAL_ROW.replace(",1024,", ",1e30,"), "'isl'"),
    "extra-cells": (CAL_ROW.replace("\n", ",1,2,3\n"), "line 2"),
    "short-row": ("llama-3.1-8b\n", "line 2"),
    "huge-field": ('llama-3.1-8b,"' + "x" * 200_000 + '",vllm,1,1024,256,16,120,12.5\n', "malformed CSV"),
}
for _name, (_row, _needle) in _CALIBRATE_ROWS.items():
    case(f"calibrate-{_name}")(lambda t, r=_row, n=_needle: (_calibrate(t, CAL_COLUMNS + r), n))


@case("calibrate-binary")
def _(t):
    return _calibrate(t, BINARY["random"]), "m.csv"


@case("calibrate-utf16")
def _(t):
    return _calibrate(t, (CAL_COLUMNS + CAL_ROW).encode("utf-16")), "UTF-16"


@case("calibrate-empty")
def _(t):
    return _calibrate(t, ""), "empty"


# ---- simulate PLAN.json ---------------------------------------------------------------------------------------------

def _simulate(t: Path, text, *extra) -> list[str]:
    return ["simulate", write(t / "plan.json", text), "--duration-s", "5", *extra]


_PLAN_EDITS = {
    "another-model": (dict(model="llama-3.1-405b"), "instances[0]"),
    "gpu-cannot-hold-it": (dict(plans__instances__gpu="l4"), "instances[0]"),
    "unknown-model": (dict(model="llama-9"), "'model'"),
    "model-number": (dict(model=7), "model"),
    "tp-string": (dict(plans__instances__tp="two"), "tp"),
    "tp-not-dividing-heads": (dict(plans__instances__tp=3), "instances[0]"),
    "count-negative": (dict(plans__instances__count=-1), "count"),
    "role-unknown": (dict(plans__instances__role="boss"), "role"),
    "skew-string": (dict(plans__instances__skew="x"), "skew"),
    "dtype-unknown": (dict(dtype="fp3"), "dtype"),
    "plans-mapping": (dict(plans={"rank": 1}), "plans"),
    "workload-string": (dict(workload="chat"), "workload"),
    "isl-string": (dict(workload__isl="2k"), "isl"),
    "percentile-string": (dict(workload__slo__percentile="p90"), "percentile"),
    "levers-hwdb-string": (dict(levers={"hwdb": "folder"}), "levers.hwdb"),
    "levers-kv-compression-string": (dict(levers={"kv_compression": "x"}), "kv_compression"),
    "load-rps-list": (dict(plans__instances__load_rps=[1]), "load_rps"),
}
for _name, (_edits, _needle) in _PLAN_EDITS.items():
    case(f"plan-{_name}")(lambda t, e=_edits, n=_needle: (_simulate(t, plan(**e)), n))


@case("plan-isl-1e999")
def _(t):
    return _simulate(t, plan().replace('"isl": 2048', '"isl": 1e999')), "isl"


@case("plan-nan")
def _(t):
    return _simulate(t, plan().replace('"osl": 256', '"osl": NaN')), "NaN"


@case("plan-truncated")
def _(t):
    return _simulate(t, plan()[: len(plan()) // 2]), "malformed JSON"


@case("plan-deep-nesting", isolated=True)
def _(t):
    return _simulate(t, '{"plans": ' + DEEP + "}"), "nesting deeper"


@case("plan-binary")
def _(t):
    return _simulate(t, BINARY["random"]), "plan.json"


@case("plan-utf16")
def _(t):
    return _simulate(t, plan().encode("utf-16")), "UTF-16"


# ---- simulate --trace CSV --------------------------------------------------------------------------------------------

def _trace(t: Path, rows, head=TRACE_HEAD) -> list[str]:
    return ["simulate", str(PLAN), "--trace", write(t / "trace.csv", head + rows)]


_TRACE_ROWS = {
    "nan-arrival": ("0,128,16\nnan,128,16\n", "arrival_s"),
    "negative-arrival": ("0,128,16\n-1,128,16\n", "arrival_s"),
    "inf-arrival": ("0,128,16\ninf,128,16\n", "arrival_s"),
    "non-numeric-arrival": ("0,128,16\nsoon,128,16\n", "arrival_s"),
    "isl-1e30": ("0,1e30,16\n", "isl"),
    "osl-zero": ("0,128,0\n", "osl"),
    "huge-field": ('0,"' + "1" * 200_000 + '",16\n', "malformed CSV"),
}
for _name, (_rows, _needle) in _TRACE_ROWS.items():
    case(f"trace-{_name}")(lambda t, r=_rows, n=_needle: (_trace(t, r), n))


@case("trace-too-many-rows", isolated=True)
def _(t):
    return _trace(t, "0.5,128,16\n" * 1_000_001), "1,000,000 rows"


@case("trace-binary")
def _(t):
    return ["simulate", str(PLAN), "--trace", write(t / "trace.csv", BINARY["nul"])], "trace.csv"


# ---- running a case ------------------------------------------------------------------------------------------------

# A forked child's peak RSS starts at its parent's resident size, so `python -m cli` is started by this small
# launcher (not by the pytest worker): it applies the address-space limit and reports the CLI's own peak RSS.
LAUNCHER = """import os, resource, subprocess, sys
limit = int(sys.argv[1])
cli = subprocess.Popen([sys.executable, "-m", "cli", *sys.argv[2:]],
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
_, status, usage = os.wait4(cli.pid, 0)
sys.stdout.flush()
sys.stderr.write(f"\\n@@peak_rss_kib {usage.ru_maxrss}\\n")
sys.exit(os.waitstatus_to_exitcode(status) % 256)
"""


def run_isolated(argv: list[str], pythonpath: str, timeout_s: float, address_space: int = ADDRESS_SPACE):
    """(exit code or 'hang', output, seconds, peak RSS in MiB) of `python -m cli argv` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": pythonpath, "COLUMNS": "400"}
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(address_space), *argv], cwd=pythonpath,
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code: int | str = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the launcher and the CLI
            proc.wait()
            code = "hang"
        elapsed = time.perf_counter() - t0
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    text, _, peak = text.rpartition("\n@@peak_rss_kib ")
    return code, text, elapsed, int(peak) / 1024 if peak.strip().isdigit() else 0.0


def run_in_process(argv: list[str]):
    from typer.testing import CliRunner

    import cli

    t0 = time.perf_counter()
    r = CliRunner().invoke(cli.app, argv)
    crashed = r.exception is not None and not isinstance(r.exception, SystemExit)
    return r.exit_code, r.output + ("\nTraceback (in process)" if crashed else ""), time.perf_counter() - t0


def one_line_error(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_hostile_file_exits_2_naming_the_field_without_a_traceback(c: Case, tmp_path):
    argv, needle = c.build(tmp_path)
    if c.isolated:
        code, output, seconds, rss_mib = run_isolated(argv, str(ROOT), timeout_s=60)
        assert rss_mib < 400, f"{c.id}: peak RSS {rss_mib:.0f} MiB"
    else:
        code, output, seconds = run_in_process(argv)
    assert "Traceback" not in output, output[-2000:]
    assert code == 2, f"{c.id}: exit {code}: {output[-500:]}"
    message = re.sub(r"\s+", " ", output)
    assert needle in message, f"{c.id}: {needle!r} not in {message[-400:]!r}"
    assert len(one_line_error(output)) < 600  # one line, no expanded value
    assert seconds < MAX_S, f"{c.id}: {seconds:.1f} s"


def test_the_corpus_covers_every_subcommand_that_reads_a_file(tmp_path):
    assert len(CASES) >= 100
    argvs = [c.build(tmp_path / c.id)[0] for c in CASES if not c.isolated]
    commands = {a[0] if a[0] != "model" else "model show" for a in argvs}
    assert commands >= {"model show", "estimate", "optimize", "simulate", "calibrate", "experts"}
    flags = {f for a in argvs for f in a if f.startswith("--")}
    assert flags >= {"--workload", "--hwdb", "--calibration", "--expert-stats", "--stats", "--trace"}


def test_alias_bombs_are_refused_in_well_under_a_second_in_process(tmp_path):
    from hwdb.safe_load import UnsafeInputError, load_document

    path = Path(write(tmp_path / "bomb.yaml", f"top: {BOMB}\n"))
    t0 = time.perf_counter()
    with pytest.raises(UnsafeInputError, match="aliases"):
        load_document(path)
    assert time.perf_counter() - t0 < 0.2


# ---- inputs that must now work ---------------------------------------------------------------------------------------

def test_mistral_7b_v01_config_with_its_sliding_window_loads_and_plans():
    from typer.testing import CliRunner

    import cli
    from planner.core.model import load_model

    config = HF / "mistral-7b-v0.1.json"
    m = load_model(str(config))
    assert (m.hidden_size, m.num_layers, m.num_heads, m.num_kv_heads, m.intermediate_size, m.vocab_size,
            m.max_context, m.sliding_window, m.num_sliding_layers) == (4096, 32, 32, 8, 14336, 32000, 32768, 4096, 32)
    assert m.total_params == pytest.approx(7.24e9, rel=0.01)
    # every layer slides: a sequence holds at most the window, so 32k tokens cost what 4k do
    assert m.kv_bytes_per_sequence(32768) == m.kv_bytes_per_sequence(4096) == 4096 * m.kv_bytes_per_token()
    runner = CliRunner()
    show = runner.invoke(cli.app, ["model", "show", str(config), "--format", "json"])
    assert show.exit_code == 0, show.output
    assert json.loads(show.stdout)["kv_bytes_per_token_bf16"] == 32 * 2 * 8 * 128 * 2
    est = runner.invoke(cli.app, ["estimate", str(config), "--gpu", "h100_sxm", "--isl", "8192", "--osl", "512",
                                  "--format", "json"])
    assert est.exit_code == 0, est.output
    opt = runner.invoke(cli.app, ["optimize", str(config), "--workload", "isl=2048,osl=256,rate=4", "--gpus",
                                  "h100_sxm:2", "--top", "1", "--format", "json"])
    assert opt.exit_code == 0, opt.output
    assert json.loads(opt.stdout)["plans"][0]["goodput_rps"] > 0


def test_a_calibration_measured_under_gpu_and_engine_aliases_applies_under_their_canonical_names(tmp_path):
    from typer.testing import CliRunner

    import cli

    measurements = tmp_path / "m.csv"
    rows = [f"llama-3.1-8b,h100,vLLM,1,{isl},{osl},{c},{ttft},{tpot}\n"
            for isl, osl, c, ttft, tpot in ((1024, 256, 16, 400, 30), (512, 128, 4, 150, 22), (2048, 256, 32, 900, 41),
                                            (256, 512, 64, 300, 35))]
    measurements.write_text(CAL_COLUMNS + "".join(rows))
    cal = tmp_path / "cal.yaml"
    runner = CliRunner()
    r = runner.invoke(cli.app, ["calibrate", str(measurements), "--out", str(cal), "--format", "json"])
    assert r.exit_code == 0, r.output
    fitted = json.loads(r.stdout)
    assert set(fitted["gpus"]) == {"h100_sxm"} and set(fitted["engines"]) == {"vllm"}

    def tpot_ms(*extra):
        out = runner.invoke(cli.app, [*OPTIMIZE, "--format", "json", *extra])
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)["plans"][0]["predicted"]["tpot_ms"]

    assert tpot_ms("--calibration", str(cal)) != pytest.approx(tpot_ms(), rel=0.01)


def test_a_calibration_yaml_may_name_a_gpu_and_an_engine_by_alias(tmp_path):
    from planner.search.calibrate import load_calibration

    path = write(tmp_path / "cal.yaml", "gpus: {h100: {memory: 0.7}}\nengines: {vLLM: {step_overhead_ms: 2.0}}\n")
    cal = load_calibration(path)
    assert cal.gpus == {"h100_sxm": {"memory": 0.7}} and cal.engines == {"vllm": {"step_overhead_ms": 2.0}}


def test_an_unsorted_trace_is_sorted_not_refused(tmp_path):
    from planner.simulate import load_trace_csv

    path = write(tmp_path / "t.csv", TRACE_HEAD + "2,128,16\n0,64,8\n1,32,4\n")
    assert [r[0] for r in load_trace_csv(path)] == [0.0, 1.0, 2.0]


# ---- the tally (`python tests/test_hostile_files.py PYTHONPATH`) ----------------------------------------------------

def tally(pythonpath: str, timeout_s: float = 20.0) -> dict[str, list[str]]:
    """Outcome of every case against the tree at `pythonpath`, each in a fresh process."""
    out: dict[str, list[str]] = {}
    for c in CASES:
        with tempfile.TemporaryDirectory() as d:
            argv, needle = c.build(Path(d))
            code, text, seconds, rss = run_isolated(argv, pythonpath, timeout_s, 4 << 30)
        if code == "hang":
            kind = "hang"
        elif "Traceback" in text or "MemoryError" in text:
            kind = "traceback"
        elif code == 2 and needle in re.sub(r"\s+", " ", text):
            kind = "ok"
        elif code == 2:
            kind = "exit 2, field not named"
        else:
            kind = f"exit {code}"
        out.setdefault(kind, []).append(c.id)
        print(f"{c.id:45s} {kind:24s} {seconds:6.1f} s {rss:7.0f} MiB", flush=True)
    return out


if __name__ == "__main__":
    result = tally(sys.argv[1] if len(sys.argv) > 1 else str(ROOT))
    print(json.dumps({k: len(v) for k, v in result.items()}), f"of {len(CASES)} cases")
