"""Helpers for tests that run real worker processes against the session broker."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from breeboost.broker import die_with_parent, free_port
from breeboost.settings import Settings, env_var

BB = [sys.executable, "-m", "breeboost.cli"]


def settings_env(settings: Settings, **extra) -> dict[str, str]:
    """The environment that makes a child process use exactly ``settings`` (topics, group, bootstrap)."""
    env = dict(os.environ)
    for name, value in settings.as_safe_dict().items():
        if name == "sasl_password":
            continue
        env[env_var(name)] = str(value)
    if settings.sasl_password:
        env[env_var("sasl_password")] = settings.sasl_password.reveal()
    env.update({env_var(k): str(v) for k, v in extra.items()})
    return env


class Worker:
    """``breeboost worker`` in a subprocess, logging to a file; ``wait_ready`` blocks until it has partitions."""

    def __init__(self, settings: Settings, model_dir: str | None, log_path: Path, role: str = "all",
                 extra_args: list[str] | None = None, **env_extra) -> None:
        self.metrics_port = free_port()
        self.log_path = Path(log_path)
        args = BB + ["worker", "--role", role, "--metrics-port", str(self.metrics_port)]
        if model_dir:
            args += ["--model", model_dir]
        args += extra_args or []
        self._fh = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self._fh, stderr=subprocess.STDOUT,
                                     env=settings_env(settings, **env_extra), preexec_fn=die_with_parent)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 60.0) -> "Worker":
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            if '"partitions assigned"' in self.log_text():
                return self
            time.sleep(0.2)
        raise AssertionError(f"worker not ready after {timeout_s}s:\n{self.log_text()[-3000:]}")

    def wait_for(self, text: str, count: int = 1, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.log_text().count(text) >= count:
                return
            time.sleep(0.2)
        raise AssertionError(f"{text!r} x{count} not logged after {timeout_s}s:\n{self.log_text()[-3000:]}")

    def stop(self, sig: int = 15, timeout_s: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(9)


def simulate(settings: Settings, *args: str, timeout_s: float = 300.0) -> dict:
    import orjson

    r = subprocess.run(BB + ["simulate", *args], env=settings_env(settings), capture_output=True, timeout=timeout_s)
    assert r.returncode == 0, r.stderr.decode()[-2000:] + r.stdout.decode()[-2000:]
    return orjson.loads(r.stdout.decode().strip().splitlines()[-1])


def read_json(settings: Settings, topic: str, expect: int | None = None, idle_timeout_s: float = 2.0,
              timeout_s: float = 120.0) -> list:
    import orjson

    from breeboost.kafka_io import read_topic

    return [orjson.loads(r.value) for r in read_topic(settings, topic, idle_timeout_s, timeout_s=timeout_s,
                                                      expect=expect)]
