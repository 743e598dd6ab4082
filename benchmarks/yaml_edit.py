"""Rewrite fitted numbers inside the hwdb YAMLs in place, keeping their comments and sources."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def set_efficiency(gpu_name: str, values: dict, note: str) -> None:
    """values: {"memory": 0.9, "gemm.fp8": 0.6, ...} inside the `efficiency:` block; note replaces fitted_on."""
    path = ROOT / "hwdb" / "gpus" / f"{gpu_name}.yaml"
    text = path.read_text()
    for name, v in values.items():
        if name.startswith("gemm."):
            dtype = name.split(".")[1]
            if re.search(rf"\n  gemm: \{{[^}}]*\b{dtype}: ", text):
                text = re.sub(rf"(\n  gemm: \{{[^}}]*\b{dtype}: )[0-9.]+", rf"\g<1>{v}", text, count=1)
            else:
                text = re.sub(r"(\n  gemm: \{)", rf"\g<1>{dtype}: {v}, ", text, count=1)
        else:
            text = re.sub(rf"(\n  {name}: )[0-9.]+", rf"\g<1>{v}", text, count=1)
    text = re.sub(r"(\n  fitted_on: )(>-\n(?:    .*\n)+|.*\n)", lambda m: f"{m.group(1)}>-\n    {note}\n", text, count=1)
    path.write_text(text)


def set_engine(engine: str, values: dict, note: str) -> None:
    """Rewrite numbers of one engine's block in hwdb/engines.yaml (adding missing keys after step_overhead_ms)."""
    path = ROOT / "hwdb" / "engines.yaml"
    text = path.read_text()
    start = text.index(f"\n  {engine}:\n")
    nxt = re.search(r"\n  [a-z_]+:\n", text[start + 1:])
    end = start + 1 + nxt.start() if nxt else len(text)
    block = text[start:end]
    for name, v in values.items():
        if re.search(rf"\n    {name}: ", block):
            block = re.sub(rf"(\n    {name}: )[0-9.]+", rf"\g<1>{v}", block, count=1)
        else:
            block = re.sub(r"(\n    step_overhead_ms: [0-9.]+[^\n]*)", rf"\g<1>\n    {name}: {v}", block, count=1)
    block = re.sub(r'(\n    fitted_on: )(>-\n(?:      .*\n)+|.*\n)', lambda m: f"{m.group(1)}>-\n      {note}\n", block,
                   count=1)
    path.write_text(text[:start] + block + text[end:])
