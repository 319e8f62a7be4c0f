"""Dynamic batching: concurrent embedding requests coalesced into one model call.

Requests from ``/v1/embeddings``, ``/v1/search`` and ``/v1/documents`` put their texts on one bounded queue.
A single worker takes whatever is waiting (up to ``max_batch`` texts and ``max_tokens`` estimated tokens),
waits at most ``max_wait_ms`` for more when the batch is not full, and runs the model once, in a thread, so
the event loop keeps accepting requests while the model works, and the next batch fills meanwhile. When
more than ``max_queue`` texts wait, new requests are refused at once (``QueueFullError``: the server
answers 503 with ``Retry-After``) instead of the queue growing without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..embedders.base import Embedder
from ..errors import RagstoreError

Kind = Literal["query", "passage"]


class QueueFullError(RagstoreError):
    """Too many texts wait for the model; retry after ``retry_after`` seconds."""

    def __init__(self, waiting: int, limit: int, retry_after: int = 1) -> None:
        super().__init__(f"{waiting} texts are waiting for the model (limit {limit}); retry shortly")
        self.retry_after = retry_after


def estimate_tokens(text: str) -> int:
    """A cheap token estimate for the batch budget: ~4 characters per token, at least one per word."""
    return max(len(text) // 4, len(text.split()), 1)


@dataclass
class _Job:
    texts: list[str]
    kind: Kind
    future: asyncio.Future[np.ndarray]
    tokens: int = field(default=0)


class Batcher:
    """One model, many concurrent callers; ``on_batch(size)`` sees every model call (for metrics)."""

    def __init__(
        self,
        embedder: Embedder,
        *,
        max_batch: int = 64,
        max_tokens: int = 16_384,
        max_wait_ms: float = 2.0,
        max_queue: int = 4096,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.embedder = embedder
        self.max_batch, self.max_tokens, self.max_queue = max_batch, max_tokens, max_queue
        self.max_wait = max_wait_ms / 1000.0
        self.on_batch = on_batch
        self.waiting = 0  # texts queued or in the running batch
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragstore-model")
        self._worker: asyncio.Task[None] | None = None
        self._held: _Job | None = None  # taken from the queue but over this batch's budget

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        self._pool.shutdown(wait=True)

    async def embed(self, texts: list[str], kind: Kind) -> np.ndarray:
        """The vectors of ``texts`` (query or passage embeddings), computed in some batch."""
        if not texts:
            return np.zeros((0, self.embedder.dim), dtype=np.float32)
        if self.waiting + len(texts) > self.max_queue:
            raise QueueFullError(self.waiting, self.max_queue)
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        job = _Job(list(texts), kind, future, sum(estimate_tokens(t) for t in texts))
        self.waiting += len(texts)
        self._queue.put_nowait(job)
        try:
            return await future
        finally:
            self.waiting -= len(texts)

    def _fits(self, jobs: list[_Job], job: _Job) -> bool:
        n = sum(len(j.texts) for j in jobs)
        tokens = sum(j.tokens for j in jobs)
        return n + len(job.texts) <= self.max_batch and tokens + job.tokens <= self.max_tokens

    async def _next_batch(self) -> list[_Job]:
        first = self._held or await self._queue.get()
        self._held = None
        jobs = [first]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while True:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if not self._fits(jobs, job):
                self._held = job  # starts the next batch
                break
            jobs.append(job)
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._next_batch()
            for kind in ("query", "passage"):
                group = [j for j in jobs if j.kind == kind and not j.future.cancelled()]
                if not group:
                    continue
                texts = [t for j in group for t in j.texts]
                fn = self.embedder.embed_query if kind == "query" else self.embedder.embed_documents
                if self.on_batch is not None:
                    self.on_batch(len(texts))
                try:
                    vectors = await loop.run_in_executor(self._pool, fn, texts)
                except Exception as exc:
                    if len(group) == 1:
                        if not group[0].future.done():
                            group[0].future.set_exception(exc)
                        continue
                    # a failure fails only the request that caused it: the others are retried one by one
                    for j in group:
                        await self._alone(j, fn)
                    continue
                start = 0
                for j in group:
                    if not j.future.done():
                        j.future.set_result(np.asarray(vectors[start : start + len(j.texts)], dtype=np.float32))
                    start += len(j.texts)

    async def _alone(self, job: _Job, fn: Callable[[list[str]], np.ndarray]) -> None:
        """One request's texts in a model call of their own, after its shared batch failed."""
        if job.future.done():
            return
        if self.on_batch is not None:
            self.on_batch(len(job.texts))
        try:
            vectors = await asyncio.get_running_loop().run_in_executor(self._pool, fn, job.texts)
        except Exception as exc:
            if not job.future.done():
                job.future.set_exception(exc)
            return
        if not job.future.done():
            job.future.set_result(np.asarray(vectors, dtype=np.float32))


__all__ = ["Batcher", "Kind", "QueueFullError", "estimate_tokens"]
