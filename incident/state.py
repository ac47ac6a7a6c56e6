"""The incident agent's state file: JSON written atomically after each processed window.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "incident-state.json")
>>> sf = StateFile(path)
>>> sf.load() is None
True
>>> sf.save({"version": 1, "last_index": {"default": 3}})
>>> sf.load()["last_index"]
{'default': 3}
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import orjson

from incident.errors import IncidentError

__all__ = ["StateFile"]


class StateFile:
    """Load/save :meth:`IncidentManager.state_dict` at ``path``.

    ``save`` writes a temporary file in the same directory, fsyncs it and renames it over the old one,
    so a crash leaves either the old or the new state, never half of one.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        if not str(path):
            raise ValueError("path: expected a file path, got ''")
        self.path = Path(path)

    def load(self) -> dict[str, Any] | None:
        """The saved state, or ``None`` when there is no file yet (rebuild from the topic then)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise IncidentError(f"incident state file {str(self.path)!r} is not valid JSON ({e}); "
                                "delete it to rebuild the state from the incidents topic") from None
        if not isinstance(doc, dict):
            raise IncidentError(f"incident state file {str(self.path)!r} does not hold a JSON object")
        return doc

    def save(self, state: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(orjson.dumps(state))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
