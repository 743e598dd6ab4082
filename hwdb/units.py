"""Units: how servplan names quantities, and the parsers for the ones a user types with a unit.

Naming
------
* Bandwidth. In hwdb YAML keys, in the dataclass fields built from them and in the JSON output, ``_gbps``
  means gigaBYTES per second (``mem_bw_gbps``, ``scaleout_bw_gbps``, ``link_gbps``); those keys are a
  published contract (JSON output, goldens, user YAMLs) and keep the suffix. Names of values parsed from
  what a user types say which they hold: ``_gbytes_per_s`` or ``_gbits_per_s``. What a user types always
  spells its unit, and case matters: ``100Gbps`` / ``100Gb/s`` / ``100Gbit/s`` are gigaBITS per second
  (÷ 8 = 12.5 GB/s, how NICs and links are sold), ``25GBps`` / ``25GB/s`` gigaBYTES per second; a
  spelling outside the table (``100gbps``, ``100GBit``) is refused rather than guessed.
* Sizes: ``_gb`` is 10^9 bytes (datasheets), ``_gib`` 2^30 bytes (what engines such as vLLM compare);
  the tool reads sizes only from hwdb and model files, never from a typed string.
* Durations: ``_s``, ``_ms``, ``_us``; a typed duration needs its unit (is ``ttft=2`` 2 s or 2 ms?).

The parsers raise :class:`UnitError` (a ``ValueError``); callers turn it into their own one-line message
naming the flag or field, and apply their own bounds.
"""

from __future__ import annotations

import re

BITS_PER_BYTE = 8
BYTES_PER_GB = 1e9
BYTES_PER_GIB = 2**30

# one unit of each spelling in gigabytes per second: b = bits, B = bytes
_GBYTES_PER_S: dict[str, float] = {
    "Mbps": 1e-3 / BITS_PER_BYTE, "Mb/s": 1e-3 / BITS_PER_BYTE,
    "Gbps": 1 / BITS_PER_BYTE, "Gb/s": 1 / BITS_PER_BYTE, "Gbit/s": 1 / BITS_PER_BYTE,
    "Tbps": 1e3 / BITS_PER_BYTE, "Tb/s": 1e3 / BITS_PER_BYTE,
    "MBps": 1e-3, "MB/s": 1e-3, "GBps": 1.0, "GB/s": 1.0, "TBps": 1e3, "TB/s": 1e3,
}
# one unit of each spelling in seconds
_SECONDS: dict[str, float] = {"ms": 1e-3, "s": 1.0, "us": 1e-6, "m": 60.0, "min": 60.0}


class UnitError(ValueError):
    """A quantity that does not parse: no number, or a unit outside the table."""


class MissingUnitError(UnitError):
    """A bare number where the unit decides the meaning."""


def parse_bandwidth_gbytes_per_s(text: object) -> float:
    """'100Gbps' -> 12.5, '25GBps' / '25GB/s' -> 25.0, '1.6Tbps' -> 200.0 (gigabytes per second)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z/]+)\s*", str(text))
    if not m or m.group(2) not in _GBYTES_PER_S:
        raise UnitError(f"expected a bandwidth like 100Gbps (bits) or 12.5GBps (bytes), got {text!r}")
    return float(m.group(1)) * _GBYTES_PER_S[m.group(2)]


def parse_duration_s(text: object) -> float:
    """'2s' -> 2.0, '50ms' -> 0.05, '3us', '5min' / '5m' (seconds); a bare number raises MissingUnitError."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*([a-z]*)\s*", str(text))
    if not m or m.group(2) not in ("", *_SECONDS):
        raise UnitError(f"expected a duration like 2s or 50ms, got {text!r}")
    if not m.group(2):
        raise MissingUnitError(f"{text!r} needs a unit ({', '.join(_SECONDS)})")
    return float(m.group(1)) * _SECONDS[m.group(2)]
