"""ReadAhead: an iterator pulled ahead on its own thread, in order, its source's failure raised in place."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from sync.engine.read_ahead import ReadAhead


def test_items_come_in_order_and_the_source_is_read_ahead_up_to_the_limit() -> None:
    pulled: list[int] = []
    ahead = threading.Event()

    def source() -> Iterator[int]:
        for i in range(10):
            pulled.append(i)
            if len(pulled) == 5:
                ahead.set()
            yield i

    reader = ReadAhead(source(), limit=3)
    assert next(reader) == 0
    assert ahead.wait(5)  # pulled while nobody asked: the item taken, three queued, one in the thread's hand
    time.sleep(0.3)
    assert pulled == [0, 1, 2, 3, 4]  # and no further: the queue is full
    assert list(reader) == list(range(1, 10))
    assert list(reader) == []  # exhausted stays exhausted


def test_the_sources_failure_is_raised_after_the_items_before_it() -> None:
    def source() -> Iterator[str]:
        yield "a"
        yield "b"
        raise ConnectionError("the file's connection dropped")

    reader = ReadAhead(source(), limit=10)
    assert next(reader) == "a" and next(reader) == "b"
    with pytest.raises(ConnectionError, match="connection dropped"):
        next(reader)
    with pytest.raises(StopIteration):
        next(reader)


def test_close_stops_the_thread_and_closes_the_source_mid_way() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield from range(1_000_000)
        finally:
            closed.set()

    reader = ReadAhead(source(), limit=5)
    assert next(reader) == 0
    reader.close()
    assert closed.is_set()  # the generator was closed (its finally ran) once the thread had stopped
    assert not reader._thread.is_alive()
    with pytest.raises(StopIteration):
        next(reader)
    reader.close()  # twice is fine
