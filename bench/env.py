"""What every bench run needs: a broker, fresh topics, a model, pre-filled input, worker subprocesses.

Kept apart from the measurements so each measurement reads as: pre-fill, run, read the child's JSON line.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from breeboost.settings import Settings, env_var

__all__ = ["BenchEnv", "CACHE_DIR", "child_env", "encode_payloads", "prefill", "run_child"]

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = Path(__file__).resolve().parent / ".cache"   # git-ignored (bench/.gitignore)


def child_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process use exactly ``settings``."""
    env = dict(os.environ)
    for name, value in settings.as_safe_dict().items():
        if name != "sasl_password":
            env[env_var(name)] = str(value)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("BREEBOOST_LOG_LEVEL", "WARNING")
    return env


def encode_payloads(n: int, seed: int, batch: int = 1) -> tuple[list[bytes], list[bytes]]:
    """``n`` simulated transactions as (keys, values): one JSON object per message, or JSON arrays of
    ``batch`` objects (the ``simulate --batch`` envelope) keyed by their first transaction's account."""
    from simulator import encode_events, generate

    cols = generate(n, seed=seed)
    payloads = encode_events(cols, with_label=False, seed=seed)
    keys = [k.encode() for k in cols["nameOrig"].tolist()]
    if batch <= 1:
        return keys, payloads
    return ([keys[i] for i in range(0, n, batch)],
            [b"[" + b",".join(payloads[i:i + batch]) + b"]" for i in range(0, n, batch)])


async def _produce(bootstrap: str, topic: str, keys: list[bytes], values: list[bytes], partitions: int,
                   compression: str | None = None, parts: list[int] | None = None) -> None:
    """Produce ``values`` round-robin over ``partitions``, or each on its partition of ``parts``."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024,
                                max_request_size=16 * 1024 * 1024, acks=1, compression_type=compression)
    await producer.start()
    try:
        pending = []
        for i, (k, v) in enumerate(zip(keys, values)):
            p = i % partitions if parts is None else parts[i]
            pending.append(await producer.send(topic, v, key=k, partition=p))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()


def ratio(a: Any, b: Any, nd: int = 3) -> float | None:
    """``a / b`` rounded to ``nd`` decimals; ``None`` when either is missing or zero."""
    return round(a / b, nd) if a and b else None


def prefill(settings: Settings, keys: list[bytes], values: list[bytes], partitions: int | None = None,
            compression: str | None = None) -> float:
    """Publish the messages to ``settings.topic_transactions`` (round-robin over partitions, record batches
    compressed with ``compression``: gzip, snappy, lz4, zstd or None); seconds taken."""
    t = time.perf_counter()
    asyncio.run(_produce(settings.bootstrap, settings.topic_transactions, keys, values,
                         partitions or settings.partitions, compression))
    return time.perf_counter() - t


def run_child(settings: Settings, args: list[str], timeout_s: float = 300.0, log_path: Path | None = None
              ) -> dict[str, Any]:
    """Run ``python -m bench.runner ARGS`` and return the last JSON line it prints."""
    cmd = [sys.executable, "-m", "bench.runner", *args]
    err = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=child_env(settings), cwd=str(ROOT))
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            raise RuntimeError(f"bench child {args[:2]} timed out after {timeout_s}s")
    finally:
        if log_path:
            err.close()
    # Faust's worker writes terminal control codes (spinner) before our line: take from the first '{"'
    lines = [ln[ln.find('{"'):] for ln in out.decode(errors="replace").splitlines() if '{"' in ln]
    if not lines:
        raise RuntimeError(f"bench child {args[:2]} printed no result (exit {proc.returncode}); see {log_path}")
    return json.loads(lines[-1])


class BenchEnv:
    """An embedded broker and a counter for fresh topic names (one set of topics per measurement)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._n = 0
        self.broker: Any = None

    def __enter__(self) -> "BenchEnv":
        from breeboost.broker import EmbeddedBroker

        base = Settings.from_env({})
        self.broker = EmbeddedBroker(port=0, settings=base, create_topics=False).start()
        self.bootstrap = self.broker.bootstrap
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.broker is not None:
            self.broker.stop()

    def settings(self, partitions: int = 1, **kw: Any) -> Settings:
        """Settings with a fresh group and fresh topics (created, ``partitions`` each)."""
        from breeboost.kafka_io import ensure_topics, wait_for_topics

        self._n += 1
        tag = f"b{os.getpid()}x{self._n}"
        topics = {f"topic_{t}": f"{tag}.{t}" for t in ("transactions", "scores", "dlq", "labels", "drift_partials",
                                                        "drift_stats", "incidents")}
        s = Settings.from_env({}, bootstrap=self.bootstrap, partitions=partitions, group_id=tag,
                              metrics_port=0, **topics, **kw)
        ensure_topics(s)
        wait_for_topics(s, s.topics())
        return s


def train_or_load_model(rows: int = 150_000, seed: int = 101) -> str:
    """A PaySim model trained once on ``rows`` simulated rows and cached under bench/.cache/."""
    d = CACHE_DIR / f"model-{rows}-{seed}"
    if not (d / "metadata.json").exists():
        from models.spec import load_spec
        from models.training import TrainConfig, train_model
        from simulator import generate

        d.parent.mkdir(parents=True, exist_ok=True)
        train_model(generate(rows, seed=seed), load_spec(), TrainConfig(seed=seed)).save(d)
    return str(d)


def percentile(values: Any, q: float) -> float | None:
    a = np.asarray(values, dtype=np.float64)
    return float(np.percentile(a, q)) if a.size else None
