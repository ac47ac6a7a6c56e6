"""Where a worker's CPU goes on one transaction per message: ``python -m bench.profile_run [--events N]``.

Pre-fills N messages on a fresh topic of an embedded broker, starts the real pipeline child
(``bench.runner pipeline``), attaches ``py-spy record`` once it holds its partitions (all threads, active
samples only: start-up is not in the profile), and sorts every
sample into the step of the data path it is in, by the innermost frame of a known module
(:data:`STEPS`, first match from the innermost frame outwards). Prints one JSON line: each step's share
of the samples and its µs a message (the child's CPU seconds spread by those shares).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.env import CACHE_DIR, BenchEnv, encode_payloads, prefill, train_or_load_model
from bench.kafka_runs import _Worker

__all__ = ["STEPS", "classify", "main"]

#: (step, path fragments of its frames), checked from the innermost frame out
STEPS = (
    ("score: xgboost", ("xgboost/",)),
    ("windows and drift sketches", ("streams/windowing.py", "streams/windows.py", "streams/buffered.py",
                                    "detectors/", "models/explain.py")),
    ("decode", ("streams/decode.py", "streams/columns.py")),
    ("validate", ("models/validation.py", "models/expr.py", "models/spec.py")),
    ("encode scores", ("streams/encode.py",)),
    ("de-duplication (recent ids)", ("streams/recent.py",)),
    ("scoring stage, rest", ("streams/scoring.py", "models/scorer.py", "streams/metrics.py", "prometheus_client/")),
    ("publish (aiokafka producer)", ("aiokafka/producer/", "streams/delivery.py")),
    ("fetch: aiokafka records", ("aiokafka/consumer/", "aiokafka/record/", "aiokafka/conn.py", "aiokafka/client.py")),
    ("hand-over (streams.fastpath)", ("streams/fastpath.py",)),
    ("Faust and mode (agents, commits, services)", ("faust/", "mode/")),
    ("asyncio event loops", ("asyncio/",)),
)


def classify(stack: str) -> str:
    """The step of one collapsed stack (frames separated by ``;``, outermost first)."""
    for frame in reversed(stack.split(";")):
        for step, parts in STEPS:
            if any(p in frame for p in parts):
                return step
    return "other"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.profile_run", description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--rate", type=int, default=200, help="py-spy samples a second")
    p.add_argument("--path", choices=("batches", "events"), default="batches")
    a = p.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    model = train_or_load_model()
    out = Path(tempfile.mkdtemp(prefix="breeboost-profile-")) / "stacks.txt"
    with BenchEnv(CACHE_DIR / "profile") as env:
        s = env.settings()
        prefill(s, *encode_payloads(a.events, seed=11))
        worker = _Worker(s, ["pipeline", "--events", str(a.events), "--model", model, "--path", a.path],
                         CACHE_DIR / "profile")
        try:
            worker.wait_ready(lambda n: n >= 1)   # started and assigned: sample from here (not the imports)
            spying = subprocess.Popen([spy, "record", "--format", "raw", "--threads", "--rate", str(a.rate),
                                       "--nonblocking", "-o", str(out), "--pid", str(worker.proc.pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            result = worker.result(timeout_s=600)
            spying.wait(60)
        finally:
            worker.kill()
    counts: Counter = Counter()
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if n.isdigit():
            counts[classify(stack)] += int(n)
    total = sum(counts.values()) or 1
    us = (result.get("cpu_seconds") or 0) / max(1, result.get("events") or 1) * 1e6
    print(json.dumps({"events": result.get("events"), "rate": result.get("rate"), "cpu_rate": result.get("cpu_rate"),
                      "cpu_us_per_message": round(us, 2), "samples": total,
                      "steps": {k: {"share": round(v / total, 3), "us_per_message": round(us * v / total, 2)}
                                for k, v in counts.most_common()}}))


if __name__ == "__main__":
    main()
