"""Pages in flight: a full sync overlaps one page's API waits with the next page's reads and the last page's state.

    caller thread     start(page k+1)  ...  start(page k+2)
    finishers (pool)  finish(page k): the Bulk Import's end, ids, the other writes
    committer (one)   commit(pages ..k-1): links, snapshots, errors, then their checkpoint, strictly in page order

A page commits only after every page before it committed, so a checkpoint never runs ahead of a link that is not
durable. Consecutive pages already finished when the committer gets to them commit together (up to `merge`): one
save spreads over fewer, fuller transactions, and one checkpoint covers them. Once anything fails, no later page
commits (its writes are idempotent: the page is done again from the last checkpoint); the pages before the failure
still commit, then the first failure is raised. At most `depth` pages are in flight, which bounds memory and
Marketo's import queue (10 jobs).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

Page = TypeVar("Page")


class PagePipeline(Generic[Page]):
    def __init__(
        self,
        finish: Callable[[Page], None],
        commit: Callable[[list[Page]], None],
        depth: int = 3,
        merge: int = 1,
    ) -> None:
        self._finish = finish
        self._commit = commit
        self._merge = max(1, merge)
        self._slots = threading.BoundedSemaphore(depth)
        self._finishers = ThreadPoolExecutor(depth, thread_name_prefix="page-finish")
        self._pending: deque[tuple[Page, Future[None]]] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._failure: BaseException | None = None
        self._committer = threading.Thread(target=self._commits, name="page-commit", daemon=True)
        self._committer.start()

    @property
    def failed(self) -> bool:
        return self._failure is not None

    def submit(self, page: Page) -> None:
        """Hand over a started page; blocks while `depth` pages are in flight. Raises the first failure so far."""
        self._slots.acquire()
        if self._failure is not None:
            self._slots.release()
            self.close()
        finished = self._finishers.submit(self._finish, page)
        with self._ready:
            self._pending.append((page, finished))
            self._ready.notify()
        finished.add_done_callback(self._wake)

    def _wake(self, _finished: Future[None]) -> None:
        with self._ready:
            self._ready.notify()

    def _commits(self) -> None:
        """The committer: the oldest page once it finished, with the finished pages right behind it."""
        while True:
            with self._ready:
                while not self._pending and not self._closed:
                    self._ready.wait()
                if not self._pending:
                    return
                _, head = self._pending[0]
            error = head.exception()  # waits for the oldest page to finish
            with self._ready:
                batch = [self._pending.popleft()]
                while (
                    error is None
                    and self._pending
                    and len(batch) < self._merge
                    and self._pending[0][1].done()
                    and self._pending[0][1].exception() is None
                ):
                    batch.append(self._pending.popleft())
            if error is None and self._failure is None:
                try:
                    self._commit([page for page, _ in batch])
                except BaseException as exc:  # recorded, raised on the caller's thread by submit or close
                    error = exc
            if error is not None and self._failure is None:
                self._failure = error
            for _ in batch:
                self._slots.release()

    def close(self) -> None:
        """Wait for every page in flight to commit (or be dropped after a failure); raise the first failure."""
        self._stop()
        if self._failure is not None:
            raise self._failure

    def _stop(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        self._committer.join()
        self._finishers.shutdown(wait=True)

    def __enter__(self) -> PagePipeline[Page]:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:  # the caller failed: let the pages before it commit, keep the caller's error
            self._stop()
            return
        self.close()
