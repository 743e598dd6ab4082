"""servplan hardware database: accelerators and serving-engine profiles.

One YAML per accelerator in ``hwdb/gpus/`` and the engine profiles in ``hwdb/engines.yaml``; every
number cites its source in the file's ``sources:`` map. This package imports nothing of ours (no
planner / solvers / cli) and only PyYAML from outside.

Modules, one job each: ``schema`` (the dataclasses and dtypes), ``validate`` (YAML mapping -> dataclass,
errors naming file and field), ``loader`` (files, caching, lookup), ``names`` (aliases and name
resolution), ``errors``, ``safe_load`` (reading untrusted files) and ``units`` (unit names and parsing).
"""

from .errors import HwdbError, UnknownNameError
from .loader import bundled_dir, list_gpus, load_engine, load_engines, load_gpu, load_gpu_file
from .schema import DTYPES, Efficiency, EngineProfile, FrozenDict, GpuSpec, HardwareDefault, normalize_dtype
from .validate import with_efficiency

__all__ = [
    "DTYPES",
    "Efficiency",
    "EngineProfile",
    "FrozenDict",
    "GpuSpec",
    "HardwareDefault",
    "HwdbError",
    "UnknownNameError",
    "bundled_dir",
    "list_gpus",
    "load_engine",
    "load_engines",
    "load_gpu",
    "load_gpu_file",
    "normalize_dtype",
    "with_efficiency",
]
