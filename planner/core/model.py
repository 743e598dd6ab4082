"""ModelSpec: one normalised description of a transformer LLM (dense, GQA, MoE, MLA, sliding window).

Loads our own small YAML schema (bundled models live in planner/models/) or a HuggingFace config.json as-is.
Parameter-count convention: total and active counts include the input embedding and the LM head (counted
twice when untied), attention, MLP/experts, routers and norms. FLOP counts come from the per-op shapes
(planner/perf/step.py), not from these totals.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from planner.core.errors import PlannerInputError
from planner.core.inputs import read_document, shown_value

# Bytes per weight element, with block-scale overhead: MXFP4 = 4 bit + one e8m0 scale per 32 elements;
# int4 (AWQ/GPTQ) = 4 bit + one fp16 scale per 128-element group.
DTYPE_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0,
               "fp4": 0.5 + 1 / 32, "int4": 0.5 + 2 / 128}


def dtype_bytes(dtype: str, field: str = "dtype") -> float:
    if dtype not in DTYPE_BYTES:
        raise PlannerInputError(f"{field}: unknown dtype '{dtype}' (choose from {', '.join(DTYPE_BYTES)})")
    return DTYPE_BYTES[dtype]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int  # width of a dense MLP layer (0 if every layer is MoE)
    vocab_size: int
    hf_id: str = ""
    source: str = ""
    v_head_dim: int = 0  # 0 -> head_dim
    tied_embeddings: bool = False
    max_context: int = 131072
    attention_bias: bool = False
    qk_norm: bool = False
    # MoE
    num_experts: int = 0
    experts_per_tok: int = 0
    expert_intermediate_size: int = 0
    num_shared_experts: int = 0
    shared_expert_intermediate_size: int = 0  # per shared expert; 0 -> expert_intermediate_size
    first_k_dense: int = 0  # the first k layers use the dense MLP
    # MLA (DeepSeek)
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    mtp_layers: int = 0  # multi-token-prediction heads (HF num_nextn_predict_layers; DeepSeek-V3: 1)
    # sliding-window attention layers (gpt-oss alternates sliding / full)
    sliding_window: int = 0
    num_sliding_layers: int = 0
    # dtype the checkpoint ships in; experts may differ (gpt-oss: MXFP4 experts)
    weight_dtype: str = "bf16"
    expert_weight_dtype: str = ""
    # block-scaled checkpoint: quantization_config.weight_block_size [block_n, block_k] (None: per-tensor / bf16)
    weight_block_size: tuple[int, int] | None = None

    # ---- structure -------------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def num_moe_layers(self) -> int:
        return self.num_layers - self.first_k_dense if self.is_moe else 0

    @property
    def num_dense_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    @property
    def num_full_attention_layers(self) -> int:
        return self.num_layers - self.num_sliding_layers

    @property
    def v_dim(self) -> int:
        return self.v_head_dim or self.head_dim

    @property
    def qk_dim(self) -> int:
        """Query/key width per head (MLA: nope + rope parts)."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim if self.is_mla else self.head_dim

    # ---- parameter counts (per layer) ----------------------------------------------------------------
    @property
    def attention_params_per_layer(self) -> int:
        h, nh = self.hidden_size, self.num_heads
        if self.is_mla:
            q = (h * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * nh * self.qk_dim
                 if self.q_lora_rank else h * nh * self.qk_dim)
            kv = (h * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank
                  + self.kv_lora_rank * nh * (self.qk_nope_head_dim + self.v_dim))
            return q + kv + nh * self.v_dim * h
        q = h * nh * self.head_dim
        kv = 2 * h * self.num_kv_heads * self.head_dim
        o = nh * self.head_dim * h
        bias = (nh + 2 * self.num_kv_heads) * self.head_dim + h if self.attention_bias else 0
        qk_norm = 2 * self.head_dim if self.qk_norm else 0
        return q + kv + o + bias + qk_norm

    @property
    def dense_mlp_params(self) -> int:
        return 3 * self.hidden_size * self.intermediate_size  # gated MLP: gate, up, down

    @property
    def expert_params(self) -> int:
        """One routed expert (gated MLP)."""
        return 3 * self.hidden_size * self.expert_intermediate_size

    @property
    def shared_expert_params(self) -> int:
        width = self.shared_expert_intermediate_size or self.expert_intermediate_size
        return self.num_shared_experts * 3 * self.hidden_size * width

    @property
    def router_params(self) -> int:
        return self.hidden_size * self.num_experts

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)

    @property
    def norm_params(self) -> int:
        return self.num_layers * 2 * self.hidden_size + self.hidden_size

    def _params_with_experts(self, routed_experts: int) -> int:
        """All parameters, counting `routed_experts` routed experts per MoE layer."""
        moe = self.num_moe_layers * (routed_experts * self.expert_params + self.shared_expert_params
                                     + self.router_params)
        return (self.embedding_params + self.norm_params + self.num_layers * self.attention_params_per_layer
                + self.num_dense_layers * self.dense_mlp_params + moe)

    @property
    def total_params(self) -> int:
        return self._params_with_experts(self.num_experts)

    @property
    def active_params(self) -> int:
        """Parameters one token uses: its experts_per_tok routed experts per MoE layer."""
        return self._params_with_experts(self.experts_per_tok)

    @property
    def routed_expert_params_total(self) -> int:
        return self.num_moe_layers * self.num_experts * self.expert_params

    # ---- memory ---------------------------------------------------------------------------------------
    def expert_dtype(self, dtype: str) -> str:
        """Dtype the routed experts are stored and multiplied in when the model is served in `dtype`: a
        checkpoint's narrower native expert dtype stays (gpt-oss's MXFP4 experts are never inflated to `dtype`),
        otherwise `dtype` (equal widths: `dtype`, what the engine was asked for)."""
        native = self.expert_weight_dtype
        return native if native and dtype_bytes(native) < dtype_bytes(dtype) else dtype

    def weight_bytes(self, dtype: str | None = None) -> float:
        """Bytes of all weights when served in `dtype` (default: as shipped)."""
        dense_dtype = dtype or self.weight_dtype
        expert_dtype = self.expert_dtype(dtype) if dtype else self.expert_weight_dtype or self.weight_dtype
        experts = self.routed_expert_params_total
        return (self.total_params - experts) * dtype_bytes(dense_dtype) + experts * dtype_bytes(expert_dtype)

    def kv_elements_per_token_per_layer(self) -> int:
        """K and V elements one token adds to one layer's cache (MLA: the shared latent + rope key)."""
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    def kv_bytes_per_token(self, kv_dtype: str = "bf16") -> float:
        """Steady-state KV bytes per token over the full-attention layers (sliding layers are bounded). A model
        whose every layer slides (Mistral-7B-v0.1) counts them all: its cache holds at most a window per
        sequence, so a token of cache is one token on every layer."""
        layers = self.num_full_attention_layers or self.num_layers
        return self.kv_elements_per_token_per_layer() * layers * dtype_bytes(kv_dtype)

    def kv_bytes_per_sequence(self, context_tokens: float, kv_dtype: str = "bf16") -> float:
        """KV bytes of one sequence of `context_tokens` tokens, sliding layers capped at the window."""
        per_layer_token = self.kv_elements_per_token_per_layer() * dtype_bytes(kv_dtype)
        sliding = self.num_sliding_layers * min(context_tokens, self.sliding_window)
        return per_layer_token * (self.num_full_attention_layers * context_tokens + sliding)

    def validate(self, origin: str) -> "ModelSpec":
        positive = {"hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim", "vocab_size", "max_context"}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            lo = 1 if f.name in positive else 0
            if f.type == "int" and (not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= MAX_SIZE):
                what = "a positive integer" if lo else "a non-negative integer"
                raise PlannerInputError(f"{origin}: field '{f.name}' must be {what} (at most {MAX_SIZE}), "
                                        f"got {shown_value(v)}")
            if f.type in ("str", "bool") and type(v).__name__ != f.type:
                raise PlannerInputError(f"{origin}: field '{f.name}' must be a {f.type}, got {shown_value(v)}")
        if self.num_heads % self.num_kv_heads:
            raise PlannerInputError(f"{origin}: field 'num_kv_heads' ({self.num_kv_heads}) must divide "
                                    f"num_heads ({self.num_heads})")
        if self.is_moe and not (0 < self.experts_per_tok <= self.num_experts and self.expert_intermediate_size):
            raise PlannerInputError(f"{origin}: field 'experts_per_tok' must be in 1..num_experts and "
                                    f"'expert_intermediate_size' set for a MoE model")
        if self.num_dense_layers and not self.intermediate_size:
            raise PlannerInputError(f"{origin}: field 'intermediate_size' must be set for dense layers")
        if self.num_sliding_layers > self.num_layers or (self.num_sliding_layers and not self.sliding_window):
            raise PlannerInputError(f"{origin}: field 'num_sliding_layers' needs 'sliding_window' and at most "
                                    f"num_layers layers")
        for name in ("weight_dtype", "expert_weight_dtype"):
            if getattr(self, name):
                dtype_bytes(getattr(self, name), f"{origin}: field '{name}'")
        return self


