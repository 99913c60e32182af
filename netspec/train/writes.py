"""The run directory's writes after each epoch, done by one background thread while the next epoch trains.

An epoch's checkpoint files, metrics and plots are written with checkpoint.py's protocol unchanged (the
same files, the same order, every fsync), only not on the training thread: on the development machine
those fsyncs took 20-40 ms an epoch, 6-7 % of a LeNet-5/digits run, and the disk waits cost the loop
nothing when they overlap the next epoch's steps.

What the runner promises stays true:
- order: one thread runs the jobs in the order they were given, so the directory goes through exactly
  the states it went through before (a kill at any instant leaves a resumable run, test_run_safety);
- at most one epoch's write in flight: `submit` first waits for the one before, so memory holds at most
  one extra serialized checkpoint and a slow disk slows the run rather than queueing epochs;
- nothing is lost at the end: the run waits for the last write before it returns, reports an end or
  releases its directory, and the thread is not a daemon, so even an interrupted interpreter finishes
  the write in flight before it exits;
- a failure (a full disk) is raised on the training thread, at the next epoch's checkpoint or at the
  end, before anything more is written (the rest of the failed job is not run: checkpoint.py's order).
A process killed while a write is in flight resumes from the checkpoint before it, as one killed just
before the write would.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

Job = Callable[[], None]


class BackgroundWrites:
    """Jobs run in order by one writer thread (started on the first job), at most one at a time queued."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None

    def submit(self, job: Job) -> None:
        """Run `job` after the writes before it, which this waits for (raising their failure)."""
        self.wait()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="netspec-run-writes", daemon=False)
            self._thread.start()
        self._jobs.put(job)

    def wait(self) -> None:
        """Block until every job given is done; raise the first failure among them."""
        if self._thread is not None:
            self._jobs.join()
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def close(self) -> None:
        """Finish the jobs given and end the thread. A failure not yet raised is dropped: close runs
        when the run ends, on its way out with the error that ends it or after `wait` has raised."""
        if self._thread is None:
            return
        self._jobs.put(None)
        self._thread.join()
        self._thread = None

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                job()
            except BaseException as exc:  # raised on the training thread (wait)
                self._failure = exc
            finally:
                self._jobs.task_done()
