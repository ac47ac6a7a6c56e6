"""The peers the per-message pipeline is measured against, in the same run: the Kafka clients' own loops
(aiokafka ``getmany``, confluent-kafka ``consume``), a do-nothing Faust agent and Quix Streams apps.

Quix Streams is a ``bench`` extra, never a runtime dependency. It pins an older confluent-kafka than the
test extra, so when the bench's interpreter lacks it, the bench builds ``bench/.cache/quix-venv`` once
(:data:`QUIX_PINS`) and runs ``bench/quix_app.py`` there.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.env import ROOT

__all__ = ["QUIX_PINS", "quix_python", "run_quix"]

QUIX_PINS = ["quixstreams==3.28.1"]


def quix_python(cache: Path, install: bool = True) -> tuple[str | None, str | None]:
    """An interpreter that imports ``quixstreams`` (this one, or the bench's own venv, built when
    ``install``), or ``None`` and why not."""
    if subprocess.run([sys.executable, "-c", "import quixstreams"], capture_output=True).returncode == 0:
        return sys.executable, None
    venv = cache / "quix-venv"
    py = venv / "bin" / "python"
    if py.exists():
        return str(py), None
    if not install:
        return None, "quixstreams is not installed (pip install -e '.[bench]')"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", *QUIX_PINS], capture_output=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(r.stderr.decode(errors="replace")[-300:])
    except Exception as e:   # no network, no wheel: the Quix peers are skipped, with the reason
        import shutil

        shutil.rmtree(venv, ignore_errors=True)
        return None, f"could not install {' '.join(QUIX_PINS)}: {str(e)[-200:]}"
    return str(py), None


def run_quix(python: str, settings: Any, n: int, decode: str, log_path: Path, timeout_s: float = 300.0
             ) -> dict[str, Any]:
    """One Quix Streams app over ``settings.topic_transactions`` (``decode``: json or bytes)."""
    args = [python, str(ROOT / "bench" / "quix_app.py"), settings.bootstrap, settings.topic_transactions,
            f"{settings.group_id}-quix", str(n), decode]
    with open(log_path, "ab") as err:
        try:
            out = subprocess.run(args, stdout=subprocess.PIPE, stderr=err, timeout=timeout_s, cwd=str(ROOT)).stdout
        except subprocess.TimeoutExpired:
            return {"error": f"quix app timed out after {timeout_s}s"}
    lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {"error": f"quix app printed no result; see {log_path}"}
