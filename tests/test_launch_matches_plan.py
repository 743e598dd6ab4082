"""Every golden plan's launch lines carry what the plan assumed (docs/architecture.md "Contracts"): each parallel degree, the weight and
KV dtypes, the memory fraction the memory model took, max batch and chunk tokens — for vLLM, SGLang and TRT-LLM.

The goldens carry one engine's lines; the same plans are launched here for all three engines and both KV dtypes
through `planner.render.report.launch_for`, the code path of `planner optimize --launch`."""

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from planner.core.hf_config import model_from_hf_config
from planner.core.model import dtype_bytes, load_model
from planner.core.parallel import FP8_BLOCK, ParallelConfig, parallel_configs, quant_block, validation_error
from planner.render.launch import launch_commands
from planner.render.report import launch_for
from planner.search.optimize import instance_builder
from planner.search.plan import InstancePlan, Plan
from planner.search.scenario import build_request

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
GOLDENS = sorted((EXAMPLES / "goldens").glob("*.json"))
ENGINES = ("vllm", "sglang", "trtllm")


def plan_from_json(d: dict) -> Plan:
    insts = tuple(InstancePlan(i["role"], i["gpu"], i["count"], i["tp"], i["pp"], i["ep"], i["dp"], i["max_batch"],
                               i["chunk_tokens"], i["load_rps"], i["utilization"], i["predicted"]["ttft_ms"],
                               i["predicted"]["tpot_ms"], i["binding"], i["skew"], i.get("sm_fraction", 0.0),
                               i.get("spec_k")) for i in d["instances"])
    return Plan(d["rank"], d["family"], d["mode"], d["goodput_rps"], d["tokens_per_s"], d["tokens_per_s_per_gpu"],
                d["cost_usd_per_h"], d["usd_per_million_tokens"], d["gpus"], insts, d["predicted"], d["binding"])


def flag(argv, name):
    """The value after `name` in argv (None when absent)."""
    argv = list(argv)
    return argv[argv.index(name) + 1] if name in argv else None


def assumed_fraction(req, inst: InstancePlan) -> float:
    """The engine memory fraction the memory model used for this instance, read back from its breakdown:
    usable = fraction × total (vLLM, SGLang) or weights + workspace + fraction × the rest (TRT-LLM)."""
    setup = instance_builder(req).build(inst.gpu, ParallelConfig(inst.tp, inst.pp, inst.ep, inst.dp),
                                        inst.chunk_tokens)
    gpu = setup.gpu
    mem = setup.memory(max(c.isl + c.osl for c in req.classes))
    if setup.engine.memory_fraction_of_free:
        taken = mem.weights_gb + mem.activations_gb
        return (mem.usable_gb - taken) / (gpu.memory_gb - taken)
    return mem.usable_gb / gpu.memory_gb


def check_weights(model_arg: str, argv, req):
    """The planned weight dtype: the checkpoint as shipped, online fp8 (vLLM/SGLang), or a named quantised one."""
    m = req.model
    if dtype_bytes(req.dtype) >= dtype_bytes(m.weight_dtype):  # as shipped (or narrower than planned)
        assert model_arg == m.hf_id and "--quantization" not in argv
    elif req.dtype == "fp8" and req.engine != "trtllm":
        assert model_arg == m.hf_id and flag(argv, "--quantization") == "fp8"
    else:
        assert model_arg.endswith(f"-{req.dtype.upper()}") and "--quantization" not in argv


