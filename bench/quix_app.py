"""A Quix Streams peer for the bench: ``python bench/quix_app.py BOOTSTRAP TOPIC GROUP N [json|bytes]``.

Runs in the interpreter that has ``quixstreams`` (the ``bench`` extra, or the venv the bench builds in
``bench/.cache/quix-venv``: Quix Streams pins an older confluent-kafka than the test extra), so it imports
nothing of this project. The app reads ``TOPIC`` from the earliest offset with a fresh consumer group,
JSON-decodes each message (``json``, Quix's own deserializer) or takes its bytes (``bytes``), and counts;
after ``N`` messages it prints one JSON line (the messages after the first and the seconds between the
first and the last, as ``bench.runner`` counts) and exits.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time


def main(argv: list[str]) -> None:
    from quixstreams import Application

    bootstrap, topic_name, group, n = argv[0], argv[1], argv[2], int(argv[3])
    decode = argv[4] if len(argv) > 4 else "json"
    app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                      auto_create_topics=False, use_changelog_topics=False,
                      state_dir=tempfile.mkdtemp(prefix="breeboost-quix-"),
                      # the embedded broker holds a join for half the session timeout
                      consumer_extra_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})
    topic = app.topic(topic_name, value_deserializer=decode, key_deserializer="bytes")
    sdf = app.dataframe(topic)
    state = {"count": 0, "t_first": 0.0, "cpu_first": 0.0}

    def count(value: object) -> None:
        state["count"] += 1
        c = state["count"]
        if c == 1:
            state["t_first"], state["cpu_first"] = time.perf_counter(), time.process_time()
        elif c >= n:
            seconds = time.perf_counter() - state["t_first"]
            cpu = time.process_time() - state["cpu_first"]
            sys.stdout.write(json.dumps({"mode": f"quix-{decode}", "events": c - 1, "seconds": round(seconds, 4),
                                         "cpu_seconds": round(cpu, 4), "rate": round((c - 1) / seconds, 1),
                                         "cpu_rate": round((c - 1) / cpu, 1) if cpu > 0 else None}) + "\n")
            sys.stdout.flush()
            os._exit(0)

    sdf.update(count)
    app.run()


if __name__ == "__main__":
    main(sys.argv[1:])