# ---- loading ------------------------------------------------------------------------------------------

MAX_SIZE = 2**24  # bound on every integer field (widths, layers, experts, vocab, context: 16M tokens)

_FIELDS = {f.name for f in dataclasses.fields(ModelSpec)}


def block_size(value, field: str) -> tuple[int, int]:
    """[block_n, block_k] of a block-scaled checkpoint (DeepSeek-V3, Qwen3-*-FP8: [128, 128])."""
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise PlannerInputError(f"{field} must be two positive integers [block_n, block_k], got {shown_value(value)}")
    return int(value[0]), int(value[1])


def model_from_dict(data: dict, origin: str) -> ModelSpec:
    """Our YAML schema: keys are ModelSpec field names."""
    if not isinstance(data, dict):
        raise PlannerInputError(f"{origin}: expected a mapping of model fields")
    unknown = sorted(map(str, set(data) - _FIELDS))
    if unknown:
        raise PlannerInputError(f"{origin}: unknown field '{unknown[0]}'")
    for f in ("name", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim", "vocab_size"):
        if f not in data:
            raise PlannerInputError(f"{origin}: missing field '{f}'")
    if data.get("weight_block_size") is not None:
        data = {**data, "weight_block_size": block_size(data["weight_block_size"],
                                                         f"{origin}: field 'weight_block_size'")}
    types = {f.name: f.type for f in dataclasses.fields(ModelSpec)}
    for k, v in data.items():
        want_int = types[k] == "int"
        if want_int and (not isinstance(v, int) or isinstance(v, bool)):
            raise PlannerInputError(f"{origin}: field '{k}' must be an integer, got {shown_value(v)}")
    return ModelSpec(**data).validate(origin)


def _read_structured(path: Path) -> dict:
    return read_document(path)


def load_model_file(path: Path, inside_scenario: bool = False) -> ModelSpec:
    from planner.core.hf_config import model_from_hf_config  # it builds ModelSpecs: imported here, not above

    data = _read_structured(path)
    if not isinstance(data, dict):
        raise PlannerInputError(f"{path}: expected a mapping at the top level")
    if "architectures" in data or path.name == "config.json":
        return model_from_hf_config(data, str(path), name=path.parent.name if path.name == "config.json"
                                    else path.stem)
    if "model" in data and isinstance(data["model"], (str, dict)):  # a scenario file: model + workload + fleet
        m = data["model"]
        if isinstance(m, str) and inside_scenario:
            raise PlannerInputError(f"{path}: field 'model': names another scenario file; give a model here")
        return load_model(m, inside_scenario=True) if isinstance(m, str) else model_from_dict(m, f"{path}: model")
    return model_from_dict(data, str(path))


@lru_cache(maxsize=None)
def bundled_models() -> dict[str, ModelSpec]:
    """Bundled model configs (planner/models/*.yaml), by name."""
    import yaml

    from planner.core.hf_config import model_from_hf_config

    out = {}
    for entry in sorted(resources.files("planner.models").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            data = yaml.safe_load(entry.read_text())
            origin = f"planner/models/{entry.name}"
            spec = model_from_hf_config(data["hf_config"], origin, data["name"]) if "hf_config" in data \
                else model_from_dict(data, origin)
            out[spec.name] = dataclasses.replace(spec, hf_id=data.get("hf_id", spec.hf_id),
                                                 source=data.get("source", spec.source))
    return out


def load_model(name_or_path: str, inside_scenario: bool = False) -> ModelSpec:
    """A path to our YAML / a HF config.json / a scenario YAML, or the name (or HF id) of a bundled model.
    `inside_scenario`: named by a scenario's `model:`, so it may not be a scenario itself (no cycles)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        if not path.is_file():
            raise PlannerInputError(f"{name_or_path}: model file not found")
        return load_model_file(path, inside_scenario)
    models = bundled_models()
    key = name_or_path.lower()
    for spec in models.values():
        if key in (spec.name, spec.hf_id.lower(), spec.hf_id.lower().split("/")[-1]):
            return spec
    close = difflib.get_close_matches(key, list(models), n=3, cutoff=0.5)
    hint = f"; did you mean: {', '.join(close)}?" if close else f" (bundled: {', '.join(models)})"
    raise PlannerInputError(f"unknown model {shown_value(name_or_path)}{hint}")
