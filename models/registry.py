"""The model registry: the versions of a model directory, its champion, at most one challenger, the history.

Layout::

    MODEL_DIR/
      registry.json        champion, challenger, previous champions, versions, history of switches
      versions/<version>/  one artifact each (models.artifact: model.ubj, metadata.json, ...)

The worker serves the champion (:func:`champion_dir`; :func:`models.artifact.load_artifact` resolves a
registry to it). Every change writes a new ``registry.json`` next to it, fsyncs it and renames it over the
old one (then fsyncs the directory), so a reader (the worker's watcher) sees the old registry or the new
one, never half of one, and a process killed at any point leaves the old champion serving. A version's
files are written into a temporary directory first and renamed into ``versions/`` when complete. Changes
take an exclusive lock on ``MODEL_DIR/.registry.lock``, so two commands never lose each other's switch.

A plain artifact directory (``metadata.json`` at the top, no ``registry.json``) reads as a registry of one
version, its champion; the first change (adding a version) copies it into ``versions/`` and writes the
registry, leaving its top-level files as they were.

>>> import tempfile
>>> from models.artifact import model_version, save_artifact
>>> def artifact(tag):
...     d = tempfile.mkdtemp()
...     meta = {"spec": {"name": tag}, "version": model_version(b"b", {"name": tag}), "feature_names": ["a"],
...             "threshold": 0.5}
...     save_artifact(d, b"b", meta, {"numeric": {}}, {"rows": 0})
...     return d, meta["version"]
>>> reg = Registry(tempfile.mkdtemp())
>>> (a, va), (b, vb) = artifact("a"), artifact("b")
>>> reg.add(a, by="test").champion == va           # the first version becomes champion
True
>>> reg.add(b, by="test", challenger=True).challenger == vb
True
>>> s = reg.promote(vb, by="test")
>>> (s.champion, s.challenger, s.previous) == (vb, None, (va,))
True
>>> reg.rollback(by="test").champion == va
True
>>> [h.action for h in reg.state().history]
['registered', 'challenger', 'promoted', 'rolled_back']
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import msgspec

from models.artifact import METADATA_FILE, load_artifact
from models.errors import ModelError

__all__ = ["Registry", "RegistryState", "Switch", "champion_dir", "resolve_champion", "is_registry", "REGISTRY_FILE",
           "VERSIONS_DIR", "REFERENCES_DIR", "ACTIONS", "encode_switch", "decode_switch"]

REGISTRY_FILE = "registry.json"
VERSIONS_DIR = "versions"
#: a version's re-baselined drift references: ``versions/<v>/references/<n>.json`` (a profile each)
REFERENCES_DIR = "references"
_LOCK_FILE = ".registry.lock"
FORMAT = "breeboost.registry"
FORMAT_VERSION = 1
#: What a history entry (and a ``models`` topic event) records.
ACTIONS = ("registered", "challenger", "promoted", "rolled_back", "challenger_dropped", "rebaselined")


class Switch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One change of the registry: a history entry and the event published on the ``models`` topic.

    ``version`` is the version acted on, ``champion``/``challenger`` the roles after the change,
    ``previous_champion`` the champion before it; ``by`` who did it (a user, ``auto``, a command)."""

    action: str
    version: str
    champion: str | None
    challenger: str | None
    previous_champion: str | None
    time: float
    by: str
    reason: str = ""
    model_dir: str = ""


