"""Adaptive micro-batching: concurrent requests share one model call, a lone request waits for nothing.

No batching thread: the request that finds the model idle becomes the leader and runs a batch of
everything queued (bounded in rows); the others wait for their result. While the model runs,
arriving requests queue up and form the next batch, so batches grow with the load by themselves.
The leader waits (at most ``max_wait`` seconds) only when it knows more requests are on their
way: ones that have arrived and are still being parsed. At c=1 that is never.
When its own result is in, a leader hands the lead to the oldest waiting request.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from tollgate.prepared import Columns, Outputs


class _Job:
    __slots__ = ("columns", "outputs", "error", "event", "finished", "lead")

    def __init__(self, columns: Columns) -> None:
        self.columns = columns
        self.outputs: Outputs | None = None
        self.error: BaseException | None = None
        self.event = threading.Event()
        self.finished = False
        self.lead = False


class MicroBatcher:
    def __init__(self, run: Callable[[Columns], Outputs], max_rows: int = 256, max_wait: float = 0.001,
                 on_batch: Callable[[int, int], None] | None = None) -> None:
        self._run = run
        self.max_rows = max_rows
        self.max_wait = max_wait
        self._on_batch = on_batch or (lambda requests, rows: None)
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[_Job] = []
        self._busy = False
        self._arriving = 0

    def arrive(self) -> None:
        """A request has arrived and will submit (or `leave`) soon."""
        with self._cond:
            self._arriving += 1

    def leave(self) -> None:
        """An arrived request will not submit (it was refused)."""
        with self._cond:
            self._arriving -= 1
            self._cond.notify_all()

    def submit(self, columns: Columns) -> Outputs:
        """Predict for ``columns`` (after `arrive`), batched with whatever else is waiting."""
        job = _Job(columns)
        with self._cond:
            self._arriving -= 1
            self._pending.append(job)
            leader = not self._busy
            if leader:
                self._busy = True
            else:
                self._cond.notify_all()
        if not leader:
            job.event.wait()
        if not job.finished:   # the leader, from the start or handed the lead
            self._lead(job)
        if job.error is not None:
            raise job.error
        assert job.outputs is not None
        return job.outputs

    def _take(self) -> list[_Job]:
        """Under the lock: the next batch, after a bounded wait for requests still being parsed."""
        deadline = time.monotonic() + self.max_wait
        while self._arriving > 0 and sum(len(j.columns) for j in self._pending) < self.max_rows:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._cond.wait(remaining):
                break
        batch, rows = [], 0
        while self._pending and (not batch or rows + len(self._pending[0].columns) <= self.max_rows):
            job = self._pending.pop(0)
            batch.append(job)
            rows += len(job.columns)
        return batch

    def _lead(self, own: _Job) -> None:
        while not own.finished:
            with self._cond:
                batch = self._take()
            self._execute(batch)
        with self._cond:
            if self._pending:
                successor = self._pending[0]
                successor.lead = True
                successor.event.set()
            else:
                self._busy = False

    def _execute(self, batch: list[_Job]) -> None:
        try:
            outputs = self._run(Columns.concat([job.columns for job in batch]))
            start = 0
            for job in batch:
                end = start + len(job.columns)
                job.outputs = Outputs(outputs.predictions[start:end],
                                      None if outputs.probabilities is None else outputs.probabilities[start:end])
                start = end
        except BaseException as exc:   # every waiter gets the error; none hangs
            for job in batch:
                job.error = exc
        finally:
            self._on_batch(len(batch), sum(len(job.columns) for job in batch))
            for job in batch:
                job.finished = True
                job.event.set()
