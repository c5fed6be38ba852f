"""The chunks of a big JSON Lines file checked in worker processes, merged in file order.

One core parsing JSON in Python does not reach the throughput budget (about 90 MB per
CPU-second; see bench/bench_data.py), so past the first chunk validate.py hands the rest of a
big file to these workers.
"""

from __future__ import annotations

import json
import threading
from typing import List, Optional

from .file_report import MAX_KEPT_PROBLEMS, FileReport
from .jsonl_check import scan_range, chunk_from_json


def run_workers(report: FileReport, pending, ref, ref_line, base, done, progress, cancel,
                workers) -> None:
    """Check the remaining chunks in worker processes, merging their results in file order.

    Plain subprocesses (``python -m tunedeck.core.data.scan_worker``) rather than a
    multiprocessing pool: a pool re-imports the caller's main module in every child, which
    breaks scripts without a ``__main__`` guard, and forking a threaded app can deadlock.
    Each worker takes a contiguous run of chunks and prints one JSON result per chunk.
    """
    import queue
    import subprocess
    import sys

    path, size = report.path, report.size
    label = f"checking {path.name}"
    total = sum(e - s for s, e in pending)
    groups: List[list] = [[] for _ in range(workers)]
    acc = 0
    for rng in pending:
        groups[min(workers - 1, acc * workers // total)].append(rng)
        acc += rng[1] - rng[0]
    groups = [g for g in groups if g]
    # Bytes checked per worker, results merged or not: progress moves as any worker advances,
    # not only the one whose results are merged next.
    checked = [0] * len(groups)
    procs, queues = [], []
    for k, g in enumerate(groups):
        args = [sys.executable, "-m", "tunedeck.core.data.scan_worker", str(path), ref,
                str(ref_line), str(MAX_KEPT_PROBLEMS), json.dumps(report.keys.as_dict())
                ] + [f"{s}:{e}" for s, e in g]
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        q: "queue.Queue[Optional[str]]" = queue.Queue()
        # One reader thread per worker drains its pipe, so no worker ever blocks on a full
        # pipe while this thread waits on an earlier one.
        threading.Thread(target=_drain, args=(proc.stdout, q, g, checked, k),
                         daemon=True).start()
        procs.append(proc)
        queues.append(q)
    shown = -1.0

    def report_progress() -> None:
        nonlocal shown
        fraction = (done + sum(checked)) / size
        if progress and fraction > shown:
            shown = fraction
            progress(label, fraction)

    try:
        for k, (g, q) in enumerate(zip(groups, queues)):
            for i, (start, end) in enumerate(g):
                text = _next_result(q, cancel, report_progress)
                if text is _CANCELLED:
                    report.complete = False
                    return
                if text is None:
                    # The worker died (killed, out of memory): check its share here.
                    for s2, e2 in g[i:]:
                        c = scan_range(str(path), s2, e2, ref, ref_line, -1,
                                        MAX_KEPT_PROBLEMS, report.keys)
                        report.add_chunk(c, base)
                        base += c.lines
                        checked[k] += e2 - s2
                        report_progress()
                    break
                c = chunk_from_json(text)
                report.add_chunk(c, base)
                base += c.lines
                report_progress()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


_CANCELLED = object()


def _drain(stream, q, ranges: list, checked: list, k: int) -> None:
    for (start, end), text in zip(ranges, stream):
        checked[k] += end - start
        q.put(text)
    q.put(None)


def _next_result(q, cancel: Optional[threading.Event], tick):
    import queue

    while True:
        if cancel is not None and cancel.is_set():
            return _CANCELLED
        try:
            # A bounded wait, so that a cancel is noticed and progress redrawn every 0.1 s.
            return q.get(timeout=0.1)
        except queue.Empty:
            tick()
