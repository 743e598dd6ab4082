"""Model specs: published parameter counts, KV sizes, and HF config.json ingestion."""

import dataclasses
import json

import pytest

import hwdb
from planner.core.errors import PlannerInputError
from planner.core.model import bundled_models, load_model

FIXTURES = "tests/fixtures/hf_configs"

# (name, total params, active params) as published by the model authors
PUBLISHED = [
    ("llama-3.1-8b", 8.03e9, 8.03e9),
    ("llama-3.1-70b", 70.6e9, 70.6e9),
    ("llama-3.1-405b", 405.9e9, 405.9e9),
    ("mixtral-8x7b", 46.7e9, 12.9e9),
    ("deepseek-v3", 671e9, 37e9),
    ("qwen3-235b-a22b", 235e9, 22e9),
]


@pytest.mark.parametrize("name,total,active", PUBLISHED)
def test_parameter_counts_match_published_within_one_percent(name, total, active):
    m = load_model(name)
    assert m.total_params == pytest.approx(total, rel=0.01)
    # DeepSeek's "37 B activated" and Qwen's "22 B" are rounded; allow their rounding on the active count
    assert m.active_params == pytest.approx(active, rel=0.02 if name in ("deepseek-v3", "qwen3-235b-a22b") else 0.01)


@pytest.mark.parametrize("name,kv_bytes", [
    ("llama-3.1-8b", 131072), ("llama-3.1-70b", 327680), ("llama-3.1-405b", 516096), ("qwen3-32b", 262144),
    ("qwen3-235b-a22b", 192512), ("mixtral-8x7b", 131072), ("gpt-oss-120b", 36864), ("deepseek-v3", 70272),
])
def test_kv_bytes_per_token_in_bf16(name, kv_bytes):
    assert load_model(name).kv_bytes_per_token("bf16") == kv_bytes


def test_mla_kv_is_the_latent_not_the_heads():
    ds = load_model("deepseek-v3")
    assert ds.kv_elements_per_token_per_layer() == 512 + 64
    assert ds.kv_bytes_per_token("fp8") == 35136


def test_qwen3_uses_explicit_head_dim_not_hidden_over_heads():
    assert load_model("qwen3-32b").head_dim == 128  # 5120 / 64 would be 80


def test_gpt_oss_sliding_layers_cap_their_kv_at_the_window():
    m = load_model("gpt-oss-120b")
    per_layer = 2 * 8 * 64 * 2
    assert m.kv_bytes_per_sequence(1000) == per_layer * (18 * 1000 + 18 * 128)


def test_gpt_oss_experts_stay_fp4_and_dense_parts_bf16():
    m = load_model("gpt-oss-120b")
    experts = m.routed_expert_params_total
    assert m.weight_bytes() == pytest.approx((m.total_params - experts) * 2 + experts * (0.5 + 1 / 32))
    assert 60e9 < m.weight_bytes() < 70e9


@pytest.mark.parametrize("native,served,stored", [("fp4", "bf16", "fp4"), ("fp4", "int4", "int4"),
                                                   ("bf16", "fp8", "fp8"), ("int4", "fp4", "int4"),
                                                   ("fp8", "int8", "int8"), ("", "fp8", "fp8")])
def test_experts_keep_a_narrower_native_dtype_and_take_the_served_one_otherwise(native, served, stored):
    m = dataclasses.replace(load_model("mixtral-8x7b"), expert_weight_dtype=native)
    assert m.expert_dtype(served) == stored


def test_memory_and_step_time_store_the_experts_in_the_same_dtype():
    """bf16 experts served in fp8: the memory model and the expert GEMMs both use fp8 (the step model used to
    keep the checkpoint's bf16 unless the served dtype was 4-bit)."""
    from planner.core.parallel import ParallelConfig
    from planner.perf.memory import weight_bytes_per_gpu
    from planner.perf.step import StepShape, step_time

    plain = load_model("mixtral-8x7b")
    native_bf16 = dataclasses.replace(plain, expert_weight_dtype="bf16")
    gpu, par, engine = hwdb.load_gpu("h100_sxm"), ParallelConfig(2), hwdb.load_engine("vllm")

    def expert_bytes(m):
        ops = step_time(m, gpu, par, StepShape(64, 2048), engine=engine, dtype="fp8").stage_ops
        return next(o.bytes for o in ops if o.name == "moe_experts")

    assert weight_bytes_per_gpu(native_bf16, par, "fp8") == weight_bytes_per_gpu(plain, par, "fp8")
    assert expert_bytes(native_bf16) == expert_bytes(plain)


def test_fp8_weights_are_half_of_bf16():
    m = load_model("llama-3.1-70b")
    assert m.weight_bytes("fp8") == pytest.approx(m.weight_bytes("bf16") / 2)


@pytest.mark.parametrize("name", ["llama-3.1-8b", "qwen3-32b", "deepseek-v3", "gpt-oss-120b", "mixtral-8x7b",
                                  "qwen3-235b-a22b"])
def test_hf_config_json_loads_the_same_as_the_bundled_model(name):
    from_file = load_model(f"{FIXTURES}/{name}.json")
    bundled = bundled_models()[name]
    assert from_file.total_params == bundled.total_params
    assert from_file.kv_bytes_per_token() == bundled.kv_bytes_per_token()


def test_bundled_model_found_by_hf_id():
    assert load_model("meta-llama/Llama-3.1-70B-Instruct").name == "llama-3.1-70b"


def test_unknown_model_name_suggests_close_matches():
    with pytest.raises(PlannerInputError, match="did you mean: llama-3.1-70b"):
        load_model("llama-3.1-70")


def test_unsupported_architecture_names_the_field(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"architectures": ["MambaForCausalLM"], "hidden_size": 1}))
    with pytest.raises(PlannerInputError, match="architectures.*unsupported architecture 'MambaForCausalLM'"):
        load_model(str(p))


def test_malformed_json_names_the_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(PlannerInputError, match="bad.json: malformed JSON"):
        load_model(str(p))


def test_negative_field_in_our_yaml_names_the_field(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text("name: x\nhidden_size: 4096\nnum_layers: -2\nnum_heads: 32\nnum_kv_heads: 8\nhead_dim: 128\n"
                 "intermediate_size: 14336\nvocab_size: 32000\n")
    with pytest.raises(PlannerInputError, match="m.yaml: field 'num_layers' must be a positive integer"):
        load_model(str(p))


def test_missing_field_in_hf_config_names_it(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "num_attention_heads": 32}))
    with pytest.raises(PlannerInputError, match="missing field 'num_hidden_layers'"):
        load_model(str(p))


def test_missing_model_file_is_a_clear_error():
    with pytest.raises(PlannerInputError, match="does-not-exist.yaml: model file not found"):
        load_model("does-not-exist.yaml")
