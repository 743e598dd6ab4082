"""Specification of the hardware database (hwdb): bundled data, lookup, validation, packaging."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import pytest
import yaml

import hwdb
from hwdb import HwdbError, UnknownNameError
from hwdb.units import parse_bandwidth_gbytes_per_s

REPO = Path(__file__).resolve().parents[1]
REQUIRED_GPUS = {
    "h100_sxm", "h100_pcie", "h200_sxm", "b200_sxm", "gb200", "a100_80g", "a100_40g", "l40s",
    "l4", "a10g", "mi300x", "mi325x", "h20", "gaudi3", "tpu_v5e",
}
NUMBER_FIELDS = (
    "memory_gb", "mem_bw_gbps", "peak_tflops", "scaleup_bw_gbps", "scaleup_domain_gpus",
    "scaleout_bw_gbps", "cost_usd_per_h", "tdp_w", "idle_w",
)


def bundled_h100() -> dict:
    return yaml.safe_load((hwdb.bundled_dir() / "gpus" / "h100_sxm.yaml").read_text())


def write_gpu(directory: Path, data: dict, stem: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem or data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def hypothetical(name: str = "x200", **changes) -> dict:
    data = bundled_h100()
    data.update({"name": name, "display_name": f"Hypothetical {name}", "aliases": [], **changes})
    return data


# --------------------------------------------------------------------------------------------
# bundled data


def test_every_bundled_gpu_loads_and_cites_a_source_for_every_number():
    gpus = hwdb.list_gpus()
    assert REQUIRED_GPUS <= {g.name for g in gpus}
    for g in gpus:
        assert g.name == Path(g.path).stem
        for field in NUMBER_FIELDS:
            assert g.sources.get(field, "").strip(), f"{g.name}: no source for {field}"
        assert g.efficiency.fitted_on.strip()
        assert "bf16" in g.peak_tflops and "bf16" in g.efficiency.gemm
        assert set(g.efficiency.gemm) <= set(g.peak_tflops)
        assert 0 < g.idle_w <= g.tdp_w
        assert re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", g.cost_date)


def test_list_gpus_is_sorted_by_name():
    names = [g.name for g in hwdb.list_gpus()]
    assert names == sorted(names)


def test_peak_tflops_are_dense_not_sparse():
    # Sparse figures are 2x dense; a dense table never has fp8 above 2x bf16, and the Hopper
    # bf16 datasheet headline (1,979 TF "with sparsity") must not leak in.
    for g in hwdb.list_gpus():
        p = g.peak_tflops
        for low, high in (("bf16", "fp8"), ("fp8", "fp4"), ("bf16", "int8")):
            if low in p and high in p:
                assert p[high] <= 2.05 * p[low], (g.name, low, high)  # L40S: 733 vs 2x362.05
    assert hwdb.load_gpu("h200_sxm").peak_tflops["bf16"] == 989
    assert hwdb.load_gpu("b200_sxm").peak_tflops["fp4"] == 9000


def test_h100_sxm_datasheet_numbers_are_pinned():
    g = hwdb.load_gpu("h100_sxm")
    assert g.memory_gb == 80
    assert g.mem_bw_gbps == 3350
    assert g.peak_tflops["bf16"] == 989
    assert g.peak_tflops["fp8"] == 1979
    assert g.peak_flops("bf16") == pytest.approx(989e12)
    assert g.scaleup_bw_gbps == 450 and g.scaleup_domain_gpus == 8
    assert g.scaleout_bw_gbps == 50
    assert g.tdp_w == 700
    assert g.vendor == "nvidia" and g.generation == "hopper"


@pytest.mark.parametrize("name, domain_gpus", [
    ("h100_sxm", 8), ("h200_sxm", 8), ("b200_sxm", 8), ("a100_80g", 8),  # one HGX / DGX board (NVSwitch)
    ("gb200", 72),  # one NVL72 rack: 72 GPUs on NVLink switches across 18 trays of 4
    ("mi300x", 8), ("gaudi3", 8),  # one 8-OAM baseboard
    ("tpu_v5e", 256),  # one v5e pod on ICI
])
def test_scale_up_domain_is_the_platform_the_gpu_ships_in(name, domain_gpus):
    assert hwdb.load_gpu(name).scaleup_domain_gpus == domain_gpus


@pytest.mark.parametrize("name, nic", [
    ("h100_sxm", "400Gbps"), ("h200_sxm", "400Gbps"), ("b200_sxm", "400Gbps"), ("gb200", "400Gbps"),
    ("mi300x", "400Gbps"),
    ("a100_80g", "200Gbps"),  # one ConnectX-6 HDR per GPU (DGX A100)
    ("gaudi3", "600Gbps"),  # 3 of the 24 x 200 GbE on-chip ports
    ("tpu_v5e", "25Gbps"),  # 2 x 100 Gb/s per 8-chip host
])
def test_scale_out_bandwidth_is_the_nic_per_gpu_in_gigabytes_per_second(name, nic):
    assert hwdb.load_gpu(name).scaleout_bw_gbps == parse_bandwidth_gbytes_per_s(nic)


def test_engine_profiles_carry_the_engines_real_batching_defaults():
    engines = hwdb.load_engines()
    assert {"vllm", "sglang", "trtllm"} <= set(engines)
    for e in engines.values():
        assert e.fitted_on.strip()
        assert e.sources["max_num_seqs"] and e.sources["default_chunk_tokens"]
        assert e.step_overhead_ms >= 0 and e.per_seq_overhead_us >= 0
    vllm = hwdb.load_engine("vllm")
    assert (vllm.max_num_seqs, vllm.default_chunk_tokens) == (256, 2048)
    assert vllm.batch_defaults(hwdb.load_gpu("h100")) == (1024, 8192)
    assert vllm.batch_defaults(hwdb.load_gpu("a100_80g")) == (256, 2048)  # vLLM excludes A100
    sglang = hwdb.load_engine("sglang")
    assert sglang.batch_defaults(hwdb.load_gpu("h100"))[1] == 8192
    assert sglang.batch_defaults(hwdb.load_gpu("b200"))[1] == 16384
    assert sglang.batch_defaults(hwdb.load_gpu("l4"))[1] == 2048
    assert hwdb.load_engine("TensorRT-LLM").batch_defaults() == (2048, 8192)
    on_h100 = vllm.for_gpu(hwdb.load_gpu("h100"))
    assert (on_h100.max_num_seqs, on_h100.default_chunk_tokens) == (1024, 8192)
    assert on_h100.gpu_memory_utilization == 0.9 and on_h100.hardware_defaults == ()
    assert sglang.for_gpu(hwdb.load_gpu("l40s")).default_chunk_tokens == 4096
    assert 0.8 < sglang.for_gpu(hwdb.load_gpu("h100")).gpu_memory_utilization < 0.9
    with pytest.raises(UnknownNameError, match="vllm"):
        hwdb.load_engine("vlm")


# --------------------------------------------------------------------------------------------
# lookup


@pytest.mark.parametrize(
    "query, name",
    [("h100", "h100_sxm"), ("H100", "h100_sxm"), ("H100-SXM", "h100_sxm"), ("h100-sxm5", "h100_sxm"),
     ("h200", "h200_sxm"), ("B200", "b200_sxm"), ("MI300", "mi300x"), ("v5e", "tpu_v5e"),
     ("A100", "a100_80g"), ("gaudi-3", "gaudi3")],
)
def test_aliases_and_names_resolve_case_insensitively(query, name):
    assert hwdb.load_gpu(query).name == name


def test_load_gpu_accepts_a_yaml_path():
    path = hwdb.bundled_dir() / "gpus" / "l4.yaml"
    assert hwdb.load_gpu(str(path)).name == "l4"


def test_unknown_gpu_name_suggests_close_matches():
    with pytest.raises(UnknownNameError) as info:
        hwdb.load_gpu("h100x")
    message = str(info.value)
    assert message.startswith("unknown GPU 'h100x'; did you mean:")
    assert "h100_sxm" in message and "h100_pcie" in message
    assert isinstance(info.value, HwdbError) and isinstance(info.value, ValueError)


def test_unknown_gpu_without_close_match_lists_known_names():
    with pytest.raises(UnknownNameError, match="known: .*h100_sxm"):
        hwdb.load_gpu("zzzzzzzz")


def test_peak_flops_falls_back_when_a_part_lacks_the_dtype():
    a100, h100, b200 = hwdb.load_gpu("a100_80g"), hwdb.load_gpu("h100_sxm"), hwdb.load_gpu("b200")
    assert a100.peak_flops("fp8") == a100.peak_flops("bf16")          # no FP8 on Ampere
    assert not a100.supports("fp8") and h100.supports("fp8")
    assert h100.peak_flops("fp4") == h100.peak_flops("fp8")           # fp4 -> fp8 on Hopper
    assert h100.peak_flops("int4") == h100.peak_flops("fp8")          # int4 like fp4
    assert a100.peak_flops("fp4") == a100.peak_flops("bf16")          # fp4 -> fp8 -> bf16
    assert b200.peak_flops("nvfp4") == pytest.approx(9000e12)          # spelling aliases
    assert h100.peak_flops("bfloat16") == h100.peak_flops("bf16")
    assert h100.native_dtype("fp4") == "fp8"
    assert h100.gemm_efficiency("int8") == h100.efficiency.gemm["fp8"]
    assert a100.gemm_efficiency("fp8") == a100.efficiency.gemm["bf16"]
    with pytest.raises(ValueError, match="unknown dtype"):
        h100.peak_flops("fp3")


# --------------------------------------------------------------------------------------------
# validation: each problem names the file and the field


def test_malformed_yaml_raises_hwdb_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\npeak_tflops: {bf16: 1\n  fp8: [\n")
    with pytest.raises(HwdbError) as info:
        hwdb.load_gpu_file(path)
    assert str(path) in str(info.value)
    assert "malformed YAML" in str(info.value)


def test_top_level_that_is_not_a_mapping_is_rejected(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(HwdbError, match="list.yaml: top level must be a mapping"):
        hwdb.load_gpu_file(path)


@pytest.mark.parametrize(
    "field", ["memory_gb", "mem_bw_gbps", "peak_tflops", "tdp_w", "cost_date", "efficiency", "sources"]
)
def test_missing_field_raises_hwdb_error_naming_file_and_field(tmp_path, field):
    data = hypothetical()
    del data[field]
    path = write_gpu(tmp_path, data)
    with pytest.raises(HwdbError) as info:
        hwdb.load_gpu_file(path)
    assert str(info.value).startswith(f"{path}: field '{field}':")
    assert info.value.field == field and info.value.path == str(path)


def test_missing_efficiency_entry_names_the_nested_field(tmp_path):
    data = hypothetical()
    del data["efficiency"]["memory"]
    with pytest.raises(HwdbError, match=r"field 'efficiency\.memory': missing"):
        hwdb.load_gpu_file(write_gpu(tmp_path, data))


def test_negative_value_raises_hwdb_error_naming_file_and_field(tmp_path):
    path = write_gpu(tmp_path, hypothetical(mem_bw_gbps=-1))
    with pytest.raises(HwdbError) as info:
        hwdb.load_gpu_file(path)
    assert str(info.value) == f"{path}: field 'mem_bw_gbps': must be a positive number, got -1"


@pytest.mark.parametrize("value", ["fast", True, None, [1]])
def test_non_numeric_value_is_rejected(tmp_path, value):
    path = write_gpu(tmp_path, hypothetical(memory_gb=value))
    with pytest.raises(HwdbError, match=r"field 'memory_gb'"):
        hwdb.load_gpu_file(path)


def test_negative_peak_entry_names_the_dtype(tmp_path):
    data = hypothetical()
    data["peak_tflops"]["fp8"] = -5
    with pytest.raises(HwdbError, match=r"field 'peak_tflops\.fp8': must be a positive number"):
        hwdb.load_gpu_file(write_gpu(tmp_path, data))


def test_number_without_a_source_entry_is_rejected(tmp_path):
    data = hypothetical()
    del data["sources"]["idle_w"]
    path = write_gpu(tmp_path, data)
    with pytest.raises(HwdbError) as info:
        hwdb.load_gpu_file(path)
    assert str(info.value).startswith(f"{path}: field 'idle_w':")
    assert "sources" in str(info.value)


def test_empty_source_text_is_rejected(tmp_path):
    data = hypothetical()
    data["sources"]["memory_gb"] = "  "
    with pytest.raises(HwdbError, match=r"field 'sources\.memory_gb'"):
        hwdb.load_gpu_file(write_gpu(tmp_path, data))


def test_unknown_dtype_key_is_rejected(tmp_path):
    data = hypothetical()
    data["peak_tflops"]["fp3"] = 100
    with pytest.raises(HwdbError, match=r"field 'peak_tflops\.fp3': unknown dtype"):
        hwdb.load_gpu_file(write_gpu(tmp_path, data))


def test_bf16_peak_is_required_as_the_fallback_anchor(tmp_path):
    data = hypothetical()
    data["peak_tflops"] = {"fp8": 100}
    data["efficiency"]["gemm"] = {"fp8": 0.5}
    with pytest.raises(HwdbError, match=r"field 'peak_tflops\.bf16': missing"):
        hwdb.load_gpu_file(write_gpu(tmp_path, data))


@pytest.mark.parametrize(
    "key, value, field",
    [("memory", 1.2, "efficiency.memory"), ("scaleup", 0, "efficiency.scaleup"),
     ("attention", -0.1, "efficiency.attention")],
)
def test_efficiency_outside_unit_interval_is_rejected(tmp_path, key, value, field):
    data = hypothetical()
    data["efficiency"][key] = value
    with pytest.raises(HwdbError, match=rf"field '{re.escape(field)}': must be in \(0, 1\]"):
        hwdb.load_gpu_file(write_gpu(tmp_path, data))


def test_gemm_efficiency_for_a_dtype_the_part_lacks_is_rejected(tmp_path):
    data = hypothetical()
    data["efficiency"]["gemm"]["fp4"] = 0.5     # h100 has no fp4 peak
    with pytest.raises(HwdbError, match=r"field 'efficiency\.gemm\.fp4': dtype not present"):
        hwdb.load_gpu_file(write_gpu(tmp_path, data))


def test_name_must_equal_the_file_stem(tmp_path):
    path = write_gpu(tmp_path, hypothetical("x200"), stem="x300")
    with pytest.raises(HwdbError, match=r"x300\.yaml: field 'name': must equal the file stem 'x300'"):
        hwdb.load_gpu_file(path)


def test_unknown_field_is_rejected_with_a_suggestion(tmp_path):
    data = hypothetical()
    data["mem_bw_gpbs"] = data.pop("mem_bw_gbps")
    with pytest.raises(HwdbError, match=r"field 'mem_bw_gpbs': unknown field \(did you mean 'mem_bw_gbps'\?\)"):
        hwdb.load_gpu_file(write_gpu(tmp_path, data))


def test_idle_power_above_tdp_is_rejected(tmp_path):
    with pytest.raises(HwdbError, match=r"field 'idle_w': must not exceed tdp_w"):
        hwdb.load_gpu_file(write_gpu(tmp_path, hypothetical(idle_w=900)))


def test_scaleup_domain_must_be_an_integer(tmp_path):
    with pytest.raises(HwdbError, match=r"field 'scaleup_domain_gpus': must be an integer"):
        hwdb.load_gpu_file(write_gpu(tmp_path, hypothetical(scaleup_domain_gpus=8.5)))


def test_missing_file_is_reported():
    with pytest.raises(HwdbError, match="nope.yaml: file not found"):
        hwdb.load_gpu_file("/nonexistent/nope.yaml")


# --------------------------------------------------------------------------------------------
# user YAMLs (hypothetical parts), overrides, caching


def test_extra_dirs_add_hypothetical_parts(tmp_path):
    write_gpu(tmp_path, hypothetical("x200", memory_gb=288, aliases=["x2"]))
    names = {g.name for g in hwdb.list_gpus(extra_dirs=[tmp_path])}
    assert "x200" in names and REQUIRED_GPUS <= names
    assert hwdb.load_gpu("X2", extra_dirs=[tmp_path]).memory_gb == 288
    assert hwdb.load_gpu("x200", extra_dirs=str(tmp_path)).name == "x200"  # a single dir is fine
    with pytest.raises(UnknownNameError):
        hwdb.load_gpu("x200")  # not visible without the extra dir


def test_extra_dirs_override_bundled_parts_by_name(tmp_path):
    data = bundled_h100()
    data["cost_usd_per_h"] = 1.23
    data["efficiency"]["memory"] = 0.9
    write_gpu(tmp_path, data)
    g = hwdb.load_gpu("h100", extra_dirs=[tmp_path])
    assert g.cost_usd_per_h == 1.23 and g.efficiency.memory == 0.9
    assert g.path == str((tmp_path / "h100_sxm.yaml").resolve())
    assert hwdb.load_gpu("h100").cost_usd_per_h != 1.23  # bundled entry untouched


def test_alias_clash_between_files_is_reported(tmp_path):
    write_gpu(tmp_path, hypothetical("x200", aliases=["h100"]))
    with pytest.raises(HwdbError, match=r"x200\.yaml: field 'aliases': alias 'h100' is already used"):
        hwdb.list_gpus(extra_dirs=[tmp_path])


def test_extra_dir_that_does_not_exist_is_reported(tmp_path):
    with pytest.raises(HwdbError, match="not a directory"):
        hwdb.list_gpus(extra_dirs=[tmp_path / "missing"])


def test_an_edited_file_is_read_again(tmp_path):
    path = write_gpu(tmp_path, hypothetical("x200", memory_gb=100))
    assert hwdb.load_gpu_file(path).memory_gb == 100
    data = hypothetical("x200", memory_gb=200, display_name="a longer display name to change size")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert hwdb.load_gpu_file(path).memory_gb == 200


def test_parsed_files_are_cached():
    assert hwdb.load_gpu("h100") is hwdb.load_gpu("h100_sxm")


# --------------------------------------------------------------------------------------------
# calibration helper and immutability


def test_with_efficiency_returns_a_validated_copy():
    g = hwdb.load_gpu("h100")
    tuned = hwdb.with_efficiency(g, memory=0.9, gemm={"fp8": 0.5}, fitted_on="test fit")
    assert tuned.efficiency.memory == 0.9
    assert tuned.efficiency.gemm == {"bf16": g.efficiency.gemm["bf16"], "fp8": 0.5}
    assert tuned.efficiency.fitted_on == "test fit"
    assert tuned.peak_tflops == g.peak_tflops and tuned.name == g.name
    assert hwdb.load_gpu("h100").efficiency.memory == g.efficiency.memory  # cache untouched
    with pytest.raises(HwdbError, match=r"field 'efficiency\.memory': must be in \(0, 1\]"):
        hwdb.with_efficiency(g, memory=1.5)
    with pytest.raises(HwdbError, match=r"efficiency\.bogus"):
        hwdb.with_efficiency(g, bogus=1)


def test_specs_are_read_only_hashable_and_serialisable():
    g = hwdb.load_gpu("h100")
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.memory_gb = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        g.peak_tflops["bf16"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        g.efficiency.gemm.update(bf16=1)
    assert len({g, hwdb.load_gpu("h100_sxm"), hwdb.load_gpu("l4")}) == 2
    as_dict = dataclasses.asdict(g)
    assert json.loads(json.dumps(as_dict))["peak_tflops"]["bf16"] == 989
    clone = copy.deepcopy(g)
    assert clone == g and clone.peak_tflops == g.peak_tflops


# --------------------------------------------------------------------------------------------
# packaging and import hygiene


def test_importlib_resources_finds_the_yaml_package_data():
    root = resources.files("hwdb")
    assert root.joinpath("gpus", "h100_sxm.yaml").is_file()
    assert root.joinpath("engines.yaml").is_file()
    gpu_files = {p.name for p in root.joinpath("gpus").iterdir() if p.name.endswith(".yaml")}
    assert {f"{n}.yaml" for n in REQUIRED_GPUS} <= gpu_files
    # the wheel ships what pyproject declares as package data: every YAML must match a glob
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["hwdb"]
    package_dir = REPO / "hwdb"
    shipped = {p for g in globs for p in package_dir.glob(g)}
    on_disk = set(package_dir.rglob("*.yaml")) | set(package_dir.rglob("*.yml"))
    assert on_disk and on_disk <= shipped


def test_hwdb_imports_neither_the_cli_stack_nor_our_other_packages():
    code = (
        "import sys, hwdb; hwdb.list_gpus(); hwdb.load_engines();"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'planner', 'solvers', 'cli', 'typer', 'rich', 'numpy', 'scipy'}); print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_public_api_is_the_package_namespace():
    assert set(hwdb.__all__) == {
        "DTYPES", "Efficiency", "EngineProfile", "FrozenDict", "GpuSpec", "HardwareDefault", "HwdbError",
        "UnknownNameError", "bundled_dir", "list_gpus", "load_engine", "load_engines", "load_gpu",
        "load_gpu_file", "normalize_dtype", "with_efficiency"}
    assert all(hasattr(hwdb, name) for name in hwdb.__all__)


def test_every_hwdb_module_is_at_most_400_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in (REPO / "hwdb").glob("*.py")}
    assert sizes and max(sizes.values()) <= 400, sizes