def check_vllm(inst, argv, req, fraction):
    if argv[:2] == ("vllm", "serve"):
        check_weights(argv[2], argv, req)
    else:  # a Dynamo worker of a disaggregated plan
        assert argv[:3] == ("python3", "-m", "dynamo.vllm") and flag(argv, "--disaggregation-mode") == inst.role
        check_weights(flag(argv, "--model"), argv, req)
    assert int(flag(argv, "--tensor-parallel-size")) == inst.tp
    assert int(flag(argv, "--pipeline-parallel-size") or 1) == inst.pp
    assert int(flag(argv, "--data-parallel-size") or 1) == inst.dp
    assert ("--enable-expert-parallel" in argv) == (inst.ep > 1)
    assert inst.ep in (1, inst.tp * inst.dp)  # vLLM's EP width is tp × dp
    assert int(flag(argv, "--max-num-seqs")) == max(1, inst.max_batch // inst.dp)  # per DP engine
    if inst.role != "decode":
        assert int(flag(argv, "--max-num-batched-tokens")) == inst.chunk_tokens
    assert flag(argv, "--kv-cache-dtype") == ("fp8" if req.kv_dtype == "fp8" else None)
    assert float(flag(argv, "--gpu-memory-utilization")) == pytest.approx(fraction, abs=1e-9)


def check_sglang(inst, argv, req, fraction):
    assert argv[:3] == ("python", "-m", "sglang.launch_server")
    check_weights(flag(argv, "--model-path"), argv, req)
    assert int(flag(argv, "--tp-size")) == inst.tp * inst.dp
    assert int(flag(argv, "--dp-size") or 1) == inst.dp and ("--enable-dp-attention" in argv) == (inst.dp > 1)
    assert int(flag(argv, "--ep-size") or 1) == inst.ep
    assert int(flag(argv, "--pp-size") or 1) == inst.pp
    assert int(flag(argv, "--max-running-requests")) == inst.max_batch
    if inst.role != "decode":
        assert int(flag(argv, "--chunked-prefill-size")) == inst.chunk_tokens
    assert flag(argv, "--kv-cache-dtype") == ("fp8_e4m3" if req.kv_dtype == "fp8" else None)
    assert float(flag(argv, "--mem-fraction-static")) == pytest.approx(fraction, abs=1e-9)


def check_trtllm(inst, argv, files, req, fraction):
    assert argv[0] == "trtllm-serve"
    check_weights(argv[1], argv, req)
    assert int(flag(argv, "--tp_size")) == inst.tp * inst.dp  # with attention DP: every rank
    assert int(flag(argv, "--pp_size")) == inst.pp and int(flag(argv, "--ep_size")) == inst.ep
    assert int(flag(argv, "--max_batch_size")) == max(1, inst.max_batch // inst.dp)  # per rank
    assert int(flag(argv, "--max_num_tokens")) == inst.chunk_tokens
    extra = yaml.safe_load(files[flag(argv, "--config")])
    assert extra.get("enable_attention_dp", False) == (inst.dp > 1)
    assert extra["kv_cache_config"].get("dtype") == ("fp8" if req.kv_dtype == "fp8" else None)
    assert extra["kv_cache_config"]["free_gpu_memory_fraction"] == pytest.approx(fraction, abs=1e-9)


CASES = [(g, e, kv) for g in GOLDENS for e in ENGINES for kv in ("bf16", "fp8")]


@pytest.mark.parametrize("golden,engine,kv_dtype", CASES, ids=lambda x: getattr(x, "stem", x))
def test_every_golden_plan_launches_as_planned(golden, engine, kv_dtype):
    doc = json.loads(golden.read_text())
    base = build_request(str(EXAMPLES / f"{golden.stem}.yaml"))
    assert (doc["engine"], doc["dtype"], doc["kv_dtype"]) == (base.engine, base.dtype, base.kv_dtype)
    req = dataclasses.replace(base, engine=engine, kv_dtype=kv_dtype)
    checked = 0
    for d in doc["plans"] + doc["family_bests"]:
        plan = plan_from_json(d)
        if engine == doc["engine"] and kv_dtype == doc["kv_dtype"]:  # the golden's own lines are today's
            assert d["launch"] == [c.to_json() for c in launch_for(plan, req)]
        servers = [c for c in launch_for(plan, req) if c.role != "router"]
        assert len(servers) == len(plan.instances)
        for inst, cmd in zip(plan.instances, servers):
            assert cmd.replicas == inst.count and cmd.engine == engine
            fraction = assumed_fraction(req, inst)
            if engine == "trtllm":
                check_trtllm(inst, cmd.argv, dict(cmd.files), req, fraction)
            else:
                {"vllm": check_vllm, "sglang": check_sglang}[engine](inst, cmd.argv, req, fraction)
            checked += 1
    assert checked >= 1


def test_memory_fraction_follows_the_gpu_not_a_constant():
    """SGLang's mem_fraction_static per GPU (hwdb/engines.yaml): 0.83 on H100, 0.9 on H200 — the line says so."""
    inst = InstancePlan("agg", "h100_sxm", 1, 4, 1, 1, 1, 64, 8192, {}, 0.5, 1.0, 1.0, "tpot")
    plan = Plan(1, "", "agg", 1.0, 1.0, 1.0, 1.0, 1.0, {"h100_sxm": 4, "h200_sxm": 4},
                (inst, dataclasses.replace(inst, gpu="h200_sxm")), {}, "tpot")
    req = dataclasses.replace(build_request("llama-3.1-70b", gpus="h100_sxm:4,h200_sxm:4", workload="isl=1000,osl=100"),
                              engine="sglang")
    h100, h200 = (flag(c.argv, "--mem-fraction-static") for c in launch_for(plan, req))
    assert (h100, h200) == ("0.83", "0.9")


# ---- the reproducers ----------------------------------------------------------------------------------

def tp1_dp4_plan(gpu="h100_sxm"):
    inst = InstancePlan("agg", gpu, 2, 1, 1, 4, 4, 512, 8192, {"default": 1.0}, 0.5, 100.0, 20.0, "tpot")
    return Plan(1, "", "agg", 1.0, 100.0, 10.0, 10.0, 1.0, {gpu: 8}, (inst,), {}, "tpot")


def test_tp1_dp4_fp8_plan_launches_trtllm_as_attention_dp_with_fp8_weights_and_kv():
    (cmd,) = launch_commands(tp1_dp4_plan(), load_model("qwen3-30b-a3b"), "trtllm", "fp8", "fp8", 4096,
                             {"h100_sxm": 8}, {"h100_sxm": 0.9})
    argv = cmd.argv
    assert argv[1] == "./Qwen3-30B-A3B-FP8" and "Qwen/Qwen3-30B-A3B with fp8 weights" in cmd.note
    assert (flag(argv, "--tp_size"), flag(argv, "--ep_size"), flag(argv, "--pp_size")) == ("4", "4", "1")
    assert flag(argv, "--max_batch_size") == "128" and flag(argv, "--max_num_tokens") == "8192"
    extra = yaml.safe_load(dict(cmd.files)[flag(argv, "--config")])
    assert extra == {"enable_attention_dp": True, "enable_chunked_prefill": True,
                     "kv_cache_config": {"dtype": "fp8", "free_gpu_memory_fraction": 0.9}}
    assert cmd.shell.startswith(f"cat > {flag(argv, '--config')} <<'EOF'\n") and "\nEOF\ntrtllm-serve " in cmd.shell


def test_natively_fp8_checkpoint_launches_trtllm_by_its_own_name():
    (cmd,) = launch_commands(tp1_dp4_plan(), load_model("deepseek-v3"), "trtllm", "fp8", "bf16", 4096,
                             {"h100_sxm": 8}, {"h100_sxm": 0.9})
    assert cmd.argv[1] == "deepseek-ai/DeepSeek-V3" and cmd.note == ""
    assert "dtype" not in yaml.safe_load(dict(cmd.files)[flag(cmd.argv, "--config")])["kv_cache_config"]


def test_trtllm_command_and_its_config_file_are_in_the_plan_json():
    (cmd,) = launch_commands(tp1_dp4_plan(), load_model("qwen3-30b-a3b"), "trtllm", "fp8", "fp8", 4096,
                             {"h100_sxm": 8}, {"h100_sxm": 0.9})
    d = cmd.to_json()
    assert d["files"] == dict(cmd.files) and "enable_attention_dp: true" in d["files"][flag(d["argv"], "--config")]


def test_optimize_with_trtllm_gives_lines_that_run_the_plan():
    req = build_request("qwen3-30b-a3b", gpus="h100_sxm:8", workload="isl=1024,osl=256,rate=2",
                        slo="ttft=2s,tpot=100ms", engine="trtllm", dtype="fp8", kv_dtype="fp8")
    from planner.search.optimize import optimize

    plan = optimize(req).plans[0]
    for inst, cmd in zip(plan.instances, launch_for(plan, req)):
        check_trtllm(inst, cmd.argv, dict(cmd.files), req, assumed_fraction(req, inst))


# ---- fp8 block quantisation: shard widths the engines can load ---------------------------------------------

@pytest.mark.parametrize("model,tp,width", [("qwen3-235b-a22b", 8, 1536), ("qwen3-30b-a3b", 4, 768)])
def test_experts_split_to_192_columns_are_refused_for_fp8_and_kept_for_bf16(model, tp, width):
    m, par = load_model(model), ParallelConfig(tp)
    assert width // tp == 192
    assert validation_error(m, par, 8, dtype="bf16") is None and par in parallel_configs(m, 8, 8, dtype="bf16")
    err = validation_error(m, par, 8, dtype="fp8")
    assert f"expert gate/up width {width} / {tp} = 192" in err and "block_n = 128" in err
    assert par not in parallel_configs(m, 8, 8, dtype="fp8")
    assert ParallelConfig(tp, 1, tp) in parallel_configs(m, 8, 8, dtype="fp8")  # EP keeps experts whole


@pytest.mark.parametrize("model,tp", [("qwen3-235b-a22b", 8), ("qwen3-30b-a3b", 4)])
def test_estimate_of_an_unloadable_fp8_shape_exits_2_naming_the_block_rule(model, tp):
    from typer.testing import CliRunner

    from cli import app

    args = ["estimate", model, "--gpu", "h200_sxm", "--tp", str(tp), "--isl", "1000", "--osl", "100"]
    bad = CliRunner().invoke(app, args + ["--dtype", "fp8"])
    assert bad.exit_code == 2 and "block_n = 128" in bad.output and "Traceback" not in bad.output
    assert CliRunner().invoke(app, args + ["--dtype", "bf16"]).exit_code == 0


def test_block_size_comes_from_the_checkpoint_config():
    cfg = json.loads(json.dumps(yaml.safe_load((Path(__file__).resolve().parents[1] / "planner" / "models" /
                                                "qwen3-30b-a3b.yaml").read_text())["hf_config"]))
    cfg["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [64, 64]}
    m = model_from_hf_config(cfg, "config.json")
    assert (m.weight_dtype, m.weight_block_size, quant_block(m, "fp8")) == ("fp8", (64, 64), (64, 64))
    assert validation_error(m, ParallelConfig(4), 8, dtype="fp8") is None  # 192 is a multiple of 64
    assert quant_block(load_model("deepseek-v3"), "fp8") == (128, 128)  # its own config.json
    assert quant_block(load_model("qwen3-30b-a3b"), "fp8") == FP8_BLOCK  # the fp8 convention for a bf16 checkpoint
    assert quant_block(load_model("qwen3-30b-a3b"), "bf16") is None


def test_optimize_fp8_never_plans_a_shape_the_engines_refuse():
    from planner.search.optimize import optimize

    req = build_request("qwen3-30b-a3b", gpus="h100_sxm:8", workload="isl=1024,osl=256,rate=2",
                        slo="ttft=2s,tpot=100ms", dtype="fp8")
    result = optimize(req)
    for plan in result.plans + result.family_bests:
        for i in plan.instances:
            assert validation_error(req.model, ParallelConfig(i.tp, i.pp, i.ep, i.dp), 8, dtype="fp8") is None
