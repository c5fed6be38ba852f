"""How the Data pane's views run their slow work: each in a Textual worker of its own.

There is no registry of cancel events beside Textual's workers: a worker's ``cancelled_event``
is the ``cancel`` the data tools (validate, count, convert, generate) look at, so Textual's own
cancellation reaches them, whoever asks for it: the x key, a newer run of the same task
(``exclusive``), or the view going away (Textual cancels a widget's workers when it unmounts).
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
from typing import Callable, Optional, TypeVar

from textual.worker import Worker, WorkerState

from tunedeck.core.errors import BadInput

from .messages import TaskProgressed, TaskStateChanged
from .task_line import TaskLine

BACKGROUND_NICE = 10

T = TypeVar("T")


def background_priority() -> None:
    """Lower the calling thread's priority, and that of the processes it starts.

    Validating a big file takes every core (worker processes), right when the user starts to
    look at its rows; at a lower priority it leaves the app's redraws their share. On Linux a
    thread has its own nice value, which the processes it forks inherit; elsewhere the call
    would lower the whole app, so it is not made.
    """
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
        except OSError:
            pass  # not allowed here: the check runs at the app's priority


def in_own_thread(fn: Callable[..., T], *args, **kwargs) -> T:
    """``fn(*args, **kwargs)`` run in a new thread that frees its MLX streams when done; its
    result, or its exception raised here.

    MLX keeps streams per thread, and they must be freed by that thread before the interpreter
    shuts down, or the app aborts as it exits ("terminate called without an active
    exception"). Loading a tokenizer imports MLX; rendering, counting and generating go through
    mlx-lm. They cannot be freed in the worker's own thread: Textual runs thread workers in
    asyncio's pool, whose threads are reused, and a pool thread whose streams were freed keeps
    them as its defaults, so the next worker there fails with "There is no Stream(cpu, N) in
    current thread". The context is copied, so ``get_current_worker`` works inside.
    """
    outcome: list = []

    def run() -> None:
        try:
            outcome.append((True, fn(*args, **kwargs)))
        except BaseException as exc:  # handed to the calling thread, which raises it
            outcome.append((False, exc))
        finally:
            mx = sys.modules.get("mlx.core")
            if mx is not None:
                mx.clear_streams()

    thread = threading.Thread(target=contextvars.copy_context().run, args=(run,),
                              name=f"mlx-{getattr(fn, '__name__', 'work')}", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def worker_error(worker: Worker) -> str:
    return f"{type(worker.error).__name__}: {worker.error}"


class TaskView:
    """A view (a widget) with one background task of its own and a TaskLine that shows it.

    The subclass starts its task with a ``@work(thread=True, exclusive=True)`` method and
    keeps the worker it returns in ``worker``; the reports of that worker are the ones shown.
    """

    worker: Optional[Worker] = None

    @property
    def task_line(self) -> TaskLine:
        return self.query_one(TaskLine)  # type: ignore[attr-defined]

    @property
    def task_running(self) -> bool:
        """The task runs and has not been asked to stop."""
        worker = self.worker
        return worker is not None and worker.is_running and not worker.is_cancelled

    def cancel_task(self) -> None:
        if self.worker is not None:
            self.worker.cancel()

    def reporter(self, worker: Worker) -> Callable[[str, Optional[float]], None]:
        """The ``progress`` callback for the data tools, called in ``worker``'s thread."""
        def report(label: str, fraction: Optional[float]) -> None:
            self.post_message(TaskProgressed(worker, label, fraction))  # type: ignore[attr-defined]
        return report

    def ends_here(self, message) -> bool:
        """Whether the last report of a worker (``message``) goes no further than this view:
        that of a worker replaced since, ignored, or a failure (its ``error``), said on the
        task line. The task is over from now, not from when Textual hears the thread end:
        the keys shown must not offer to cancel what has reported its outcome already.
        """
        if message.worker is not self.worker:
            message.stop()
            return True
        self.worker = None
        self.post_message(TaskStateChanged())  # type: ignore[attr-defined]
        if getattr(message, "error", None):
            message.stop()
            self.task_line.finish(message.error, "failed")
            return True
        return False

    def on_task_progressed(self, message: TaskProgressed) -> None:
        if message.worker is self.worker and self.task_running:
            self.task_line.progress(message.label, message.fraction)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is self.worker and event.state == WorkerState.ERROR:
            # An unexpected failure: the view says so and stops waiting for a report.
            self.task_line.finish(worker_error(event.worker), "failed")
        # A worker replaced or forgotten too: the keys shown may have counted it as running.
        self.post_message(TaskStateChanged())  # type: ignore[attr-defined]

    def request_to_run(self, base):
        """The form's request (the subclass's ``request``), or None when its task runs already
        or the form is wrong, and then its task line says why."""
        if self.task_running:
            return None
        try:
            return self.request(base)  # type: ignore[attr-defined]
        except BadInput as exc:
            self.task_line.finish(str(exc), "failed")
            return None
