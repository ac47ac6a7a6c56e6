"""The model artifact: a directory with the booster (XGBoost UBJSON, never pickle), metadata, drift profile
and test report. Loading checks every file against the checksums in ``metadata.json``.

Layout::

    MODEL_DIR/
      model.ubj       the booster, XGBoost's own binary JSON (UBJSON) format
      metadata.json   format, version, spec, feature order, threshold, training summary, libraries,
                      metrics, sha256 of the other files
      profile.json    the drift reference profile (detectors.profile.build_profile)
      report.json     the evaluation report of the test slice

``version`` is the first 12 hex characters of ``sha256(model bytes + canonical JSON of the spec)``: the
same booster with another spec is another model.

>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> v = model_version(b"booster", {"name": "x"})
>>> meta = {"spec": {"name": "x"}, "version": v, "feature_names": ["a"], "threshold": 0.5}
>>> _ = save_artifact(d, b"booster", meta, {"numeric": {}}, {"rows": 0})
>>> load_artifact(d).metadata["version"] == v
True
>>> _ = open(f"{d}/model.ubj", "ab").write(b"!")
>>> load_artifact(d)
Traceback (most recent call last):
...
models.errors.ModelError: ... model.ubj does not match its checksum in metadata.json: the artifact is corrupt or was mixed with another model; train again
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from models.errors import ModelError

__all__ = ["Artifact", "save_artifact", "load_artifact", "model_version", "MODEL_FILE", "METADATA_FILE",
           "PROFILE_FILE", "REPORT_FILE", "FORMAT", "FORMAT_VERSION"]

FORMAT = "breeboost.model"
FORMAT_VERSION = 1
MODEL_FILE = "model.ubj"
METADATA_FILE = "metadata.json"
PROFILE_FILE = "profile.json"
REPORT_FILE = "report.json"
_REQUIRED_METADATA = ("version", "spec", "feature_names", "threshold", "files")


def _canonical(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model_version(booster_bytes: bytes, spec: dict[str, Any]) -> str:
    """12 hex characters identifying a booster together with its spec."""
    return _sha256(booster_bytes + _canonical(spec))[:12]


@dataclass(frozen=True)
class Artifact:
    """The files of a model directory, checked and parsed (the booster as raw UBJSON bytes)."""

    path: Path
    booster_bytes: bytes
    metadata: dict[str, Any]
    profile: dict[str, Any]
    report: dict[str, Any]


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # readers never see a half-written file


def save_artifact(model_dir: str | Path, booster_bytes: bytes, metadata: dict[str, Any], profile: dict[str, Any],
                  report: dict[str, Any]) -> Path:
    """Write the four files (metadata last, with the checksums of the others); return the directory."""
    d = Path(model_dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
        payloads = {MODEL_FILE: booster_bytes,
                    PROFILE_FILE: orjson.dumps(profile, option=orjson.OPT_SERIALIZE_NUMPY),
                    REPORT_FILE: orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)}
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **metadata, "model_file": MODEL_FILE,
                "files": {name: _sha256(data) for name, data in payloads.items()}}
        for name, data in payloads.items():
            _write(d / name, data)
        _write(d / METADATA_FILE, orjson.dumps(meta, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    except OSError as e:
        raise ModelError(f"cannot write the model to {str(d)!r}: {e.strerror or e}") from None
    return d


def _read(d: Path, name: str) -> bytes:
    try:
        return (d / name).read_bytes()
    except FileNotFoundError:
        raise ModelError(f"model directory {str(d)!r} has no {name}: train a model first "
                         f"(breeboost train --out {d})") from None
    except OSError as e:
        raise ModelError(f"cannot read {str(d / name)!r}: {e.strerror or e}") from None


def _json(d: Path, name: str, data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise ModelError(f"{str(d / name)!r} is not valid JSON ({e}): the artifact is corrupt; train again") from None


def load_artifact(model_dir: str | Path) -> Artifact:
    """Read and check a model directory (a registry's champion, :mod:`models.registry`); :class:`ModelError`
    says what is missing or corrupt."""
    d = Path(model_dir)
    if not d.is_dir():
        raise ModelError(f"model directory {str(d)!r} does not exist: train a model first (breeboost train --out {d})")
    reference = None
    if (d / "registry.json").is_file():   # a model registry (models.registry): serve its champion
        from models.registry import resolve_champion

        d, reference = resolve_champion(d)   # reference: its re-baselined drift profile, if any
    meta = _json(d, METADATA_FILE, _read(d, METADATA_FILE))
    if not isinstance(meta, dict) or meta.get("format", FORMAT) != FORMAT:
        raise ModelError(f"{str(d / METADATA_FILE)!r} is not BreeBoost model metadata")
    if meta.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise ModelError(f"{str(d)!r} has model format version {meta.get('format_version')!r}; this BreeBoost "
                         f"reads version {FORMAT_VERSION}: train again")
    missing = [k for k in _REQUIRED_METADATA if k not in meta]
    if missing:
        raise ModelError(f"{str(d / METADATA_FILE)!r} lacks {', '.join(missing)}: the artifact is incomplete")
    model_file = meta.get("model_file", MODEL_FILE)
    if model_file not in (MODEL_FILE, "model.json"):
        raise ModelError(f"{str(d / METADATA_FILE)!r}: unsupported model file {model_file!r}")
    blobs = {}
    for name in (model_file, PROFILE_FILE, REPORT_FILE):
        data = _read(d, name)
        expected = meta["files"].get(name)
        if expected is not None and _sha256(data) != expected:
            raise ModelError(f"{str(d)!r}: {name} does not match its checksum in metadata.json: the artifact is "
                             "corrupt or was mixed with another model; train again")
        blobs[name] = data
    if model_version(blobs[model_file], meta["spec"]) != meta["version"]:
        raise ModelError(f"{str(d)!r}: the model and spec do not give version {meta['version']!r}: "
                         "metadata.json was edited or mixed with another model; train again")
    profile = _json(d, PROFILE_FILE, blobs[PROFILE_FILE]) if reference is None else reference
    return Artifact(d, blobs[model_file], meta, profile, _json(d, REPORT_FILE, blobs[REPORT_FILE]))
