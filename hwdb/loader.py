"""Loading: find the YAMLs (bundled and the user's), read them safely, cache them, and look entries up.

* Only the standard library and PyYAML (imported lazily by hwdb.safe_load) so ``import hwdb`` stays cheap.
* Every parsed file is cached (``functools.lru_cache``) keyed on its path *and* its mtime/size, so an
  edited file is re-read while an unchanged one is parsed once per process.
* Files in later ``extra_dirs`` override bundled ones with the same name (hypothetical parts, what-ifs).
"""

from __future__ import annotations

import functools
import os
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from .errors import HwdbError
from .names import ENGINE_ALIASES, gpu_names, resolve
from .safe_load import UnsafeInputError, load_document
from .schema import EngineProfile, FrozenDict, GpuSpec
from .validate import parse_engines, parse_gpu

ExtraDirs = Iterable[str | os.PathLike[str]] | str | os.PathLike[str] | None
Fingerprint = tuple[tuple[str, int, int], ...]  # (path, mtime_ns, size) of each YAML of one directory


def bundled_dir() -> Path:
    """Directory holding the bundled YAMLs (found through importlib.resources)."""
    return Path(str(resources.files(__package__ or "hwdb")))


def _display(path: Path) -> str:
    """Bundled files are shown as ``hwdb/gpus/x.yaml``; user files as given."""
    try:
        rel = path.resolve().relative_to(bundled_dir().resolve())
    except (ValueError, OSError):
        return str(path)
    return "hwdb/" + rel.as_posix()


def _stat_key(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


def _read_mapping(path: Path, shown: str) -> dict[str, Any]:
    """A YAML mapping, read with the limits of hwdb.safe_load (size, encoding, no aliases, nesting)."""
    try:
        data = load_document(path, shown)
    except UnsafeInputError as exc:
        raise HwdbError(shown, None, str(exc).removeprefix(f"{shown}: ")) from None
    if not isinstance(data, dict):
        raise HwdbError(shown, None, "top level must be a mapping of field: value")
    return data


@functools.lru_cache(maxsize=512)
def _gpu_cached(path: str, _stat: tuple[int, int]) -> GpuSpec:
    p = Path(path)
    shown = _display(p)
    return parse_gpu(_read_mapping(p, shown), shown, p.stem, str(p))


def load_gpu_file(path: str | os.PathLike[str]) -> GpuSpec:
    """Parse and validate one GPU YAML (bundled or user-written)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise HwdbError(str(path), None, "file not found")
    p = p.resolve()
    return _gpu_cached(str(p), _stat_key(p))


def _dir_fingerprint(directory: Path) -> Fingerprint:
    """``(path, mtime_ns, size)`` of every YAML in ``directory`` (or of ``directory`` if a file)."""
    if directory.is_file():
        real = os.path.realpath(directory)
        st = os.stat(real)
        return ((real, st.st_mtime_ns, st.st_size),)
    if not directory.is_dir():
        raise HwdbError(str(directory), None, "not a directory of YAML files")
    real_dir = os.path.realpath(directory)
    out = []
    with os.scandir(real_dir) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.endswith((".yaml", ".yml")):
                continue
            if not entry.is_file():
                continue
            st = entry.stat()
            out.append((os.path.join(real_dir, entry.name), st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


def _as_dirs(extra_dirs: ExtraDirs) -> tuple[Path, ...]:
    if extra_dirs is None:
        return ()
    if isinstance(extra_dirs, (str, os.PathLike)):
        extra_dirs = (extra_dirs,)
    return tuple(Path(d).expanduser() for d in extra_dirs)


@functools.lru_cache(maxsize=64)
def _gpu_index_cached(fingerprints: tuple[Fingerprint, ...]) -> tuple[FrozenDict[str, GpuSpec], FrozenDict[str, str]]:
    by_name: dict[str, GpuSpec] = {}
    for files in fingerprints:  # later directories override earlier ones by name
        for path, mtime, size in files:
            spec = _gpu_cached(path, (mtime, size))
            by_name[spec.name] = spec
    return FrozenDict(by_name), FrozenDict(gpu_names(by_name.values(), _display))


def _gpu_index(extra_dirs: ExtraDirs = ()) -> tuple[FrozenDict[str, GpuSpec], FrozenDict[str, str]]:
    """(name -> spec, lookup key -> name); files in later ``extra_dirs`` override earlier ones by name."""
    dirs = (bundled_dir() / "gpus", *_as_dirs(extra_dirs))
    return _gpu_index_cached(tuple(_dir_fingerprint(d) for d in dirs))


def list_gpus(extra_dirs: ExtraDirs = ()) -> list[GpuSpec]:
    """Every GPU (bundled plus ``extra_dirs``), sorted by name."""
    return sorted(_gpu_index(extra_dirs)[0].values(), key=lambda s: s.name)


def load_gpu(name_or_alias: str, extra_dirs: ExtraDirs = ()) -> GpuSpec:
    """Look a GPU up by name or alias (case-insensitive, '-' == '_'), or by YAML path."""
    text = str(name_or_alias)
    if text.endswith((".yaml", ".yml")) and Path(text).expanduser().is_file():
        return load_gpu_file(text)
    index, names = _gpu_index(extra_dirs)
    return index[resolve("GPU", text, names)]


@functools.lru_cache(maxsize=16)
def _engines_cached(path: str, _stat: tuple[int, int]) -> FrozenDict[str, EngineProfile]:
    p = Path(path)
    shown = _display(p)
    return parse_engines(_read_mapping(p, shown), shown, str(p))


def load_engines() -> dict[str, EngineProfile]:
    """All engine profiles from the bundled ``engines.yaml`` (name -> profile)."""
    p = (bundled_dir() / "engines.yaml").resolve()
    return dict(_engines_cached(str(p), _stat_key(p)))


def load_engine(name: str) -> EngineProfile:
    """An engine profile by name (case-insensitive; ``TensorRT-LLM`` / ``trt-llm`` mean trtllm)."""
    engines = load_engines()
    names = {n: n for n in engines}
    names.update({k: v for k, v in ENGINE_ALIASES.items() if v in engines})
    return engines[resolve("engine", name, names)]
