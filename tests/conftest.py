"""Shared fixtures: a real Kafka-protocol broker for the whole session, and per-test topic names.

The broker is the embedded Tansu started on a free loopback port, unless ``BREEBOOST_BOOTSTRAP`` names
one already running (for example Apache Kafka from docker-compose).
"""
from __future__ import annotations

import os
import uuid

import pytest

from breeboost.broker import EmbeddedBroker
from breeboost.kafka_io import ensure_topics, wait_for_topics
from breeboost.settings import Settings


@pytest.fixture(autouse=True)
def _restore_logging():
    """Tests that configure logging (CLI mains, log-format tests) must not leave a handler on a stream that
    pytest closes afterwards."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)


@pytest.fixture(scope="session")
def broker_bootstrap(tmp_path_factory):
    external = os.environ.get("BREEBOOST_BOOTSTRAP")
    if external:
        yield external
        return
    log_file = str(tmp_path_factory.mktemp("broker") / "tansu.log")
    with EmbeddedBroker(port=0, create_topics=False, log_file=log_file) as broker:
        yield broker.bootstrap


def fresh_settings(bootstrap: str, **overrides) -> Settings:
    """Settings on ``bootstrap`` with topic names and group id unique to the caller (topics created)."""
    suffix = uuid.uuid4().hex[:8]
    base = Settings.from_env({}, bootstrap=bootstrap, **overrides)
    renamed = {f: f"{getattr(base, f)}-{suffix}" for f in vars(base) if f.startswith("topic_")}
    s = base.replace(group_id=f"breeboost-{suffix}", **renamed)
    ensure_topics(s)
    wait_for_topics(s, s.topics())
    return s


@pytest.fixture
def kafka_settings(broker_bootstrap) -> Settings:
    """Settings pointing at the session broker, with topic names unique to this test (already created)."""
    return fresh_settings(broker_bootstrap)


@pytest.fixture(scope="session")
def paysim_model(tmp_path_factory) -> str:
    """A PaySim model trained once per session on 200k simulated rows (about 10 s); returns its directory."""
    from models.spec import load_spec
    from models.training import TrainConfig, train_model
    from simulator import generate

    d = tmp_path_factory.mktemp("paysim-model") / "model"
    train_model(generate(200_000, seed=101), load_spec(), TrainConfig(seed=101)).save(d)
    return str(d)
