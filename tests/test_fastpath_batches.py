"""The fetch-batch path (streams.fastpath) without a broker: the sink's back-pressure and flow control, and
the consumer's bookkeeping (what a fetch hands over, what an ack lets Faust commit, what a rebalance drops).
The worker on the real broker runs on this path in the bench (bench.runner pipeline)."""
from __future__ import annotations

import asyncio

import pytest

from streams.fastpath import BatchConsumer, BatchSink, BatchTransport, FetchedRecord, fetch_batches, supported


def _record(partition: int, offset: int, topic: str = "tx") -> object:
    from aiokafka.structs import ConsumerRecord

    return ConsumerRecord(topic, partition, offset, 1_700_000_000_000 + offset, 0, b"k", b'{"a": 1}', None, 1, 8, ())


def _app_and_sink(topic: str = "tx") -> tuple[object, BatchSink]:
    import faust

    app = faust.App(f"fastpath-test-{id(object())}", broker="kafka://127.0.0.1:1", web_enabled=False,
                    store="memory://")
    return app, fetch_batches(app, topic)


def test_the_installed_faust_supports_the_batch_path():
    assert supported() == []


def test_sink_keeps_order_and_holds_the_fetch_loop_when_full():
    async def run() -> list:
        sink = BatchSink(maxsize=1)
        assert await sink.put("a", lambda: True)
        blocked = asyncio.ensure_future(sink.put("b", lambda: True))
        await asyncio.sleep(0.01)
        assert not blocked.done()               # back-pressure: the fetch loop waits for the agent
        first = await sink.get()
        assert await blocked
        return [first, await sink.get()]

    assert asyncio.run(run()) == ["a", "b"]


def test_a_batch_waiting_when_the_flow_stops_is_dropped():
    async def run() -> tuple:
        sink = BatchSink(maxsize=1)
        active = {"on": True}
        await sink.put("a", lambda: active["on"])
        waiting = asyncio.ensure_future(sink.put("b", lambda: active["on"]))
        await asyncio.sleep(0.01)
        active["on"] = False                     # Faust stops the flow, then clears the queues
        sink.clear()
        return await waiting, len(sink)

    assert asyncio.run(run()) == (False, 0)


def test_constructor_rejects_an_empty_sink():
    with pytest.raises(ValueError, match="maxsize"):
        BatchSink(maxsize=0)


def test_the_app_gets_the_batch_transport_and_consumer():
    app, sink = _app_and_sink()
    assert isinstance(app.transport, BatchTransport) and app.transport.sinks == {"tx": sink}
    assert isinstance(app.consumer, BatchConsumer)
    other = fetch_batches(app, "other")          # the consumer reads the transport's sinks at each fetch
    assert app.transport.sinks == {"tx": sink, "other": other}


def test_an_app_whose_plain_consumer_exists_cannot_take_batches():
    import faust

    app = faust.App(f"fastpath-test-{id(object())}", broker="kafka://127.0.0.1:1", web_enabled=False)
    assert not isinstance(app.consumer, BatchConsumer)
    with pytest.raises(RuntimeError, match="consumer"):
        fetch_batches(app, "tx")


def test_a_fetch_becomes_one_batch_and_its_ack_lets_faust_commit_its_ends():
    from faust.types import TP

    app, sink = _app_and_sink()
    consumer = app.consumer
    tp0, tp1, other = TP("tx", 0), TP("tx", 1), TP("labels", 0)

    async def run() -> None:
        records = {tp0: [_record(0, o) for o in range(5, 8)], tp1: [_record(1, 0)], other: [_record(0, 3, "labels")]}
        await consumer._hand_over(sink, {tp: records.pop(tp) for tp in (tp0, tp1)}, None)
        assert list(records) == [other]          # the other topic goes on through Faust's own path
        batch = await sink.get()
        assert [(m.partition, m.offset) for m in batch.messages] == [(0, 5), (0, 6), (0, 7), (1, 0)]
        assert isinstance(batch.messages[0], FetchedRecord) and batch.messages[0].timestamp == 1_700_000_000.005
        assert batch.partitions == {0, 1} and batch in consumer.unacked
        assert consumer._read_offset[tp0] == 7   # Faust's read position: the last record handed over
        assert consumer._new_offset(tp0) is None  # nothing acked: nothing to commit
        batch.ack()
        batch.ack()                               # idempotent
        assert batch not in consumer.unacked
        assert consumer._new_offset(tp0) == 8 and consumer._new_offset(tp1) == 1
        assert consumer._new_offset(tp0) is None  # taken by that commit

    asyncio.run(run())


def test_records_read_already_are_not_handed_over_again_and_old_generations_commit_nothing():
    from faust.types import TP

    app, sink = _app_and_sink()
    consumer = app.consumer
    tp = TP("tx", 0)

    async def run() -> None:
        consumer._read_offset[tp] = 6            # after a seek back: 6 is the last record read
        await consumer._hand_over(sink, {tp: [_record(0, o) for o in range(4, 9)]}, None)
        batch = await sink.get()
        assert [m.offset for m in batch.messages] == [6, 7, 8]   # Faust keeps offset >= its read offset
        await consumer._hand_over(sink, {tp: [_record(0, 9)]}, {TP("tx", 1)})   # paused since the fetch
        assert len(sink) == 0
        batch.generation -= 1                     # fetched before a rebalance
        batch.ack()
        assert consumer._new_offset(tp) is None and batch not in consumer.unacked

    asyncio.run(run())


def test_revocation_forgets_the_acked_ends_of_revoked_partitions():
    from faust.types import TP

    app, sink = _app_and_sink()
    consumer = app.consumer
    tp = TP("tx", 0)

    async def run() -> None:
        await consumer._hand_over(sink, {tp: [_record(0, 0)]}, None)
        (await sink.get()).ack()
        await consumer.on_partitions_revoked({tp})
        assert consumer._new_offset(tp) is None

    asyncio.run(run())
