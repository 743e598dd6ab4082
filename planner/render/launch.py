"""Plan -> paste-ready launch commands for vLLM, SGLang and TensorRT-LLM (flag spellings: shared/reference/facts.md
§3.3: vLLM `vllm serve` / Dynamo >= 1.0 `--disaggregation-mode`, SGLang `sglang.launch_server` + `sglang_router`,
`trtllm-serve`)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

import yaml

from planner.core.model import ModelSpec, dtype_bytes
from planner.core.vocab import Engine, Role
from planner.search.plan import InstancePlan, Plan

NIXL = json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both"}, separators=(",", ":"))
SGLANG_BOOTSTRAP_PORT = 8998
# NVIDIA Model Optimizer export formats per weight dtype (Model-Optimizer examples/llm_ptq huggingface_example.sh
# --quant; TensorRT-LLM docs "Quantization": trtllm-serve runs pre-quantised ModelOpt / HF checkpoints)
MODELOPT_QUANT = {"fp8": "fp8", "fp4": "nvfp4", "int4": "int4_awq", "int8": "int8_sq"}


@dataclass(frozen=True)
class LaunchCommand:
    role: str  # a Role, or "router" for the P/D router
    engine: str
    replicas: int  # run this many copies (one per instance)
    argv: tuple[str, ...]
    note: str = ""
    files: tuple[tuple[str, str], ...] = ()  # (file name, content) the command reads: TRT-LLM's --config YAML

    @property
    def shell(self) -> str:
        """Paste-ready: each file it reads as a heredoc, then the command."""
        return "\n".join([f"cat > {name} <<'EOF'\n{text}EOF" for name, text in self.files] + [shlex.join(self.argv)])

    def to_json(self) -> dict:
        return {"role": self.role, "engine": self.engine, "replicas": self.replicas, "argv": list(self.argv),
                "shell": self.shell, "note": self.note, **({"files": dict(self.files)} if self.files else {})}


def _checkpoint(model: ModelSpec, dtype: str, engine: str) -> tuple[str, list[str], str]:
    """(model argument, quantisation flags, note) that give the planned weight dtype. vLLM and SGLang quantise a
    bf16 checkpoint to fp8 online (`--quantization fp8`); every other quantised dtype (and any on TRT-LLM, which
    reads the precision from the checkpoint) needs a pre-quantised checkpoint, named here as a local path."""
    hf_id = model.hf_id or model.name
    if dtype == model.weight_dtype or (dtype in ("bf16", "fp16") and model.weight_dtype in ("bf16", "fp16")):
        return hf_id, [], ""
    if dtype_bytes(dtype) > dtype_bytes(model.weight_dtype):
        return hf_id, [], (f"{hf_id} ships {model.weight_dtype} weights: the plan assumed {dtype} weights (more "
                           f"memory per GPU than this checkpoint needs)")
    if dtype == "fp8" and engine in ("vllm", "sglang"):
        return hf_id, ["--quantization", "fp8"], ""
    path = f"./{hf_id.split('/')[-1]}-{dtype.upper()}"
    quant = MODELOPT_QUANT.get(dtype, dtype)
    return path, [], (f"{path} stands for {hf_id} with {dtype} weights ({engine} takes the weight precision from "
                      f"the checkpoint): the publisher's where one exists, else export one with NVIDIA Model "
                      f"Optimizer (examples/llm_ptq/scripts/huggingface_example.sh --model {hf_id} --quant {quant} "
                      f"--export_fmt hf)")


def _kv_flags(kv_dtype: str, engine: str) -> list[str]:
    if kv_dtype != "fp8":
        return []
    return ["--kv-cache-dtype", "fp8_e4m3" if engine == Engine.sglang else "fp8"]


def _multi_node_note(inst: InstancePlan, domain: int, engine: str) -> str:
    gpus = inst.tp * inst.pp * inst.dp
    if gpus <= domain:
        return ""
    nodes = -(-gpus // domain)
    if engine == Engine.sglang:
        return f"spans {nodes} nodes: add --nnodes {nodes} --node-rank <i> --dist-init-addr <head>:5000 on each"
    if engine == Engine.trtllm:
        return f"spans {nodes} nodes: start it on all {gpus} ranks (srun/mpirun trtllm-llmapi-launch trtllm-serve …)"
    return f"spans {nodes} nodes: start a Ray cluster over them first (vLLM multi-node)"


def _vllm(inst: InstancePlan, ckpt: str, max_model_len: int, mem_fraction: float) -> list[str]:
    argv = ["vllm", "serve", ckpt, "--tensor-parallel-size", str(inst.tp)]
    if inst.pp > 1:
        argv += ["--pipeline-parallel-size", str(inst.pp)]
    if inst.dp > 1:
        argv += ["--data-parallel-size", str(inst.dp)]
    if inst.ep > 1:
        argv += ["--enable-expert-parallel"]  # EP width = tp × dp
    if inst.role != Role.decode:
        argv += ["--enable-chunked-prefill", "--max-num-batched-tokens", str(inst.chunk_tokens)]
    argv += ["--max-num-seqs", str(max(1, inst.max_batch // inst.dp)), "--max-model-len", str(max_model_len),
             "--gpu-memory-utilization", f"{mem_fraction:g}"]
    return argv


def _sglang(inst: InstancePlan, ckpt: str, max_model_len: int, mem_fraction: float) -> list[str]:
    argv = ["python", "-m", "sglang.launch_server", "--model-path", ckpt, "--tp-size", str(inst.tp * inst.dp)]
    if inst.dp > 1:
        argv += ["--dp-size", str(inst.dp), "--enable-dp-attention"]
    if inst.ep > 1:
        argv += ["--ep-size", str(inst.ep)]
    if inst.pp > 1:
        argv += ["--pp-size", str(inst.pp)]
    if inst.role != Role.decode:
        argv += ["--chunked-prefill-size", str(inst.chunk_tokens)]
    argv += ["--max-running-requests", str(inst.max_batch), "--context-length", str(max_model_len),
             "--mem-fraction-static", f"{mem_fraction:g}"]
    return argv


def _trtllm(inst: InstancePlan, ckpt: str, kv_dtype: str, max_model_len: int, mem_fraction: float,
            config_file: str) -> tuple[list[str], str, str]:
    """(argv, --config YAML, note). `trtllm-serve MODEL --tp_size … --config extra.yml` (TensorRT-LLM docs,
    examples/serve/deepseek_r1_reasoning_parser.sh; releases before 1.1 spell it --extra_llm_api_options): LLM-API
    settings without a flag go in the YAML. With attention DP --tp_size counts every rank (attention DP across
    them, experts EP/TP over them) and each rank schedules its own batch, so --max_batch_size is per rank."""
    # the fraction is of the memory left after weights and buffers
    kv: dict[str, float | str] = {"free_gpu_memory_fraction": mem_fraction}
    if kv_dtype == "fp8":
        kv["dtype"] = "fp8"
    extra = {"kv_cache_config": kv, **({"enable_attention_dp": True} if inst.dp > 1 else {}),
             **({"enable_chunked_prefill": True} if inst.role != Role.decode else {})}
    argv = ["trtllm-serve", ckpt, "--tp_size", str(inst.tp * inst.dp), "--pp_size", str(inst.pp),
            "--ep_size", str(inst.ep), "--max_batch_size", str(max(1, inst.max_batch // inst.dp)),
            "--max_num_tokens", str(inst.chunk_tokens), "--max_seq_len", str(max_model_len), "--config", config_file]
    note = "" if inst.dp == 1 or inst.tp == 1 else (
        f"TRT-LLM attention DP runs attention unsplit on each of the {inst.tp * inst.dp} ranks: the plan's attention "
        f"TP{inst.tp} inside each DP rank has no trtllm-serve setting")
    return argv, yaml.safe_dump(extra, sort_keys=True, default_flow_style=False), note


def _spec_flags(spec, k: int, model: ModelSpec, engine: str) -> tuple[list[str], str]:
    """Speculative decoding at depth k (planner/levers/spec.py): (flags, note). vLLM `--speculative-config '<json>'`
    (facts.md §3.3; keys model / method / num_speculative_tokens); SGLang `--speculative-algorithm` STANDALONE
    (draft model) or EAGLE (DeepSeek's MTP / NextN head) with a chain of k steps, top-k 1, k + 1 draft tokens."""
    if engine == Engine.vllm:
        conf = {"method": "deepseek_mtp" if "deepseek" in model.name.lower() else "mtp", "num_speculative_tokens": k} \
            if spec.method == "mtp" else {"model": _draft_id(spec.draft), "method": "draft_model",
                                          "num_speculative_tokens": k}
        return ["--speculative-config", json.dumps(conf, separators=(",", ":"))], ""
    if engine == Engine.sglang:
        algo = ["--speculative-algorithm", "EAGLE"] if spec.method == "mtp" else [
            "--speculative-algorithm", "STANDALONE", "--speculative-draft-model-path", _draft_id(spec.draft)]
        return algo + ["--speculative-num-steps", str(k), "--speculative-eagle-topk", "1",
                       "--speculative-num-draft-tokens", str(k + 1)], ""
    return [], f"speculative decoding with k={k}: set it in the TRT-LLM speculative_config (not a trtllm-serve flag)"


def _draft_id(draft: str) -> str:
    """A bundled model's HF id, else the name or path as given."""
    from planner.core.model import load_model

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
                    scaleup_domain: dict[str, int], mem_fraction: dict[str, float], spec=None) -> list[LaunchCommand]:
    """One command per instance group (+ the P/D router for a disaggregated plan). `mem_fraction`: per GPU type,
    the engine memory fraction the memory model assumed (EngineProfile.for_gpu(gpu).gpu_memory_utilization)."""
    out = []
    disagg = any(i.role in (Role.prefill, Role.decode) for i in plan.instances)
    ckpt, quant_flags, ckpt_note = _checkpoint(model, dtype, engine)
    for n, inst in enumerate(plan.instances):
        files: tuple[tuple[str, str], ...] = ()
        if engine == Engine.trtllm:
            name = f"trtllm-{n}-{inst.role}.yml"
            argv, text, engine_note = _trtllm(inst, ckpt, kv_dtype, max_model_len, mem_fraction[inst.gpu], name)
            files = ((name, text),)
        else:
            build = _vllm if engine == Engine.vllm else _sglang
            argv = build(inst, ckpt, max_model_len, mem_fraction[inst.gpu]) + quant_flags + _kv_flags(kv_dtype, engine)
            engine_note = ""
        note = "; ".join(x for x in (_multi_node_note(inst, scaleup_domain[inst.gpu], engine), ckpt_note,
                                     engine_note) if x)
        if spec is not None and inst.spec_k:  # --spec: the depth the optimiser chose for this instance type
            flags, spec_note = _spec_flags(spec, inst.spec_k, model, engine)
            argv += flags
            note = "; ".join(x for x in (note, spec_note) if x)
        if _kv_note(kv_dtype):
            note = "; ".join(x for x in (note, _kv_note(kv_dtype)) if x)
        if inst.role == Role.multiplex:  # intra-GPU P/D: one collocated-looking server per instance
            out.append(LaunchCommand(inst.role, engine, inst.count, tuple(argv), (note + "; " if note else "") + (
                f"intra-GPU P/D multiplexing with prefill on {inst.sm_fraction:.0%} of the SMs: neither vLLM nor "
                "SGLang has an upstream SM-partition flag — run a multiplexing engine (semi-PD, an SGLang fork "
                "with SM-partitioned prefill/decode workers sharing weights and KV; DuetServe; Nexus) with that "
                "split; the flags above size the instance (as collocated vLLM/SGLang it would run as "
                "chunked prefill instead)"), files))
            continue
        if inst.role != Role.agg and engine == Engine.vllm:  # Dynamo workers carry the vLLM flags
            argv = ["python3", "-m", "dynamo.vllm", "--model", ckpt] + argv[3:] + [
                "--disaggregation-mode", inst.role, "--kv-transfer-config", NIXL]
        elif inst.role != Role.agg and engine == Engine.sglang:
            argv += ["--disaggregation-mode", inst.role, "--disaggregation-transfer-backend", "nixl"]
            if inst.role == Role.prefill:
                argv += ["--disaggregation-bootstrap-port", str(SGLANG_BOOTSTRAP_PORT)]
        elif inst.role != Role.agg:
            note = (note + "; " if note else "") + "TRT-LLM disaggregated serving needs trtllm-serve disaggregated " \
                                                   "configs; the flags above size each worker"
        out.append(LaunchCommand(inst.role, engine, inst.count, tuple(argv), note, files))
    mixed = disagg and any(i.role in (Role.agg, Role.multiplex) for i in plan.instances)
    if disagg and engine == Engine.vllm:
        out.append(LaunchCommand("router", engine, 1, ("python3", "-m", "dynamo.frontend", "--http-port", "8000",
                                                       "--router-mode", "kv"),
                                 "Dynamo frontend: routes to the prefill and decode workers it discovers"
                                 + ("; put it and the collocated instances behind one load balancer, splitting "
                                    "traffic as the plan's load_rps says" if mixed else "")))
    elif disagg and engine == Engine.sglang:
        argv = ["python", "-m", "sglang_router.launch_router", "--pd-disaggregation"]
        for inst in plan.instances:
            for k in range(inst.count):
                host = f"http://{inst.role}-{inst.gpu}-{k}:30000"
                argv += ["--prefill", host, str(SGLANG_BOOTSTRAP_PORT)] if inst.role == Role.prefill else \
                    (["--decode", host] if inst.role == Role.decode else [])
        out.append(LaunchCommand("router", engine, 1, tuple(argv), "replace the hosts with your workers' addresses"))
    return out
