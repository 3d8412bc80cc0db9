"""Requests that arrive together share a forward pass: up to max_batch videos, waiting at most `wait_s`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor

import numpy as np

from autox_video.serving import metrics


class Batcher:
    """submit(clips) -> probabilities; one forward pass at a time, in `executor` (off the event loop)."""

    def __init__(
        self, run: Callable[[np.ndarray], np.ndarray], executor: Executor, *, max_batch: int, wait_s: float
    ) -> None:
        self.run = run
        self.executor = executor
        self.max_batch = max(1, max_batch)
        self.wait_s = max(0.0, wait_s)
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[np.ndarray]]] | None = None
        self._task: asyncio.Task[None] | None = None

    async def submit(self, clips: np.ndarray) -> np.ndarray:
        """One video's probabilities (shape [classes])."""
        if self._queue is None:  # created on the server's own loop
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._loop())
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put((clips, future))
        return await future

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.wait_s
            while len(batch) < self.max_batch:
                left = deadline - loop.time()
                try:
                    batch.append(
                        self._queue.get_nowait() if left <= 0 else await asyncio.wait_for(self._queue.get(), left)
                    )
                except (asyncio.QueueEmpty, TimeoutError):
                    break
            metrics.BATCH_SIZE.observe(len(batch))
            try:
                probs = await loop.run_in_executor(self.executor, self.run, np.stack([clips for clips, _ in batch]))
            except Exception as err:  # the model failed: every waiting request gets the error (500)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            for (_, future), p in zip(batch, probs, strict=True):
                if not future.done():  # a client that went away cancelled its future
                    future.set_result(p)
