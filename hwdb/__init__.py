"""servplan hardware database: accelerators, systems (nodes) and serving-engine profiles.

One YAML per accelerator in ``hwdb/gpus/``, per system in ``hwdb/systems/`` and the engine
profiles in ``hwdb/engines.yaml``; every number cites its source in the file's ``sources:`` map.
This package imports nothing of ours (no planner / solvers / cli) and only PyYAML from outside.
"""

from .loader import (
    DTYPES,
    Efficiency,
    EngineProfile,
    FrozenDict,
    GpuSpec,
    HardwareDefault,
    HwdbError,
    SystemSpec,
    UnknownNameError,
    bundled_dir,
    list_gpus,
    list_systems,
    load_engine,
    load_engines,
    load_gpu,
    load_gpu_file,
    load_system,
    normalize_dtype,
    with_efficiency,
)

__all__ = [
    "DTYPES",
    "Efficiency",
    "EngineProfile",
    "FrozenDict",
    "GpuSpec",
    "HardwareDefault",
    "HwdbError",
    "SystemSpec",
    "UnknownNameError",
    "bundled_dir",
    "list_gpus",
    "list_systems",
    "load_engine",
    "load_engines",
    "load_gpu",
    "load_gpu_file",
    "load_system",
    "normalize_dtype",
    "with_efficiency",
]
