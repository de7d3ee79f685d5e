"""An iterator read ahead on a thread of its own: a Bulk Extract file's rows arrive while the pages before them are
planned and written (the download waits on Marketo, the planning on the CPU).

`ReadAhead(items, limit)` pulls up to `limit` items ahead of its reader, in order. The source's exception is raised
to the reader where the item it failed on would have been. `close()` stops the thread, then closes the source (a
generator's `close` must not run while the thread is inside it). Items read ahead and not taken are dropped: the
reader's own position (an export file's byte offset, carried by each row) says where to resume.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

Item = TypeVar("Item")
_END = object()  # the source is exhausted


class ReadAhead(Generic[Item]):
    def __init__(self, items: Iterator[Item], limit: int = 1000, name: str = "read-ahead") -> None:
        self._source = items
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(1, limit))
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._pull, name=name, daemon=True)
        self._thread.start()

    def _pull(self) -> None:
        try:
            for item in self._source:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the reader, raised where this item would have been
            self._put(_Failed(exc))
            return
        self._put(_END)

    def _put(self, item: object) -> bool:
        """Queue an item; False once the reader has closed (then nothing more is pulled)."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Item]:
        return self

    def __next__(self) -> Item:
        if self._done:
            raise StopIteration
        item = self._queue.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, _Failed):
            self._done = True
            raise item.exc
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Stop reading ahead and close the source; safe to call more than once."""
        self._done = True
        self._stop.set()
        self._thread.join()
        close = getattr(self._source, "close", None)
        if close is not None:
            close()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