class RegistryState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The content of ``registry.json``. ``previous``: the champions before this one, latest last (what
    ``rollback`` returns to). ``references``: version -> number of its re-baselined drift reference in use
    (absent: the profile it was trained with)."""

    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    champion: str | None = None
    challenger: str | None = None
    previous: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()
    history: tuple[Switch, ...] = ()
    references: dict[str, int] = msgspec.field(default_factory=dict)


_encoder = msgspec.json.Encoder()
_state_decoder = msgspec.json.Decoder(RegistryState)
_switch_decoder = msgspec.json.Decoder(Switch)


def encode_switch(switch: Switch) -> bytes:
    """The ``models`` topic value of a switch (JSON)."""
    return _encoder.encode(switch)


def decode_switch(data: bytes) -> Switch:
    try:
        return _switch_decoder.decode(data)
    except msgspec.ValidationError as e:
        raise ModelError(f"not a model registry event: {e}") from None


def is_registry(model_dir: str | os.PathLike) -> bool:
    """Whether ``model_dir`` holds a ``registry.json`` (else it is a plain artifact directory or nothing)."""
    return (Path(model_dir) / REGISTRY_FILE).is_file()


def champion_dir(model_dir: str | os.PathLike) -> Path:
    """The artifact directory the worker serves: the champion's version directory of a registry, the
    directory itself for a plain artifact."""
    return resolve_champion(model_dir)[0]


def resolve_champion(model_dir: str | os.PathLike) -> tuple[Path, dict | None]:
    """The champion's artifact directory and its re-baselined drift reference (``None``: the profile it was
    trained with), from one read of ``registry.json``."""
    d = Path(model_dir)
    if not is_registry(d):
        return d, None
    state = Registry(d).state()
    if state.champion is None:
        raise ModelError(f"model registry {str(d)!r} has no champion: promote a version "
                         f"(breeboost model promote VERSION --model {d})")
    version_dir = d / VERSIONS_DIR / state.champion
    n = state.references.get(state.champion)
    if n is None:
        return version_dir, None
    f = version_dir / REFERENCES_DIR / f"{n}.json"
    try:
        return version_dir, msgspec.json.decode(f.read_bytes())
    except (OSError, msgspec.DecodeError) as e:
        raise ModelError(f"cannot read the drift reference {str(f)!r} that registry.json names: {e}") from None


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(d: Path) -> None:
    for f in d.iterdir():
        with f.open("rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(d)


class Registry:
    """The registry of ``model_dir`` (which may not exist yet: :meth:`add` creates it)."""

    def __init__(self, model_dir: str | os.PathLike) -> None:
        self.path = Path(model_dir)

    # -- reading ------------------------------------------------------------------------------------
    def state(self) -> RegistryState:
        """The registry as it is on disk; a plain artifact reads as a registry of one, nothing as empty."""
        f = self.path / REGISTRY_FILE
        try:
            data = f.read_bytes()
        except FileNotFoundError:
            return self._plain_state()
        except OSError as e:
            raise ModelError(f"cannot read {str(f)!r}: {e.strerror or e}") from None
        try:
            state = _state_decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            raise ModelError(f"{str(f)!r} is not a valid model registry ({e}): restore it from a backup or "
                             "write a new one with breeboost model promote") from None
        if state.format != FORMAT or state.format_version != FORMAT_VERSION:
            raise ModelError(f"{str(f)!r} has registry format {state.format!r} version {state.format_version}; "
                             f"this BreeBoost reads {FORMAT!r} version {FORMAT_VERSION}")
        return state

    def _plain_state(self) -> RegistryState:
        if not (self.path / METADATA_FILE).is_file():
            return RegistryState()
        version = load_artifact(self.path).metadata["version"]
        return RegistryState(champion=version, versions=(version,))

    def version_dir(self, version: str) -> Path:
        """The artifact directory of a registered version (:class:`ModelError` if unknown)."""
        state = self.state()
        if version not in state.versions:
            known = ", ".join(state.versions) or "none"
            raise ModelError(f"model registry {str(self.path)!r} has no version {version!r} (versions: {known}): "
                             "see breeboost model list")
        if not is_registry(self.path):
            return self.path
        return self.path / VERSIONS_DIR / version

    # -- changing -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[RegistryState]:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / _LOCK_FILE, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield self.state()
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _write(self, state: RegistryState) -> None:
        """Write-then-rename: fsync the new file, rename it over the old one, fsync the directory."""
        tmp = self.path / f"{REGISTRY_FILE}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(msgspec.json.format(_encoder.encode(state), indent=2))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path / REGISTRY_FILE)
        _fsync_dir(self.path)

    def _adopt_plain(self, state: RegistryState) -> None:
        """A plain artifact directory becomes a registry: its artifact is copied into ``versions/``."""
        if is_registry(self.path) or not state.versions:
            return
        self._store(self.path, state.versions[0])

    def _store(self, artifact_dir: Path, version: str) -> Path:
        """Copy an artifact into ``versions/<version>`` through a temporary directory and a rename."""
        target = self.path / VERSIONS_DIR / version
        if target.is_dir():
            load_artifact(target)   # already there (same version: same bytes); refuse a corrupt one
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{version}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.mkdir()
        for name in load_artifact(artifact_dir).metadata["files"] | {METADATA_FILE: None}:
            shutil.copyfile(artifact_dir / name, tmp / name)
        load_artifact(tmp)          # checksums of the copy
        _fsync_tree(tmp)
        os.rename(tmp, target)
        _fsync_dir(target.parent)
        return target

    def _switch(self, state: RegistryState, action: str, version: str, by: str, reason: str,
                **changes: Any) -> RegistryState:
        new = msgspec.structs.replace(state, **changes)
        switch = Switch(action=action, version=version, champion=new.champion, challenger=new.challenger,
                        previous_champion=state.champion, time=round(time.time(), 3), by=by, reason=reason,
                        model_dir=str(self.path))
        new = msgspec.structs.replace(new, history=(*state.history, switch))
        self._write(new)
        return new

    def add(self, artifact_dir: str | os.PathLike, *, by: str, challenger: bool = False,
            reason: str = "") -> RegistryState:
        """Register the artifact in ``artifact_dir`` (copied into ``versions/``). It becomes the champion when
        there is none; else the challenger if ``challenger`` (replacing the one there was), else only a
        version."""
        src = Path(artifact_dir)
        version = load_artifact(src).metadata["version"]
        with self._locked() as state:
            self._adopt_plain(state)
            self._store(src, version)
            versions = state.versions if version in state.versions else (*state.versions, version)
            if state.champion is None:
                return self._switch(state, "registered", version, by, reason or "first version",
                                    champion=version, versions=versions)
            if challenger and version != state.champion:
                return self._switch(state, "challenger", version, by, reason, challenger=version,
                                    versions=versions)
            if not is_registry(self.path) or versions != state.versions:
                return self._switch(state, "registered", version, by, reason, versions=versions)
            return state

    def promote(self, version: str, *, by: str, reason: str = "") -> RegistryState:
        """Make ``version`` the champion (the current one goes on the ``previous`` stack)."""
        with self._locked() as state:
            self.version_dir(version)
            if version == state.champion:
                raise ModelError(f"version {version!r} is already the champion of {str(self.path)!r}")
            load_artifact(self.path / VERSIONS_DIR / version if is_registry(self.path) else self.path)
            self._adopt_plain(state)
            previous = (*state.previous, state.champion) if state.champion else state.previous
            challenger = None if state.challenger == version else state.challenger
            return self._switch(state, "promoted", version, by, reason, champion=version, challenger=challenger,
                                previous=previous)

    def rollback(self, *, by: str, reason: str = "") -> RegistryState:
        """Make the champion before this one champion again."""
        with self._locked() as state:
            if not state.previous:
                raise ModelError(f"model registry {str(self.path)!r} has no earlier champion to roll back to")
            back = state.previous[-1]
            load_artifact(self.path / VERSIONS_DIR / back)
            return self._switch(state, "rolled_back", back, by, reason, champion=back, previous=state.previous[:-1])

    def rebaseline(self, profile: dict, *, by: str, reason: str) -> tuple[int, RegistryState]:
        """A new drift reference for the champion (``profile``: a :func:`detectors.profile.build_profile`
        dict): written to ``versions/<champion>/references/<n>.json``, then named in ``registry.json``."""
        with self._locked() as state:
            if state.champion is None or not is_registry(self.path):
                self._adopt_plain(state)
                if state.champion is None:
                    raise ModelError(f"model registry {str(self.path)!r} has no champion to re-baseline")
            d = self.path / VERSIONS_DIR / state.champion / REFERENCES_DIR
            d.mkdir(parents=True, exist_ok=True)
            n = max((int(f.stem) for f in d.glob("*.json") if f.stem.isdigit()), default=0) + 1
            tmp = d / f".{n}.{uuid.uuid4().hex[:8]}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(_encoder.encode(profile))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, d / f"{n}.json")
            _fsync_dir(d)
            new = self._switch(state, "rebaselined", state.champion, by, reason, references={**state.references, state.champion: n})
            return n, new

    def drop_challenger(self, *, by: str, reason: str = "") -> RegistryState:
        """Forget the challenger (its version stays registered)."""
        with self._locked() as state:
            if state.challenger is None:
                raise ModelError(f"model registry {str(self.path)!r} has no challenger")
            return self._switch(state, "challenger_dropped", state.challenger, by, reason, challenger=None)
