"""``fetch_max_wait_ms`` reaches the worker's Faust consumers and the lifecycle's re-read consumer (issue 20:
20 ms, hard-coded before, left a restarted Tansu on S3 answering the worker's fetches with nothing)."""
from __future__ import annotations

import asyncio

from breeboost.settings import Settings
from streams.faust_config import FETCH_MAX_WAIT_MS, faust_app_kwargs


def test_setting_reaches_faust_consumers_and_can_change():
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    assert Settings.from_env({}).fetch_max_wait_ms == FETCH_MAX_WAIT_MS == 100
    assert Settings.from_env({"BREEBOOST_FETCH_MAX_WAIT_MS": "345"}).fetch_max_wait_ms == 345
    faust_app_kwargs(Settings.from_env({}, fetch_max_wait_ms=345))
    assert AIOKafkaConsumerThread._create_worker_consumer._breeboost_fetch_wait == 345
    faust_app_kwargs(Settings.from_env({}))
    assert AIOKafkaConsumerThread._create_worker_consumer._breeboost_fetch_wait == 100


def test_reread_consumer_uses_the_setting(monkeypatch):
    import aiokafka

    from streams import reread

    seen = {}

    class Fake:
        def __init__(self, **kw):
            seen.update(kw)

        async def start(self):
            return None

        async def stop(self):
            return None

    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", Fake)

    async def run():
        async with reread.group_consumer(Settings.from_env({}, fetch_max_wait_ms=123), "g", 1.0):
            pass

    asyncio.run(run())
    assert seen["fetch_max_wait_ms"] == 123 and seen["group_id"] == "g"
