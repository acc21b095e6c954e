"""Training steps on a worker thread, so scoring never waits for one.

A mini-batch step costs about a millisecond (one compiled TensorFlow call, see
:mod:`fraudstream.models.learner`), far more than scoring a whole poll (~50 µs in numpy). Done inline, every
batch that completes a mini-batch holds its transactions' scores back by a step. The
Kafka daemon therefore hands joined rows to :class:`BackgroundLearning`; TensorFlow
releases the GIL while it computes, so the step runs beside the next polls.

What keeps this exact:

- jobs run one at a time, in submission order, so the learner sees rows in the same order
  as inline learning would;
- the scorer switches to new weights only after the guard accepted them
  (:meth:`fraudstream.models.learner.OnlineLearner.publish`), in one reference swap;
- anything that reads or replaces the learner's whole state (a checkpoint, a drift
  adaptation, a promotion or rollback) first calls :meth:`BackgroundLearning.drain`: the
  queue is empty and the worker idle until the caller submits again, and only the loop
  submits. A checkpoint therefore holds exactly the rows joined before its offsets;
- a failed job is re-raised in the loop by the next ``submit``/``drain``: the daemon stops
  and restarts from its last checkpoint instead of learning on from an unknown state.

The file replay uses the thread too, in its exact mode (``Pipeline.learn_in_background``):
a batch is scored only after the steps before it, so its scores are those of inline learning.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from typing import Any, Callable

from fraudstream.daemon.exceptions import LearningFailed

log = logging.getLogger(__name__)

#: Jobs waiting at most; a loop that outruns the learner then waits (back-pressure) rather
#: than holding an unbounded backlog of rows that a crash would have to replay anyway.
MAX_QUEUED_JOBS = 256


class BackgroundLearning:
    """Runs submitted jobs on one worker thread; their results are taken by the loop."""

    def __init__(self, max_jobs: int = MAX_QUEUED_JOBS, name: str = "fraudstream-learner"):
        self._jobs: queue.Queue[tuple[Callable[..., Any], tuple] | None] = queue.Queue(maxsize=max_jobs)
        self._results: deque[Any] = deque()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[..., Any], *args: Any) -> None:
        """Queue ``job(*args)``; its return value comes back through :meth:`take_results`."""
        self._raise_failure()
        self._jobs.put((job, args))

    def drain(self) -> None:
        """Wait until every submitted job has run."""
        self._jobs.join()
        self._raise_failure()

    def unfinished(self) -> int:
        """Jobs submitted and not finished yet (queued or running)."""
        return self._jobs.unfinished_tasks

    def take_results(self) -> list[Any]:
        """Results of the jobs finished since the last call, in submission order."""
        out = []
        while self._results:
            out.append(self._results.popleft())
        return out

    def close(self, timeout_s: float = 60.0) -> None:
        """Finish the queued jobs, then stop the worker."""
        self._jobs.put(None)
        self._thread.join(timeout_s)

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise LearningFailed(f"background learning failed: {self._error!r}") from self._error

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            try:
                if item is None:
                    return
                if self._error is not None:
                    continue  # after a failure nothing more is learned; the loop will stop
                job, args = item
                self._results.append(job(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the loop's thread
                log.exception("background learning job failed")
                self._error = exc
            finally:
                self._jobs.task_done()
