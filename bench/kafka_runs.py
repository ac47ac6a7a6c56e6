"""Measurements against the embedded broker: ceilings, pipeline throughput, envelopes, latency, scale-out.

Every run gets fresh topics and a fresh consumer group; throughput runs pre-fill the input topic first
and time from the end of the first batch to the last event (group join and start-up excluded).
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.env import ROOT, BenchEnv, child_env, encode_payloads, percentile, prefill, ratio, run_child

__all__ = ["Runs"]


def _median_run(results: list[dict[str, Any]], key: str = "rate") -> dict[str, Any]:
    ok = [r for r in results if r.get(key)]
    ok.sort(key=lambda r: r[key])
    out = dict(ok[len(ok) // 2]) if ok else {}
    out["runs"] = [r.get(key) for r in results]
    out["cpu_runs"] = [r.get("cpu_rate") for r in results]
    out.pop("samples", None)
    return out


class Runs:
    def __init__(self, env: BenchEnv, model_dir: str, workdir: Path, log: Any) -> None:
        self.env = env
        self.model_dir = model_dir
        self.workdir = workdir
        self.log = log
        self._payloads: dict[tuple[int, int], tuple[list[bytes], list[bytes]]] = {}

    def payloads(self, n: int, batch: int = 1) -> tuple[list[bytes], list[bytes]]:
        if (n, batch) not in self._payloads:
            self._payloads[(n, batch)] = encode_payloads(n, seed=11, batch=batch)
        return self._payloads[(n, batch)]

    def _child(self, mode: str, n_events: int, settings: Any, faust: dict | None = None,
               extra: list[str] | None = None) -> dict[str, Any]:
        args = [mode, "--events", str(n_events), "--faust", json.dumps(faust or {})]
        if mode == "pipeline":
            args += ["--model", self.model_dir]
        return run_child(settings, args + (extra or []), log_path=self.workdir / "children.log")

    # -- 1. ceilings and 2. the pipeline, interleaved -----------------------------------------------
    def raw(self, n: int, repeats: int = 3) -> dict[str, Any]:
        s = self.env.settings()
        prefill(s, *self.payloads(n))
        return _median_run([self._child("raw", n, s) for _ in range(repeats)])

    def consume(self, mode: str, n: int, batch: int = 1, faust: dict | None = None, extra: list[str] | None = None,
                **settings_kw: Any) -> dict:
        """One pre-filled run of ``mode`` over ``n`` transactions (``batch`` per message)."""
        s = self.env.settings(**settings_kw)
        keys, values = self.payloads(n, batch)
        prefill(s, keys, values)
        r = self._child(mode, n if mode == "pipeline" else len(values), s, faust, extra)
        if mode == "pipeline":
            r["messages_per_s"] = round(r["rate"] / batch, 1) if r.get("rate") else None
        self.log(f"  {mode} batch={batch} {json.dumps(faust or {})} {' '.join(extra or [])}: {r.get('rate')} ev/s "
                 f"(cpu-time rate {r.get('cpu_rate')})")
        return r

    def floor_and_pipeline(self, n: int, repeats: int) -> tuple[dict, dict]:
        """The do-nothing agent and the real pipeline, alternated so both see the same machine load."""
        noop, pipe = [], []
        for _ in range(repeats):
            noop.append(self.consume("noop", n))
            pipe.append(self.consume("pipeline", n))
        return _median_run(noop), _median_run(pipe)

    def peers_and_pipeline(self, n_client: int, n: int, repeats: int, quix: str | None, n_faust: int | None = None,
                           extra: bool = False) -> dict[str, dict]:
        """The per-message pipeline and its peers, alternated (one run of each per round, so all see the
        same machine load): the clients' loops over ``n_client`` messages, the do-nothing Faust agent over
        ``n_faust``, the Quix Streams decode-and-count app (``quix``: its interpreter, ``None`` to skip)
        and the pipeline over ``n``. ``extra``: also Quix counting bytes and the pipeline on Faust's
        per-event path (the before of the fetch batches). Returns name -> median run (``runs``: each
        round's rate)."""
        from bench.peers import run_quix

        rounds: dict[str, list] = {}
        for _ in range(repeats):
            rounds.setdefault("raw", []).append(self.consume("raw", n_client))
            rounds.setdefault("confluent", []).append(self.consume("confluent", n_client))
            rounds.setdefault("noop", []).append(self.consume("noop", n_faust or n))
            for decode in (("json", "bytes") if extra else ("json",)) if quix else ():
                s = self.env.settings()
                prefill(s, *self.payloads(n))
                r = run_quix(quix, s, n, decode, self.workdir / "children.log")
                self.log(f"  quix {decode}: {r.get('rate')} ev/s (cpu-time rate {r.get('cpu_rate')})")
                rounds.setdefault(f"quix_{decode}", []).append(r)
            rounds.setdefault("pipeline", []).append(self.consume("pipeline", n))
            if extra:
                rounds.setdefault("pipeline_events", []).append(
                    self.consume("pipeline", n_faust or n, extra=["--path", "events"]))
        return {name: _median_run(rs) for name, rs in rounds.items()}

    # -- 3. Faust settings that move the floor --------------------------------------------------------
    def floor_variants(self, n: int, variants: dict[str, dict]) -> dict[str, Any]:
        return {name: _median_run([self.consume("noop", n, faust=f)]) for name, f in variants.items()}

    # -- 7. latency at a fixed rate ------------------------------------------------------------------
    def latency(self, rate: float, seconds: float, **settings_kw: Any) -> dict[str, Any]:
        s = self.env.settings(**settings_kw)
        n = int(rate * seconds)
        keys, values = self.payloads(n)
        import orjson

        worker = _Worker(s, ["pipeline", "--events", str(n), "--model", self.model_dir], self.workdir)
        try:
            worker.wait_ready(lambda a: a >= 1)
            sent_at = asyncio.run(_paced_produce(s.bootstrap, s.topic_transactions, keys, values, rate))
            worker.result(timeout_s=seconds + 120)
        finally:
            worker.kill()
        scores = asyncio.run(_read_all(s.bootstrap, s.topic_scores, n))
        lat = []
        for ts_ms, value in scores:
            doc = orjson.loads(value)
            t0 = sent_at.get(doc["transaction_id"])
            if t0 is not None:
                lat.append(ts_ms / 1000.0 - t0)
        lat_ms = np.asarray(lat) * 1000.0
        out = {"rate": rate, "events": n, "scored": len(lat), "batch_wait_s": s.batch_wait_s,
               "p50_ms": round(percentile(lat_ms, 50), 2), "p99_ms": round(percentile(lat_ms, 99), 2),
               "max_ms": round(float(lat_ms.max()), 2)}
        self.log(f"  latency at {rate:.0f} ev/s, batch_wait_s={s.batch_wait_s}: p50 {out['p50_ms']} ms, "
                 f"p99 {out['p99_ms']} ms")
        return out

    # -- 8. scale-out --------------------------------------------------------------------------------
    def scaleout(self, n: int, batch: int, workers: int, partitions: int = 4, compression: str | None = None
                 ) -> dict[str, Any]:
        """``workers`` pipeline processes in one group on ``partitions`` partitions over a pre-filled topic
        (as every throughput run here: the producer and the broker's ingest are not competing with the
        workers for the 2 cores), started together so they join in one generation (the broker holds a
        join for half the session timeout); throughput = events after each worker's first batch / (last
        end - first start). ``rebalanced`` says whether a worker held more than its share at some point
        (it started alone and gave partitions away during the run). ``compression``: the input's record
        batches and the workers' outputs (``BREEBOOST_COMPRESSION``) compressed with that codec."""
        s = self.env.settings(partitions=partitions, compression=compression or "none")
        keys, values = self.payloads(n, batch)
        prefill(s, keys, values, partitions, compression)
        per_worker = n // workers
        broker_cpu0 = _process_cpu_s(self.env.broker)
        procs = [_Worker(s, ["pipeline", "--events", str(per_worker), "--model", self.model_dir], self.workdir)
                 for _ in range(workers)]
        try:
            results = [p.result(timeout_s=300) for p in procs]
            broker_cpu = _process_cpu_s(self.env.broker) - broker_cpu0
        finally:
            for p in procs:
                p.kill()
        share = -(-partitions // workers)
        rebalanced = any(a > share for p in procs for a in p.assignments)
        t0 = min(r["t_first_wall"] for r in results)
        t1 = max(r["t_last_wall"] for r in results)
        events = sum(r["events"] for r in results)
        rate = events / (t1 - t0)
        self.log(f"  scale-out {workers} worker(s) on {partitions} partitions, compression {compression}: "
                 f"{rate:.0f} tx/s")
        return {"workers": workers, "partitions": partitions, "compression": compression, "events": events, "seconds": round(t1 - t0, 3),
                "rate": round(rate, 1), "per_worker": [r["rate"] for r in results],
                # events per CPU-second of each worker: equal to the solo worker's when the only limit is
                # cores (2 workers, the broker and the producer share this machine's CPUs)
                "per_worker_cpu_rate": [r.get("cpu_rate") for r in results],
                # each worker's own rate summed: not diluted by one worker starting later than the other
                "sum_of_worker_rates": round(sum(r["rate"] for r in results), 1),
                "rebalanced": rebalanced, "assignments": [p.assignments for p in procs],
                # the broker's CPU-seconds from the workers' start to their end (serving the fetches, taking
                # the scores), per CPU-second of the workers' measured spans: on a machine whose cores the
                # workers and the broker share, 2 workers can go at most cpus / (1 + this) times 1 worker
                "broker_cpu_s": round(broker_cpu, 2),
                "broker_cpu_per_worker_cpu": ratio(broker_cpu, sum(r.get("cpu_seconds", 0) for r in results)),
                "load_avg_after": os.getloadavg()}

    # -- 9. memory -----------------------------------------------------------------------------------
    def memory(self, n: int, batch: int, chunk: int = 200_000) -> dict[str, Any]:
        """RSS of one worker over ``n`` transactions (envelopes), produced in chunks while it runs."""
        s = self.env.settings()
        worker = _Worker(s, ["pipeline", "--events", str(n), "--model", self.model_dir, "--sample-every", "0.5"],
                         self.workdir)
        try:
            worker.wait_ready(lambda a: a >= 1)
            # one chunk encoded once (5.4 us a transaction), then renamed per round so every transaction id
            # is new (the worker dead-letters repeated ids): the producer stays ahead of the worker
            keys, values = encode_payloads(min(chunk, n), seed=1000, batch=batch)
            for j, start in enumerate(range(0, n, chunk)):
                tag = b'"transaction_id":"m%d-' % j
                count = -(-min(chunk, n - start) // batch)
                prefill(s, keys[:count], [v.replace(b'"transaction_id":"', tag) for v in values[:count]])
            r = worker.result(timeout_s=600)
        finally:
            worker.kill()
        samples = r.get("samples") or []
        rss = np.array([x[2] for x in samples], dtype=np.float64) / 1024.0
        ev = np.array([x[1] for x in samples], dtype=np.float64)
        warm = ev >= 0.2 * n
        out = {"events": n, "samples": len(samples), "rss_start_mb": round(float(rss[0]), 1) if rss.size else None,
               "rss_after_warmup_mb": round(float(rss[warm][0]), 1) if warm.any() else None,
               "rss_end_mb": round(float(rss[-1]), 1) if rss.size else None,
               "rss_max_mb": round(float(rss.max()), 1) if rss.size else None}
        if warm.sum() >= 3:
            slope = np.polyfit(ev[warm] / 1e6, rss[warm], 1)[0]
            out["growth_mb_per_million_after_warmup"] = round(float(slope), 2)
        late = ev >= 0.5 * n   # the second half: past the fill of the recent-ids map and the allocator's high-water mark
        if late.sum() >= 3:
            out["growth_mb_per_million_second_half"] = round(float(np.polyfit(ev[late] / 1e6, rss[late], 1)[0]), 2)
            out["rss_band_after_warmup_mb"] = [round(float(rss[warm].min()), 1), round(float(rss[warm].max()), 1)]
        out["curve"] = [[int(e), round(float(m), 1)] for e, m in zip(ev[:: max(1, len(ev) // 20)],
                                                                    rss[:: max(1, len(rss) // 20)])]
        self.log(f"  memory over {n} events: {out['rss_after_warmup_mb']} MB after warm-up -> {out['rss_end_mb']} MB")
        return out


class _Worker:
    """A ``bench.runner`` child whose stdout we read without blocking (ready lines, then the result)."""

    def __init__(self, settings: Any, args: list[str], workdir: Path) -> None:
        self._err = open(workdir / "children.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.runner", *args], stdout=subprocess.PIPE,
                                     stderr=self._err, env=child_env(settings), cwd=str(ROOT))
        self.fd = self.proc.stdout.fileno()
        self._buf = b""
        self.assigned = 0
        self.assignments: list[int] = []   # partitions held after each rebalance
        self.last: dict[str, Any] | None = None

    def pump(self, timeout_s: float) -> None:
        """Read what the child wrote within ``timeout_s`` and handle every complete line."""
        import select

        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        if not ready:
            return
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            raise RuntimeError(f"bench worker exited ({self.proc.poll()}) without a result; see children.log")
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        for raw in lines:
            text = raw.decode(errors="replace")
            i = text.find('{"')
            if i < 0:
                continue
            d = json.loads(text[i:])
            if "ready" in d:
                self.assigned = d["ready"]
                self.assignments.append(d["ready"])
            else:
                self.last = d

    def wait_ready(self, ok: Any, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not ok(self.assigned):
            if time.monotonic() > deadline:
                raise RuntimeError("bench worker did not get partitions in time")
            self.pump(0.2)

    def result(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while self.last is None:
            if time.monotonic() > deadline:
                raise RuntimeError("bench worker gave no result in time")
            self.pump(0.5)
        return self.last

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._err.close()


async def _paced_produce(bootstrap: str, topic: str, keys: list[bytes], values: list[bytes], rate: float
                         ) -> dict[str, float]:
    """Produce at ``rate`` messages/s in 5 ms ticks; returns transaction_id -> send time (epoch s)."""
    import orjson
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks=1)
    await producer.start()
    sent: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        i, n = 0, len(values)
        while i < n:
            due = min(n, int((time.perf_counter() - t0) * rate) + 1)
            while i < due:
                now = time.time()
                await producer.send(topic, values[i], key=keys[i], timestamp_ms=int(now * 1000))
                sent[orjson.loads(values[i])["transaction_id"]] = now
                i += 1
            await asyncio.sleep(0.005)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def _read_all(bootstrap: str, topic: str, n: int, idle_s: float = 5.0) -> list[tuple[int, bytes]]:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await c.start()
    out: list[tuple[int, bytes]] = []
    try:
        last = time.monotonic()
        while len(out) < n and time.monotonic() - last < idle_s:
            batch = await c.getmany(timeout_ms=500, max_records=10_000)
            for recs in batch.values():
                out += [(r.timestamp, r.value) for r in recs]
                last = time.monotonic()
    finally:
        await c.stop()
    return out


def _process_cpu_s(broker: Any) -> float:
    """User + system CPU-seconds of the embedded broker's process so far (0 when it is not ours)."""
    proc = getattr(broker, "process", None)
    try:
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (AttributeError, OSError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median(xs: list[float]) -> float:
    return statistics.median(xs)
