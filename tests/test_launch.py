"""Launch commands: the engines' current flag spellings for every parallelism and role."""

from planner.core.model import load_model
from planner.render.launch import launch_commands
from planner.search.plan import InstancePlan, Plan


def instance(role="agg", tp=4, pp=1, ep=1, dp=1, count=2, gpu="h100_sxm"):
    return InstancePlan(role, gpu, count, tp, pp, ep, dp, 256, 8192, {"default": 1.0}, 0.5, 100.0, 20.0, "tpot")


def plan_of(*instances):
    return Plan(1, "", "agg", 1.0, 100.0, 10.0, 10.0, 1.0, {"h100_sxm": 8}, tuple(instances), {}, "none")


def commands(p, model="llama-3.1-70b", engine="vllm", dtype="bf16", kv="bf16"):
    return launch_commands(p, load_model(model), engine, dtype, kv, 4096, {"h100_sxm": 8}, {"h100_sxm": 0.9})


def test_vllm_collocated_instance_sets_tp_chunk_and_max_seqs():
    (cmd,) = commands(plan_of(instance()))
    argv = list(cmd.argv)
    assert argv[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-70B-Instruct"]
    assert argv[argv.index("--tensor-parallel-size") + 1] == "4"
    assert argv[argv.index("--max-num-batched-tokens") + 1] == "8192"
    assert argv[argv.index("--max-num-seqs") + 1] == "256" and cmd.replicas == 2


def test_vllm_moe_with_attention_dp_enables_expert_parallel():
    (cmd,) = commands(plan_of(instance(tp=1, dp=8, ep=8)), model="deepseek-v3")
    argv = list(cmd.argv)
    assert "--enable-expert-parallel" in argv and argv[argv.index("--data-parallel-size") + 1] == "8"
    assert argv[argv.index("--max-num-seqs") + 1] == "32"  # per DP rank


def test_fp8_weights_of_a_bf16_checkpoint_quantise_online_and_fp8_kv_is_set():
    (cmd,) = commands(plan_of(instance()), dtype="fp8", kv="fp8")
    assert "--quantization" in cmd.argv and "--kv-cache-dtype" in cmd.argv


def test_sglang_disaggregated_plan_has_prefill_decode_workers_and_a_router():
    cmds = commands(plan_of(instance("prefill", count=1), instance("decode", count=2)), engine="sglang")
    roles = [c.role for c in cmds]
    assert roles == ["prefill", "decode", "router"]
    assert "--disaggregation-mode" in cmds[0].argv and "prefill" in cmds[0].argv
    assert "--disaggregation-bootstrap-port" in cmds[0].argv
    router = list(cmds[2].argv)
    assert router[:4] == ["python", "-m", "sglang_router.launch_router", "--pd-disaggregation"]
    assert router.count("--decode") == 2 and router.count("--prefill") == 1


def test_vllm_disaggregated_plan_uses_dynamo_workers_with_nixl():
    cmds = commands(plan_of(instance("prefill", count=1), instance("decode", count=1)))
    assert cmds[0].argv[:3] == ("python3", "-m", "dynamo.vllm")
    assert "NixlConnector" in cmds[0].shell and cmds[-1].argv[2] == "dynamo.frontend"


def test_instance_wider_than_a_node_says_how_to_span_nodes():
    (cmd,) = commands(plan_of(instance(tp=8, pp=2)))
    assert "spans 2 nodes" in cmd.note
