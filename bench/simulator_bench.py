"""Throughput of the simulator to a file: events per second for JSON lines and CSV (target >= 200k/s).

    .venv/bin/python bench/simulator_bench.py [--count 1000000] [--seed 0] [--dir /tmp]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from simulator.encode import encode_events, write_file
from simulator.generator import generate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dir", default=tempfile.gettempdir())
    a = p.parse_args()
    out = {}
    t = time.perf_counter()
    cols = generate(a.count, a.seed)
    out["generate_ev_s"] = round(a.count / (time.perf_counter() - t))
    t = time.perf_counter()
    encode_events(cols, with_label=False)
    out["encode_ev_s"] = round(a.count / (time.perf_counter() - t))
    for ext in ("jsonl", "csv"):
        path = os.path.join(a.dir, f"simulator_bench.{ext}")
        s = write_file(path, a.count, a.seed)
        out[f"file_{ext}_ev_s"] = round(s["rate"])
        out[f"file_{ext}_mb"] = round(os.path.getsize(path) / 1e6, 1)
        os.remove(path)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
