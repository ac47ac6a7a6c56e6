"""Pick up a new model without stopping: follow the model directory's champion.

A model registry (:mod:`models.registry`) is watched through its ``registry.json``: when ``breeboost model
promote``/``rollback`` (or a retrain's first version) names another champion, :meth:`ModelWatcher.poll`
loads it (checksums verified), logs the switch and passes it to ``announce`` (the composition root
publishes it on the ``models`` topic), and the worker swaps it in between two micro-batches, so no event
is lost or scored twice. A plain artifact directory is watched through its ``metadata.json``, which
``breeboost train`` writes last. A half-written or corrupt artifact is refused and the current model keeps
serving (logged, retried on the next poll). The worker polls every 2 seconds.

:meth:`ModelWatcher.poll_challenger` follows the registry's challenger the same way, for shadow scoring
(:meth:`streams.model.ModelHolder.set_shadow`).
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import orjson

from breeboost.errors import BreeBoostError
from breeboost.logs import log

__all__ = ["ModelWatcher"]

_log = logging.getLogger("breeboost.reload")


#: ``announce(switch)``: told of each model the worker switched to (a dict: from, to, model_dir, time).
Announce = Callable[[dict], None]


def _no_announce(_switch: dict) -> None:
    return None


class ModelWatcher:
    """Follows ``model_dir``'s champion; ``current_version`` is the version being served."""

    def __init__(self, model_dir: str | os.PathLike, current_version: str, nthread: int = 1,
                 announce: Announce = _no_announce) -> None:
        self.model_dir = Path(model_dir)
        self.current_version = current_version
        self.nthread = nthread
        self.announce = announce
        self._seen: tuple[str, float, int] | None = self._stamp()
        wanted = self._wanted()
        #: the re-baselined drift reference served (models.registry; None: the trained profile)
        self.current_reference = wanted[1] if wanted is not None and wanted[0] == current_version else None
        self.failures = 0
        self.current_challenger: str | None = None    # the challenger loaded for shadow scoring

    def _watched(self) -> Path:
        registry = self.model_dir / "registry.json"
        return registry if registry.is_file() else self.model_dir / "metadata.json"

    def _stamp(self) -> tuple[str, float, int] | None:
        watched = self._watched()
        try:
            st = watched.stat()
        except FileNotFoundError:
            return None
        return (watched.name, st.st_mtime_ns, st.st_size)

    def _wanted(self) -> tuple[Any, Any] | None:
        """``(version, reference)`` the directory names now (``None`` while a plain artifact is being
        written); ``reference``: the number of the champion's re-baselined drift reference, or ``None``."""
        watched = self._watched()
        try:
            doc = orjson.loads(watched.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None   # being written: try again on the next poll
        if not isinstance(doc, dict):
            return None
        if watched.name != "registry.json":
            return doc.get("version"), None
        champion = doc.get("champion")
        return champion, (doc.get("references") or {}).get(champion)

    def poll(self, force: bool = False) -> Any | None:
        """The new :class:`models.scorer.Scorer` if the directory holds another version, else None."""
        stamp = self._stamp()
        if stamp is None or (stamp == self._seen and not force):
            return None
        wanted = self._wanted()
        if wanted is None or wanted[0] is None:
            return None
        if wanted == (self.current_version, self.current_reference):
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
        previous, self.current_version = self.current_version, scorer.version
        self.current_reference = wanted[1] if wanted[0] == scorer.version else None
        switch = {"from": previous, "to": scorer.version, "model_dir": str(self.model_dir),
                  "time": round(time.time(), 3)}
        if self.current_reference is not None:
            switch["reference"] = self.current_reference
        log(_log, "model switched", **switch)
        try:
            self.announce(switch)
        except Exception as e:   # a notification: the switch itself has happened
            log(_log, "model switch not announced", level=logging.WARNING, error=str(e), **switch)
        return scorer

    def poll_challenger(self) -> tuple[bool, Any | None]:
        """``(changed, scorer)``: the registry's challenger when it changed since the last call
        (``scorer`` ``None``: there is none any more, or it cannot be loaded: logged, the worker scores
        without a shadow until the registry names another). A plain artifact directory has none."""
        registry = self.model_dir / "registry.json"
        try:
            doc = orjson.loads(registry.read_bytes())
            wanted = doc.get("challenger") if isinstance(doc, dict) else None
        except FileNotFoundError:
            wanted = None
        except (OSError, orjson.JSONDecodeError):
            return False, None    # being written: the next poll
        if wanted == self.current_challenger:
            return False, None
        self.current_challenger = wanted
        if wanted is None:
            return True, None
        from models.registry import Registry
        from models.scorer import Scorer

        try:
            scorer = Scorer.load(Registry(self.model_dir).version_dir(str(wanted)), nthread=self.nthread)
        except BreeBoostError as e:
            log(_log, "challenger not loaded: no shadow scoring", level=logging.WARNING, challenger=wanted,
                model_dir=str(self.model_dir), error=str(e))
            return True, None
        return True, scorer
