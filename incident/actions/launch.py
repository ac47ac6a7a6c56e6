"""The actions' child processes: ``breeboost ARGV...`` started without waiting, output kept in files.

The child gets the agent's settings through ``BREEBOOST_*`` variables (the same topics, broker and
model directory); its stdout (the ``--json`` result) and stderr (progress) go to files in ``log_dir``,
so a long retrain never fills a pipe and its progress can be read while it runs.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from breeboost.settings import Settings, env_var

__all__ = ["SubprocessLauncher", "settings_environment"]


def settings_environment(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process exactly ``settings``."""
    env = dict(os.environ)
    for name, value in settings.as_safe_dict().items():
        if name != "sasl_password":
            env[env_var(name)] = str(value)
    if settings.sasl_password:
        env[env_var("sasl_password")] = settings.sasl_password.reveal()
    return env


class SubprocessLauncher:
    """:class:`incident.actions.engine.Launcher` running ``python -m breeboost.cli ARGV``."""

    def __init__(self, settings: Settings, log_dir: str | os.PathLike) -> None:
        self.env = settings_environment(settings)
        self.log_dir = Path(log_dir)

    def start(self, argv: list[str]) -> Any:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stem = self.log_dir / f"action-{argv[1] if len(argv) > 1 else argv[0]}-{uuid.uuid4().hex[:8]}"
        out, err = open(f"{stem}.out", "w+b"), open(f"{stem}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "breeboost.cli", *argv], stdout=out, stderr=err,
                                env=self.env, start_new_session=True)
        return proc, out, err

    def poll(self, job: Any) -> tuple[int, str] | None:
        proc, out, err = job
        code = proc.poll()
        if code is None:
            return None
        out.seek(0)
        text = out.read().decode(errors="replace")
        out.close()
        err.close()
        return code, text
