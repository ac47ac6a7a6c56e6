"""``breeboost replay``: stream your own labelled file to ``transactions`` and ``labels``, in file order.

    breeboost replay --data FILE [--spec SPEC] [--rate R] [--label-delay S] [--restamp]

``FILE`` is ``.csv``, ``.jsonl`` (``.json``/``.ndjson``) or ``.parquet`` (Parquet needs pyarrow: the
``parquet`` extra, ``pip install 'breeboost[parquet]'``), read by :func:`models.io.read_table`; a file that
cannot be read (a CSV line with the wrong number of cells, a JSON line that is not an object) stops the
replay before anything is sent, naming the line. The spec (``--spec``, default the packaged PaySim spec)
names the label, id and event-time columns (:class:`simulator.replay.ReplayTable` says what happens to
each). Prints one JSON summary line on stdout; exit status 1 if a transaction or label was not
acknowledged by the broker.

Event times from the file are old: run the workers with ``--freshness-clock stream``
(``BREEBOOST_FRESHNESS_CLOCK=stream``) so freshness is measured against the stream's own clock and a
backfill does not page ``stale_data`` (docs/detectors.md, "Freshness"), or pass ``--restamp``.

>>> import argparse
>>> p = argparse.ArgumentParser(); add_replay_arguments(p)
>>> a = p.parse_args(["--data", "cards.csv", "--rate", "500"])
>>> a.data, a.rate, a.label_delay, a.spec
('cards.csv', 500.0, 2.0, None)
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

from breeboost.errors import BreeBoostError

__all__ = ["add_replay_arguments", "run_replay", "load_replay_table", "file_id_prefix"]


def add_replay_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="FILE", required=True,
                   help="labelled rows: .csv, .jsonl or .parquet (Parquet needs pyarrow: the parquet extra)")
    p.add_argument("--spec", metavar="SPEC", default=None,
                   help="feature spec TOML naming the label, id and event-time columns (default: PaySim's)")
    p.add_argument("--rate", type=float, metavar="ROWS_PER_S", help="rows per second (default: as fast as possible)")
    p.add_argument("--label-delay", type=float, default=2.0, metavar="SECONDS",
                   help="publish each label this long after its transaction (default 2.0; 0 = at once)")
    p.add_argument("--no-labels", action="store_true", help="do not publish labels")
    p.add_argument("--restamp", action="store_true",
                   help="replace the file's event times with the publish time (freshness then measures the "
                        "pipeline, not the data's age)")
    p.add_argument("--batch", type=int, default=1, metavar="N",
                   help="transactions per Kafka message, as a JSON array (default 1)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="give up on an unacknowledged message after this long (default 30)")


def file_id_prefix(path: str | Path) -> str:
    """The prefix of generated transaction ids: the file's stem and the start of its bytes' SHA-256, so the
    same file always gives the same ids and two files different ones.

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "cards.csv"); _ = open(p, "w").write("a\\n1\\n")
    >>> file_id_prefix(p) == file_id_prefix(p), file_id_prefix(p).startswith("cards-")
    (True, True)
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return f"{Path(path).stem}-{h.hexdigest()[:10]}"


def load_replay_table(path: str, spec_path: str | None = None, restamp: bool = False) -> Any:
    """The file's :class:`simulator.replay.ReplayTable`, its columns' roles from the spec."""
    from models.io import read_table
    from models.spec import load_spec
    from simulator.replay import ReplayTable

    spec = load_spec(spec_path)
    columns = read_table(path)
    if not columns:
        raise BreeBoostError(f"{path!r}: the file has no columns")
    return ReplayTable(columns, label=spec.label, id_column=spec.id, event_time=spec.event_time,
                       id_prefix=file_id_prefix(path), restamp=restamp, source=str(path))


def _check(args: argparse.Namespace) -> None:
    if args.rate is not None and not args.rate > 0:
        raise BreeBoostError(f"--rate must be > 0 rows/s, got {args.rate}")
    if not args.label_delay >= 0:
        raise BreeBoostError(f"--label-delay must be >= 0, got {args.label_delay}")
    if args.batch < 1:
        raise BreeBoostError(f"--batch must be >= 1, got {args.batch}")
    if not args.timeout > 0:
        raise BreeBoostError(f"--timeout must be > 0, got {args.timeout}")


def run_replay(args: argparse.Namespace, settings) -> int:
    import orjson

    from simulator.replay import Replayer

    _check(args)
    table = load_replay_table(args.data, args.spec, args.restamp)
    if table.event_times == "file" and settings.freshness_clock != "stream":
        print(f"breeboost replay: event times come from {args.data!r}: run the workers with --freshness-clock "
              "stream (BREEBOOST_FRESHNESS_CLOCK=stream) so old event times are not stale data, or pass "
              "--restamp", file=sys.stderr)
    progress = sys.stderr if sys.stderr.isatty() else None
    summary = Replayer(settings, table, rate=args.rate, label_delay=args.label_delay, labels=not args.no_labels,
                       batch=args.batch, timeout_s=args.timeout, progress=progress).run()
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    sys.stdout.flush()
    return 1 if summary["failed"] else 0
