"""Plan -> paste-ready launch commands for vLLM, SGLang and TensorRT-LLM (flag spellings: shared/reference/facts.md
§3.3: vLLM `vllm serve` / Dynamo >= 1.0 `--disaggregation-mode`, SGLang `sglang.launch_server` + `sglang_router`,
`trtllm-serve`)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from planner.model import ModelSpec
from planner.plan import InstancePlan, Plan

NIXL = json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both"}, separators=(",", ":"))
SGLANG_BOOTSTRAP_PORT = 8998


@dataclass(frozen=True)
class LaunchCommand:
    role: str  # agg | prefill | decode | router
    engine: str
    replicas: int  # run this many copies (one per instance)
    argv: tuple[str, ...]
    note: str = ""

    @property
    def shell(self) -> str:
        return shlex.join(self.argv)

    def to_json(self) -> dict:
        return {"role": self.role, "engine": self.engine, "replicas": self.replicas, "argv": list(self.argv),
                "shell": self.shell, "note": self.note}


def _quant_flags(model: ModelSpec, dtype: str) -> list[str]:
    """Online fp8 quantisation of a bf16 checkpoint; fp4/int4 need a pre-quantised checkpoint (no flag)."""
    if dtype == "fp8" and model.weight_dtype != "fp8":
        return ["--quantization", "fp8"]
    return []


def _kv_flags(kv_dtype: str, engine: str) -> list[str]:
    if kv_dtype != "fp8":
        return []
    return ["--kv-cache-dtype", "fp8_e4m3" if engine == "sglang" else "fp8"]


def _multi_node_note(inst: InstancePlan, domain: int, engine: str) -> str:
    gpus = inst.tp * inst.pp * inst.dp
    if gpus <= domain:
        return ""
    nodes = -(-gpus // domain)
    if engine == "sglang":
        return f"spans {nodes} nodes: add --nnodes {nodes} --node-rank <i> --dist-init-addr <head>:5000 on each"
    return f"spans {nodes} nodes: start a Ray cluster over them first (vLLM multi-node)"


def _vllm(model: ModelSpec, inst: InstancePlan, dtype: str, kv_dtype: str, max_model_len: int) -> list[str]:
    argv = ["vllm", "serve", model.hf_id, "--tensor-parallel-size", str(inst.tp)]
    if inst.pp > 1:
        argv += ["--pipeline-parallel-size", str(inst.pp)]
    if inst.dp > 1:
        argv += ["--data-parallel-size", str(inst.dp)]
    if inst.ep > 1:
        argv += ["--enable-expert-parallel"]  # EP width = tp × dp
    if inst.role != "decode":
        argv += ["--enable-chunked-prefill", "--max-num-batched-tokens", str(inst.chunk_tokens)]
    argv += ["--max-num-seqs", str(max(1, inst.max_batch // inst.dp)), "--max-model-len", str(max_model_len),
             "--gpu-memory-utilization", "0.9"]
    return argv + _quant_flags(model, dtype) + _kv_flags(kv_dtype, "vllm")


def _sglang(model: ModelSpec, inst: InstancePlan, dtype: str, kv_dtype: str, max_model_len: int) -> list[str]:
    argv = ["python", "-m", "sglang.launch_server", "--model-path", model.hf_id, "--tp-size", str(inst.tp * inst.dp)]
    if inst.dp > 1:
        argv += ["--dp-size", str(inst.dp), "--enable-dp-attention"]
    if inst.ep > 1:
        argv += ["--ep-size", str(inst.ep)]
    if inst.pp > 1:
        argv += ["--pp-size", str(inst.pp)]
    if inst.role != "decode":
        argv += ["--chunked-prefill-size", str(inst.chunk_tokens)]
    argv += ["--max-running-requests", str(inst.max_batch), "--context-length", str(max_model_len),
             "--mem-fraction-static", "0.88"]
    return argv + _quant_flags(model, dtype) + _kv_flags(kv_dtype, "sglang")


def _trtllm(model: ModelSpec, inst: InstancePlan, dtype: str, kv_dtype: str, max_model_len: int) -> list[str]:
    return ["trtllm-serve", model.hf_id, "--tp_size", str(inst.tp * inst.dp), "--pp_size", str(inst.pp),
            "--ep_size", str(inst.ep), "--max_batch_size", str(inst.max_batch),
            "--max_num_tokens", str(inst.chunk_tokens), "--max_seq_len", str(max_model_len)]


def _spec_flags(spec, k: int, model: ModelSpec, engine: str) -> tuple[list[str], str]:
    """Speculative decoding at depth k (planner/spec.py): (flags, note). vLLM `--speculative-config '<json>'`
    (facts.md §3.3; keys model / method / num_speculative_tokens); SGLang `--speculative-algorithm` STANDALONE
    (draft model) or EAGLE (DeepSeek's MTP / NextN head) with a chain of k steps, top-k 1, k + 1 draft tokens."""
    if engine == "vllm":
        conf = {"method": "deepseek_mtp" if "deepseek" in model.name.lower() else "mtp", "num_speculative_tokens": k} \
            if spec.method == "mtp" else {"model": _draft_id(spec.draft), "method": "draft_model",
                                          "num_speculative_tokens": k}
        return ["--speculative-config", json.dumps(conf, separators=(",", ":"))], ""
    if engine == "sglang":
        algo = ["--speculative-algorithm", "EAGLE"] if spec.method == "mtp" else [
            "--speculative-algorithm", "STANDALONE", "--speculative-draft-model-path", _draft_id(spec.draft)]
        return algo + ["--speculative-num-steps", str(k), "--speculative-eagle-topk", "1",
                       "--speculative-num-draft-tokens", str(k + 1)], ""
    return [], f"speculative decoding with k={k}: set it in the TRT-LLM speculative_config (not a trtllm-serve flag)"


def _draft_id(draft: str) -> str:
    """A bundled model's HF id, else the name or path as given."""
    from planner.model import load_model

    try:
        return load_model(draft).hf_id or draft
    except Exception:  # noqa: BLE001  a path the launch host resolves
        return draft


def _kv_note(kv_dtype: str) -> str:
    if kv_dtype != "int4":
        return ""
    return ("int4 KV cache: vLLM and SGLang ship fp8 KV at most; run an engine with a 4-bit KV cache (LMDeploy "
            "--quant-policy 4, QServe) for the modelled memory and bandwidth")


def launch_commands(plan: Plan, model: ModelSpec, engine: str, dtype: str, kv_dtype: str, max_model_len: int,
                    scaleup_domain: dict[str, int], spec=None) -> list[LaunchCommand]:
    """One command per instance group (+ the P/D router for a disaggregated plan)."""
    out = []
    disagg = any(i.role in ("prefill", "decode") for i in plan.instances)
    build = {"vllm": _vllm, "sglang": _sglang, "trtllm": _trtllm}[engine]
    for inst in plan.instances:
        argv = build(model, inst, dtype, kv_dtype, max_model_len)
        note = _multi_node_note(inst, scaleup_domain[inst.gpu], engine)
        if spec is not None and inst.spec_k:  # --spec: the depth the optimiser chose for this instance type
            flags, spec_note = _spec_flags(spec, inst.spec_k, model, engine)
            argv += flags
            note = "; ".join(x for x in (note, spec_note) if x)
        if _kv_note(kv_dtype):
            note = "; ".join(x for x in (note, _kv_note(kv_dtype)) if x)
        if inst.role == "multiplex":  # intra-GPU P/D: one collocated-looking server per instance
            out.append(LaunchCommand(inst.role, engine, inst.count, tuple(argv), (note + "; " if note else "") + (
                f"intra-GPU P/D multiplexing with prefill on {inst.sm_fraction:.0%} of the SMs: neither vLLM nor "
                "SGLang has an upstream SM-partition flag — run a multiplexing engine (semi-PD, an SGLang fork "
                "with SM-partitioned prefill/decode workers sharing weights and KV; DuetServe; Nexus) with that "
                "split; the flags above size the instance (as collocated vLLM/SGLang it would run as "
                "chunked prefill instead)")))
            continue
        if inst.role != "agg" and engine == "vllm":  # Dynamo workers carry the vLLM flags
            argv = ["python3", "-m", "dynamo.vllm", "--model", model.hf_id] + argv[3:] + [
                "--disaggregation-mode", inst.role, "--kv-transfer-config", NIXL]
        elif inst.role != "agg" and engine == "sglang":
            argv += ["--disaggregation-mode", inst.role, "--disaggregation-transfer-backend", "nixl"]
            if inst.role == "prefill":
                argv += ["--disaggregation-bootstrap-port", str(SGLANG_BOOTSTRAP_PORT)]
        elif inst.role != "agg":
            note = (note + "; " if note else "") + "TRT-LLM disaggregated serving needs trtllm-serve disaggregated " \
                                                   "configs; the flags above size each worker"
        out.append(LaunchCommand(inst.role, engine, inst.count, tuple(argv), note))
    mixed = disagg and any(i.role in ("agg", "multiplex") for i in plan.instances)
    if disagg and engine == "vllm":
        out.append(LaunchCommand("router", engine, 1, ("python3", "-m", "dynamo.frontend", "--http-port", "8000",
                                                       "--router-mode", "kv"),
                                 "Dynamo frontend: routes to the prefill and decode workers it discovers"
                                 + ("; put it and the collocated instances behind one load balancer, splitting "
                                    "traffic as the plan's load_rps says" if mixed else "")))
    elif disagg and engine == "sglang":
        argv = ["python", "-m", "sglang_router.launch_router", "--pd-disaggregation"]
        for inst in plan.instances:
            for k in range(inst.count):
                host = f"http://{inst.role}-{inst.gpu}-{k}:30000"
                argv += ["--prefill", host, str(SGLANG_BOOTSTRAP_PORT)] if inst.role == "prefill" else \
                    (["--decode", host] if inst.role == "decode" else [])
        out.append(LaunchCommand("router", engine, 1, tuple(argv), "replace the hosts with your workers' addresses"))
    return out
