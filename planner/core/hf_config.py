"""HuggingFace config.json -> ModelSpec, per architecture (facts: Llama has no head_dim key, Qwen3's head_dim
differs from hidden / heads, DeepSeek's KV is the MLA latent, gpt-oss's experts are intermediate_size wide, ...).
Unknown architectures fail closed."""

from __future__ import annotations

from planner.core.errors import PlannerInputError
from planner.core.inputs import shown_value
from planner.core.model import MAX_SIZE, ModelSpec, block_size

# HF architectures we understand -> how to read their config. Fail closed on anything else.
_HF_ARCHS = {
    "LlamaForCausalLM": "dense", "MistralForCausalLM": "dense", "Qwen2ForCausalLM": "dense",
    "Qwen3ForCausalLM": "dense", "Qwen3MoeForCausalLM": "qwen_moe", "Qwen2MoeForCausalLM": "qwen_moe",
    "MixtralForCausalLM": "mixtral", "DeepseekV3ForCausalLM": "deepseek", "DeepseekV2ForCausalLM": "deepseek",
    "GptOssForCausalLM": "gpt_oss",
}


def model_from_hf_config(cfg: dict, origin: str, name: str = "") -> ModelSpec:
    """A HuggingFace config.json as-is (see shared/reference/facts.md §1 for each family's traps)."""
    if "text_config" in cfg and "hidden_size" not in cfg:
        cfg = cfg["text_config"]
        if not isinstance(cfg, dict):
            raise PlannerInputError(f"{origin}: field 'text_config' must be a mapping")
    archs = cfg.get("architectures") or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise PlannerInputError(f"{origin}: field 'architectures' must be a list of names, got {shown_value(archs)}")
    arch = archs[0] if archs else ""
    kind = _HF_ARCHS.get(arch)
    if kind is None:
        raise PlannerInputError(f"{origin}: field 'architectures': unsupported architecture "
                                f"{shown_value(arch or '?')} (supported: {', '.join(sorted(_HF_ARCHS))})")

    def need(key):
        if key not in cfg:
            raise PlannerInputError(f"{origin}: missing field '{key}' for {arch}")
        return _hf_int(cfg, key, origin)

    def opt(key, default):  # HF reads an absent or null key as its default; any other value must be valid
        return default if cfg.get(key) is None else _hf_int(cfg, key, origin)

    hidden, heads = need("hidden_size"), need("num_attention_heads")
    if not hidden or not heads:
        raise PlannerInputError(f"{origin}: field '{'num_attention_heads' if hidden else 'hidden_size'}' must be "
                                "a positive integer")
    if cfg.get("head_dim") is None and hidden % heads:
        raise PlannerInputError(f"{origin}: field 'num_attention_heads' ({heads}) must divide hidden_size "
                                f"({hidden}) when there is no head_dim")
    layers = need("num_hidden_layers")
    spec = dict(
        name=name or cfg.get("_name_or_path", "") or arch, hidden_size=hidden, num_layers=layers,
        num_heads=heads, num_kv_heads=opt("num_key_value_heads", heads),
        head_dim=opt("head_dim", hidden // heads),  # Qwen3: explicit head_dim != hidden/heads
        intermediate_size=opt("intermediate_size", 0), vocab_size=need("vocab_size"),
        tied_embeddings=_hf_bool(cfg, "tie_word_embeddings", False, origin),
        max_context=opt("max_position_embeddings", 131072),
        attention_bias=_hf_bool(cfg, "attention_bias", arch.startswith("Qwen2"), origin),
        qk_norm=arch.startswith("Qwen3"), source=origin, mtp_layers=opt("num_nextn_predict_layers", 0),
    )
    if cfg.get("quantization_config") is not None and not isinstance(cfg["quantization_config"], dict):
        raise PlannerInputError(f"{origin}: field 'quantization_config' must be a mapping, "
                                f"got {shown_value(cfg['quantization_config'])}")
    if kind == "qwen_moe":
        sparse_step = opt("decoder_sparse_step", 1)
        if sparse_step != 1 or cfg.get("mlp_only_layers"):
            raise PlannerInputError(f"{origin}: field 'decoder_sparse_step'/'mlp_only_layers': only all-MoE "
                                    f"Qwen MoE layouts are supported")
        spec.update(num_experts=need("num_experts"), experts_per_tok=need("num_experts_per_tok"),
                    expert_intermediate_size=need("moe_intermediate_size"), intermediate_size=0,
                    num_shared_experts=1 if opt("shared_expert_intermediate_size", 0) else 0,
                    shared_expert_intermediate_size=opt("shared_expert_intermediate_size", 0))
    elif kind == "mixtral":  # each expert is intermediate_size wide; no dense MLP layers
        spec.update(num_experts=need("num_local_experts"), experts_per_tok=need("num_experts_per_tok"),
                    expert_intermediate_size=need("intermediate_size"), intermediate_size=0)
    elif kind == "deepseek":  # num_key_value_heads is meaningless for MLA: the cache is the latent
        spec.update(num_kv_heads=heads, num_experts=need("n_routed_experts"),
                    experts_per_tok=need("num_experts_per_tok"),
                    expert_intermediate_size=need("moe_intermediate_size"),
                    num_shared_experts=opt("n_shared_experts", 0),
                    first_k_dense=opt("first_k_dense_replace", 0), q_lora_rank=opt("q_lora_rank", 0),
                    kv_lora_rank=need("kv_lora_rank"), qk_nope_head_dim=need("qk_nope_head_dim"),
                    qk_rope_head_dim=need("qk_rope_head_dim"), v_head_dim=need("v_head_dim"),
                    head_dim=need("qk_nope_head_dim") + need("qk_rope_head_dim"), qk_norm=False)
    elif kind == "gpt_oss":  # intermediate_size is the expert width; alternating sliding/full layers
        types = cfg.get("layer_types") or []
        if not isinstance(types, list):
            raise PlannerInputError(f"{origin}: field 'layer_types' must be a list, got {shown_value(types)}")
        quant = (cfg.get("quantization_config") or {}).get("quant_method", "")
        spec.update(num_experts=need("num_local_experts"),
                    experts_per_tok=opt("num_experts_per_tok", 0) or need("experts_per_token"),
                    expert_intermediate_size=need("intermediate_size"), intermediate_size=0,
                    sliding_window=opt("sliding_window", 0),
                    num_sliding_layers=sum(t == "sliding_attention" for t in types),
                    expert_weight_dtype="fp4" if quant == "mxfp4" else "")
    elif opt("sliding_window", 0) and cfg.get("use_sliding_window", True) and arch == "MistralForCausalLM":
        spec.update(sliding_window=opt("sliding_window", 0), num_sliding_layers=layers)
    q = cfg.get("quantization_config") or {}
    if q.get("quant_method") == "fp8":
        spec["weight_dtype"] = "fp8"
        if q.get("weight_block_size") is not None:
            spec["weight_block_size"] = block_size(q["weight_block_size"],
                                                    f"{origin}: field 'quantization_config.weight_block_size'")
    return ModelSpec(**spec).validate(origin)




def _hf_int(cfg: dict, key: str, origin: str) -> int:
    v = cfg[key]
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_SIZE:
        raise PlannerInputError(f"{origin}: field '{key}' must be an integer in 0..{MAX_SIZE}, got {shown_value(v)}")
    return v


def _hf_bool(cfg: dict, key: str, default: bool, origin: str) -> bool:
    v = cfg.get(key, default)
    if not isinstance(v, bool):
        raise PlannerInputError(f"{origin}: field '{key}' must be true or false, got {shown_value(v)}")
    return v
