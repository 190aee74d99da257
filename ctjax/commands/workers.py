"""Worker processes for `ctjax eval`: one per core, ended promptly by Ctrl-C or parent death.

`run_pool(tasks, cores, run_task, on_event)` starts one spawned process per core (each calls
`ctjax.runtime.configure(core=k)` first, so it is pinned and single-threaded), feeds them the
tasks through a queue and reports each task's outcome to `on_event` in the parent as it
arrives. What it guarantees, and why (`concurrent.futures.ProcessPoolExecutor` with a
`multiprocessing.Manager` did neither: Ctrl-C waited for every queued task, and a killed
parent left the workers and the manager process running for ever):

* Ctrl-C: workers ignore SIGINT; the parent gets it, stops handing out tasks and ends the
  workers (SIGTERM, which a worker turns into a normal exit so an atomic write in progress
  removes its temporary file; SIGKILL after a grace period), then re-raises
  `KeyboardInterrupt`. Results already written stay (every write is atomic).
* Parent death (even `kill -9`): each worker asks Linux to SIGKILL it when its parent dies
  (`prctl(PR_SET_PDEATHSIG)`) and, everywhere, a watchdog thread exits the worker once its
  parent process id changes. No manager process is used.
* A worker that dies (crash, out of memory) fails the task it was running, with its exit
  code; the others go on. A task that raises is reported with its message; the others go on.

Progress inside a task: the task calls `report_progress(n)` (n units, e.g. frames, done so
far); the parent receives `on_event(i, "progress", n)`, at most every `PROGRESS_SECONDS` per
worker (the last value before the task ends may be skipped: "done" follows). Outside a
worker (a task run in the calling process) `report_progress` does nothing.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from multiprocessing import connection
from typing import Any, Callable

PR_SET_PDEATHSIG = 1
GRACE_SECONDS = 3.0
PROGRESS_SECONDS = 0.25

# In a worker: its pipe to the parent, the index of the task it runs, when it last reported.
_TASK: dict = {"events": None, "index": None, "sent": 0.0}


def report_progress(done: int) -> None:
    """From inside a task: tells the parent that `done` units of it are finished.

    Sends at most one message every `PROGRESS_SECONDS`; a no-op outside a worker process.
    """
    events = _TASK["events"]
    if events is None:
        return
    now = time.monotonic()
    if now - _TASK["sent"] < PROGRESS_SECONDS:
        return
    _TASK["sent"] = now
    events.send((_TASK["index"], "progress", int(done)))


def _follow_parent(parent_pid: int) -> None:
    """Ends this process when `parent_pid` dies (prctl on Linux, plus a watchdog thread)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watch():
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _terminate(signum, frame):
    raise SystemExit(128 + signum)  # unwinds: atomic writes remove their temporary files


def _worker_main(core: int, parent_pid: int, run_task: Callable, initializer: Callable | None,
                 tasks, events) -> None:
    """A worker: pins itself, then runs `(index, args)` tasks until it reads None.

    `events` is this worker's own pipe to the parent; `send` writes synchronously, so the
    parent knows which task a worker was running even if it dies the next instant.
    """
    _follow_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, _terminate)
    if initializer is not None:
        initializer(core)
    _TASK["events"] = events
    for index, args in iter(tasks.get, None):
        _TASK["index"], _TASK["sent"] = index, time.monotonic()
        events.send((index, "start", None))
        try:
            events.send((index, "done", run_task(*args)))
        except Exception as e:  # reported to the parent, which names the task
            events.send((index, "failed", f"{type(e).__name__}: {' '.join(str(e).split())}"))
    # No task left: the parent's SIGTERM may now arrive during the interpreter's exit (jax's
    # atexit clean-up), where raising would print a traceback; die quietly instead.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_pool(tasks: list[tuple], cores: list[int], run_task: Callable,
             on_event: Callable[[int, str, Any], None], *,
             initializer: Callable[[int], None] | None = None) -> None:
    """Runs `run_task(*tasks[i])` for every i in one spawned worker per core.

    Args:
      tasks: argument tuples (picklable).
      cores: one worker per entry, which `initializer(core)` receives in the worker.
      run_task: a module-level function (picklable); its return value goes to `on_event`.
      on_event: called in the parent as `on_event(i, "done", value)` or
        `on_event(i, "failed", message)` (the task raised, or its worker died), and
        `on_event(i, "progress", n)` while a task that calls `report_progress` runs.
      initializer: called once in each worker before its first task.

    Raises:
      KeyboardInterrupt: after the workers were ended (Ctrl-C in the parent).
    """
    ctx = multiprocessing.get_context("spawn")
    task_queue = ctx.Queue()
    for i, args in enumerate(tasks):
        task_queue.put((i, args))
    for _ in cores:
        task_queue.put(None)
    live = {}  # process -> the parent's end of its pipe
    try:
        for core in cores:
            reader, writer = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_worker_main, daemon=True, name=f"ctjax-worker-{core}",
                               args=(core, os.getpid(), run_task, initializer, task_queue,
                                     writer))
            proc.start()
            writer.close()
            live[proc] = reader
        _serve(live, set(range(len(tasks))), on_event)
    finally:
        _end(list(live))
        task_queue.cancel_join_thread()  # tasks never taken must not block our exit


def _serve(live: dict, pending: set, on_event) -> None:
    """Relays the workers' events until every task is done or failed."""
    running: dict = {}  # process -> index of the task it runs
    while pending:
        waitables = list(live.values()) + [p.sentinel for p in live]
        ready = set(connection.wait(waitables, timeout=1.0))
        for proc, reader in list(live.items()):
            if reader in ready or proc.sentinel in ready:
                _drain(proc, reader, running, pending, on_event)
            if proc.sentinel in ready:  # the worker ended: its last events were read above
                proc.join(5.0)  # its files close a moment before its exit code is reapable
                index = running.pop(proc, None)
                if index is not None and index in pending:
                    pending.discard(index)
                    on_event(index, "failed", "its worker process died (exit code "
                                              f"{proc.exitcode})")
                del live[proc]
        if pending and not live:
            for index in sorted(pending):
                on_event(index, "failed", "no worker process left to run it")
            pending.clear()


def _drain(proc, reader, running, pending, on_event) -> None:
    while True:
        try:
            if not reader.poll():
                return
            index, kind, payload = reader.recv()
        except (EOFError, OSError):
            return
        if kind == "start":
            running[proc] = index
        elif kind == "progress":
            if index in pending:
                on_event(index, kind, payload)
        elif index in pending:
            running.pop(proc, None)
            pending.discard(index)
            on_event(index, kind, payload)


def _end(procs) -> None:
    """Ends the workers: SIGTERM, then SIGKILL after `GRACE_SECONDS`."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + GRACE_SECONDS
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()
