"""Pages in flight: a full sync overlaps one page's API waits with the next page's reads and the last page's state.

    caller thread     start(page k+1)  ...  start(page k+2)
    finishers (pool)  finish(page k): the Bulk Import's end, ids, the other writes
    committer (one)   commit(page k-1): links, snapshots, errors, then its checkpoint, strictly in page order

A page commits only after every page before it committed, so a checkpoint never runs ahead of a link that is not
durable. Once anything fails, no later page commits (its writes are idempotent: the page is done again from the last
checkpoint); the pages before the failure still commit, then the first failure is raised. At most `depth` pages are
in flight, which bounds memory and Marketo's import queue (10 jobs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

Page = TypeVar("Page")


class PagePipeline(Generic[Page]):
    def __init__(self, finish: Callable[[Page], None], commit: Callable[[Page], None], depth: int = 3) -> None:
        self._finish = finish
        self._commit = commit
        self._slots = threading.BoundedSemaphore(depth)
        self._finishers = ThreadPoolExecutor(depth, thread_name_prefix="page-finish")
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="page-commit")
        self._failure: BaseException | None = None
        self._lock = threading.Lock()
        self._committed: list[Future[None]] = []

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
        self._committed.append(self._committer.submit(self._commit_after, page, finished))

    def _commit_after(self, page: Page, finished: Future[None]) -> None:
        try:
            finished.result()
            if self._failure is None:
                self._commit(page)
        except BaseException as exc:  # recorded, raised on the caller's thread by submit or close
            with self._lock:
                self._failure = self._failure or exc
        finally:
            self._slots.release()

    def close(self) -> None:
        """Wait for every page in flight to commit (or be dropped after a failure); raise the first failure."""
        for future in self._committed:
            future.result()
        self._finishers.shutdown(wait=True)
        self._committer.shutdown(wait=True)
        if self._failure is not None:
            raise self._failure

    def __enter__(self) -> PagePipeline[Page]:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:  # the caller failed: let the pages before it commit, keep the caller's error
            for future in self._committed:
                future.result()
            self._finishers.shutdown(wait=True)
            self._committer.shutdown(wait=True)
            return
        self.close()
