"""Wall time and peak memory of `planner optimize` on the bundled examples (each in a fresh process).

    python benchmarks/optimize_speed.py

Targets (issue): Llama-3.1-70B on 8×H100 ≤ 1 s end to end on a 2-core machine; the 1,024-GPU four-type
example ≤ 10 s with optimality gap ≤ 1 %; peak memory ≤ 150 MB.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import json, resource, sys, time
t0 = time.perf_counter()
from planner.search.optimize import optimize
from planner.search.scenario import build_request
req = build_request(sys.argv[1])
res = optimize(req)
wall = time.perf_counter() - t0
print(json.dumps({"wall_s": wall, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "status": res.solver["status"], "gap": res.solver["gap"], "solver_s": res.solver["time_s"],
                  "types": res.solver["candidates"], "evaluated": res.solver["evaluated"]}))
"""


def main() -> None:
    print("| example | wall s (import+solve) | solver s | instance types (evaluated) | status | gap | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, cwd=ROOT,
                             check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {path.stem} | {r['wall_s']:.2f} | {r['solver_s']:.2f} | {r['types']} ({r['evaluated']}) | "
              f"{r['status']} | {r['gap']:.2%} | {r['rss_mb']:.0f} |")
    cli = subprocess.run(["bash", "-c", "time -p planner --help > /dev/null"], capture_output=True, text=True, cwd=ROOT)
    real = next((line.split()[1] for line in cli.stderr.splitlines() if line.startswith("real")), "?")
    print(f"\n`planner --help`: {real} s")


if __name__ == "__main__":
    main()
