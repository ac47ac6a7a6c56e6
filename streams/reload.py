"""Pick up a new model without stopping: watch the model directory's ``metadata.json``.

``breeboost train --out MODEL_DIR`` writes the artifact files and then ``metadata.json``; when its
version changes, :meth:`ModelWatcher.poll` loads the new model (checksums verified) and the worker swaps
it in between two micro-batches, so no event is lost or scored twice. A half-written or corrupt artifact
is refused and the current model keeps serving (logged, retried on the next poll). The worker polls
every 2 seconds.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import orjson

from breeboost.errors import BreeBoostError
from breeboost.logs import log

__all__ = ["ModelWatcher"]

_log = logging.getLogger("breeboost.reload")


class ModelWatcher:
    def __init__(self, model_dir: str | os.PathLike, current_version: str, nthread: int = 1) -> None:
        self.model_dir = Path(model_dir)
        self.current_version = current_version
        self.nthread = nthread
        self._seen: tuple[float, int] | None = self._stamp()
        self.failures = 0

    def _stamp(self) -> tuple[float, int] | None:
        try:
            st = (self.model_dir / "metadata.json").stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime, st.st_size)

    def poll(self, force: bool = False) -> Any | None:
        """The new :class:`models.scorer.Scorer` if the directory holds another version, else None."""
        stamp = self._stamp()
        if stamp is None or (stamp == self._seen and not force):
            return None
        try:
            version = orjson.loads((self.model_dir / "metadata.json").read_bytes()).get("version")
        except (OSError, orjson.JSONDecodeError):
            return None   # being written: try again on the next poll
        if version == self.current_version:
            self._seen = stamp
            return None
        from models.scorer import Scorer

        try:
            scorer = Scorer.load(self.model_dir, nthread=self.nthread)
        except BreeBoostError as e:
            self.failures += 1
            log(_log, "new model refused, keeping the current one", level=logging.WARNING,
                model_dir=str(self.model_dir), error=str(e), current=self.current_version)
            return None
        self._seen = stamp
        self.current_version = scorer.version
        return scorer
