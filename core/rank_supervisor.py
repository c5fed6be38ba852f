"""The ranks of a run while it trains: started, heard and ended by the runner's supervisor.

The layout they follow and the checks before they start are core.distributed's. Here:

* the ranks are started by the runner's supervisor itself, with the environment ``mlx.launch``
  would give them (``MLX_RANK``, and core.distributed's ``rank_environment``), locally as child
  processes and on other Macs through ssh. Not through ``mlx.launch``: it exits 0 when a rank
  fails and merges every rank's output into one stream, and the supervisor needs each rank's
  exit, its own log and its pid to stop or end it;
* rank 0 owns the run directory (events, checkpoints, status, resume state); rank N writes only
  its output, to ``train.rank<N>.log`` (a remote rank's output comes back over ssh to that file
  on this machine);
* heartbeats: every rank reports each step and each validation batch to the supervisor, which
  fails the run when a rank exits non-zero or goes silent for longer than the steps so far
  explain, naming the rank and its last error line, and ends every other rank.

Like core.distributed, this imports no MLX: the supervisor costs a few MB.
"""

from __future__ import annotations

import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from .distributed import LAYOUT_FILE, Layout, RankPlace, rank_environment

BEAT_MARK = "\x1etunedeck-beat "  # a remote rank's heartbeat line on its ssh output
HEARTBEAT_FD_ENV = "TUNEDECK_HEARTBEAT_FD"
HEARTBEAT_STDOUT_ENV = "TUNEDECK_HEARTBEAT_STDOUT"


def rank_log(run_path: Path, rank: int) -> Path:
    """Where a rank's output goes: train.log for rank 0 (mlx-lm's table), else its own file."""
    return Path(run_path) / ("train.log" if rank == 0 else f"train.rank{rank}.log")


# ----------------------------------------------------------------------------- in a rank


class Heartbeat:
    """A rank's "still going" to its supervisor, after every step and validation batch."""

    def __init__(self) -> None:
        fd = os.environ.get(HEARTBEAT_FD_ENV)
        self.fd = int(fd) if fd else None
        self.on_stdout = bool(os.environ.get(HEARTBEAT_STDOUT_ENV))

    def beat(self, iteration: int) -> None:
        try:
            if self.fd is not None:
                os.write(self.fd, f"{iteration}\n".encode())
            elif self.on_stdout:
                sys.stdout.write(f"{BEAT_MARK}{iteration}\n")
                sys.stdout.flush()
        except BrokenPipeError:
            # The supervisor is gone (killed): nobody would record this run's end, and the other
            # ranks are ending the same way. A rank never outlives its supervisor.
            os._exit(3)
        except BlockingIOError:
            pass  # the supervisor is behind reading; a beat more or less changes nothing


# ----------------------------------------------------------------------------- the supervisor


def _die_with_parent() -> None:
    """Linux: the kernel ends a rank whose supervisor was killed (macOS: the heartbeat does)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class RankProcess:
    def __init__(self, place: RankPlace, proc: subprocess.Popen, log: Path,
                 beats: Optional[int], output=None):
        self.place, self.proc, self.log = place, proc, log
        self.beats_fd = beats          # the read end of a local rank's heartbeat pipe
        self.output = output           # a remote rank's ssh output, pumped into its log
        self.buffer = b""
        self.last_iteration: Optional[int] = None
        self.last_beat: Optional[float] = None
        self.returncode: Optional[int] = None

    @property
    def rank(self) -> int:
        return self.place.rank


def start_ranks(run_path: Path, layout: Layout, runner_args: list[str], env: dict,
                scratch: Path, ranks: list[RankProcess]) -> None:
    """Every rank, started, into ``ranks`` (as each starts: a failure part way still leaves the
    started ones to end); ``scratch`` holds the local ranks' files (the ring's hostfile) until
    the run ends."""
    import shlex

    files: dict = {}
    extra = rank_environment(layout, files)
    tmp = Path(scratch)
    local_files = {}
    for name, content in files.items():
        (tmp / name).write_text(content)
        local_files[name] = str(tmp / name)
    for place in layout.places:
        command = [sys.executable, "-m", "tunedeck.core.runner", str(run_path),
                   "--rank", str(place.rank), *runner_args]
        log_path = rank_log(run_path, place.rank)
        if place.local:
            read, write = os.pipe()
            os.set_blocking(read, False)
            os.set_blocking(write, False)
            rank_env = dict(env, **dict(extra), **local_files, MLX_RANK=str(place.rank),
                            **{HEARTBEAT_FD_ENV: str(write)})
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, env=rank_env, cwd=str(run_path),
                                        pass_fds=(write,), preexec_fn=_die_with_parent)
            os.close(write)
            ranks.append(RankProcess(place, proc, log_path, read))
            continue
        # Another Mac: the same command over ssh, in a copy of the run directory at the same
        # path there (the run's config, and the checkpoint it resumes from). Its output comes
        # back over ssh into train.rank<N>.log here; when ssh ends (the run failed or stopped),
        # the rank's next write fails and it exits.
        copy_run_files(place.host, Path(run_path), runner_args)
        script = f"cd {shlex.quote(str(run_path))} && "
        for name, value in [*extra, ("MLX_RANK", str(place.rank)), (HEARTBEAT_STDOUT_ENV, "1"),
                            ("PYTHONUNBUFFERED", "1"), ("HF_HUB_OFFLINE", "1")]:
            script += f"export {name}={shlex.quote(value)}; "
        for name, content in files.items():
            script += f"f=$(mktemp); printf %s {shlex.quote(content)} > \"$f\"; export {name}=\"$f\"; "
        script += "exec " + shlex.join(command)
        proc = subprocess.Popen(["ssh", "-o", "BatchMode=yes", place.host, script],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        assert proc.stdout is not None  # stdout=PIPE
        os.set_blocking(proc.stdout.fileno(), False)
        ranks.append(RankProcess(place, proc, log_path, None, output=proc.stdout))


def copy_run_files(host: str, run_path: Path, runner_args: list[str]) -> None:
    """What a remote rank reads of the run: its config and layout, and, when resuming, the
    checkpoint's weights, optimizer state and resume state (rank 0 wrote them here)."""
    import shlex

    from .errors import WorkFailed
    from .resume_state import adapter_file, optimizer_file, state_file

    files = [run_path / name for name in ("run.toml", "mlx_lm.yaml", LAYOUT_FILE, "status.json")]
    checkpoint = []
    if "--resume-from" in runner_args:
        iteration = int(runner_args[runner_args.index("--resume-from") + 1])
        adapters = run_path / "adapters"
        checkpoint = [f(adapters, iteration) for f in (adapter_file, optimizer_file, state_file)]
    made = subprocess.run(["ssh", "-o", "BatchMode=yes", host,
                           f"mkdir -p {shlex.quote(str(run_path / 'adapters'))}"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    for group, target in ((files, run_path), (checkpoint, run_path / "adapters")):
        if made.returncode != 0 or not group:
            break
        made = subprocess.run(["scp", "-q", "-o", "BatchMode=yes", *map(str, group),
                               f"{host}:{shlex.quote(str(target))}/"],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if made.returncode != 0:
        said = (made.stderr.strip().splitlines() or ["no message"])[-1]
        raise WorkFailed(f"{host}: could not copy the run's files to {run_path} there: {said}")


class Watchdog:
    """When is a silent rank a stuck one? Long after the slowest beat interval seen so far.

    Beats come after every step and validation batch; a checkpoint save or the first steps
    (compilation) make longer gaps, which the largest observed interval covers. Before the first
    beat the model is still loading: that gets the longer start-up allowance.
    """

    def __init__(self, floor_s: float, startup_s: float):
        self.floor_s, self.startup_s = floor_s, startup_s
        self.intervals: list[float] = []

    def observe_interval(self, seconds: float) -> None:
        self.intervals.append(seconds)
        del self.intervals[:-200]

    def allowance(self) -> float:
        if not self.intervals:
            return self.startup_s
        return max(self.floor_s, 20 * statistics.median(self.intervals), 3 * max(self.intervals))


def silence_floor() -> float:
    """Seconds of silence always allowed; TUNEDECK_RANK_SILENCE_S sets it (tests, slow links)."""
    return float(os.environ.get("TUNEDECK_RANK_SILENCE_S") or 300)


class RankSupervisor:
    """Waits for every rank; the first that fails (or goes silent) fails the run and ends the rest."""

    def __init__(self, run, layout: Layout, runner_args: list[str], env: dict):
        self.run, self.layout = run, layout
        self.runner_args, self.env = runner_args, env
        self.ranks: list[RankProcess] = []
        floor = silence_floor()
        self.watchdog = Watchdog(floor, max(floor, 900.0))
        self.started = time.monotonic()

    def forward(self, signum: int) -> None:
        # Local ranks only: a rank that stops tells the others at its next step (the ranks agree
        # on a stop in a collective), so remote ranks stop with them.
        for r in self.ranks:
            if r.place.local and r.returncode is None:
                try:
                    r.proc.send_signal(signum)
                except ProcessLookupError:
                    pass

    def run_all(self) -> int:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the select below
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, lambda signum, frame: self.forward(signum))
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        scratch = tempfile.TemporaryDirectory(prefix="tunedeck-ranks-")
        try:
            start_ranks(self.run.path, self.layout, self.runner_args, self.env,
                        Path(scratch.name), self.ranks)
        except Exception as exc:  # a remote host that refused the copy, a missing python...
            self._end_all()
            scratch.cleanup()
            fail_run(self.run, f"the ranks could not start: {exc}", None)
            return 1
        self.run.update_status(world_size=self.layout.world_size, backend=self.layout.backend,
                               rank_pids=[r.proc.pid for r in self.ranks],
                               rank_hosts=[r.place.host for r in self.ranks])
        try:
            return self._watch(wake_read)
        finally:
            self._end_all()
            scratch.cleanup()
            signal.set_wakeup_fd(-1)

    def _watch(self, wake_read: int) -> int:
        while True:
            sources = [wake_read] + [r.beats_fd for r in self.ranks if r.beats_fd is not None] + \
                      [r.output for r in self.ranks if r.output is not None and not r.output.closed]
            readable, _, _ = select.select(sources, [], [], 1.0)
            if wake_read in readable:
                try:
                    os.read(wake_read, 4096)
                except BlockingIOError:
                    pass
            self._read_beats()
            failed = self._reap()
            if failed is not None:
                self._end_all()
                self._record(failed, self._exit_message(failed))
                return 1
            if all(r.returncode is not None for r in self.ranks):
                return 0
            silent = self._silent()
            if silent is not None:
                rank, message = silent
                self._end_all()
                self._record(rank, message)
                return 1

    def _read_beats(self) -> None:
        now = time.monotonic()
        for r in self.ranks:
            try:
                if r.beats_fd is not None:
                    data = os.read(r.beats_fd, 65536)
                elif r.output is not None and not r.output.closed:
                    data = r.output.read()
                else:
                    continue
            except OSError:  # BlockingIOError included: nothing new
                continue
            if data is None:
                continue  # a non-blocking pipe with nothing in it
            if data == b"":
                # The rank closed its end (it exited): stop watching it, or select would
                # report it readable in a busy loop while the others finish.
                self._close_channels(r)
                continue
            if r.output is not None:
                data = self._pump_remote(r, data)
            for line in data.decode(errors="replace").split():
                if line.isdigit():
                    if r.last_beat is not None and r.rank == 0:
                        self.watchdog.observe_interval(now - r.last_beat)
                    r.last_iteration, r.last_beat = int(line), now

    @staticmethod
    def _pump_remote(r: RankProcess, data: bytes) -> bytes:
        """A remote rank's output: its heartbeat lines out, the rest into its log."""
        r.buffer += data
        *lines, r.buffer = r.buffer.split(b"\n")
        mark = BEAT_MARK.encode()
        beats: list[bytes] = []
        text: list[bytes] = []
        for line in lines:
            (beats if line.startswith(mark) else text).append(line)
        if text:
            with open(r.log, "ab") as log:
                log.write(b"\n".join(text) + b"\n")
        return b"\n".join(line[len(mark):] for line in beats)

    def _reap(self) -> Optional[RankProcess]:
        """The rank that failed first, if any: when two are found ended together, the one that
        died by a signal or of its own error, not the one that lost its peer because of it."""
        ended = []
        for r in self.ranks:
            if r.returncode is None and r.proc.poll() is not None:
                r.returncode = r.proc.returncode
                ended.append(r)
        failed = [r for r in ended if r.returncode != 0]
        if not failed:
            return None
        return sorted(failed, key=lambda r: ((r.returncode or 0) >= 0, lost_peer(last_lines(r.log)),
                                             r.rank))[0]

    def _silent(self) -> Optional[tuple[RankProcess, str]]:
        now = time.monotonic()
        allowance = self.watchdog.allowance()
        waiting = [r for r in self.ranks if r.returncode is None]
        quiet = [r for r in waiting if now - (r.last_beat or self.started) > allowance]
        if not quiet:
            return None
        # Ranks step together, so a stuck rank silences the others too: the one furthest
        # behind, or the one the kernel shows stopped, is the one to name.
        culprit = sorted(quiet, key=lambda r: (not _stopped(r.proc.pid) if r.place.local else True,
                                               r.last_iteration or 0,
                                               r.last_beat or 0.0))[0]
        after = (f"after iteration {culprit.last_iteration}" if culprit.last_iteration is not None
                 else "since it started")
        return culprit, (f"rank {culprit.rank} ({culprit.place.host}) stopped reporting: nothing "
                         f"for {now - (culprit.last_beat or self.started):.0f} s {after} (allowed "
                         f"{allowance:.0f} s from the steps so far)")

    def _exit_message(self, r: RankProcess) -> str:
        from .crash import explain_exit

        assert r.returncode is not None  # asked about a rank that ended
        tail = last_lines(r.log)
        failure = explain_exit(r.returncode, tail)
        cause = failure.cause if failure else f"exited with code {r.returncode}"
        line = last_error_line(tail)
        said = f"; its log ends: {line}" if line and line not in cause else ""
        return f"rank {r.rank} ({r.place.host}) {cause}{said} (see {r.log.name})"

    def _record(self, r: RankProcess, message: str) -> None:
        """The run's end, named by the rank that caused it (rank 0 may have recorded a lost
        peer meanwhile: the cause replaces it)."""
        from .crash import RESUME

        advice = f"{RESUME} once rank {r.rank} is fixed".replace("RUN", str(self.run.path))
        status = self.run.read_status()
        if r.rank == 0 and status.get("state") == "failed" and status.get("error"):
            print(f"[tunedeck] error: {message}", flush=True)
            return  # rank 0 recorded its own failure, with its cause
        fail_run(self.run, message, advice, exit_code=r.returncode, failed_rank=r.rank)

    def _end_all(self) -> None:
        """No rank outlives the run: the rest are killed (their work since the last checkpoint
        is lost either way: the ranks step together)."""
        for r in self.ranks:
            if r.returncode is None:
                try:
                    r.proc.kill()
                except ProcessLookupError:
                    pass
        for r in self.ranks:
            if r.returncode is None:
                r.proc.wait()
                r.returncode = r.proc.returncode
            self._close_channels(r)

    def _close_channels(self, r: RankProcess) -> None:
        if r.beats_fd is not None:
            os.close(r.beats_fd)
            r.beats_fd = None
        if r.output is not None and not r.output.closed:
            try:
                rest = r.output.read() or b""
            except OSError:
                rest = b""
            if rest or r.buffer:
                self._pump_remote(r, rest + b"\n")  # whatever it printed last, even unfinished
            r.output.close()


def fail_run(run, message: str, advice: Optional[str], **status) -> None:
    """The run's end as failed, in train.log, metrics.jsonl and status.json."""
    from . import events as ev

    print(f"[tunedeck] error: {message}" + (f" — {advice}" if advice else ""), flush=True)
    writer = ev.EventWriter(run.metrics_jsonl)
    try:
        writer.append(ev.Error(message=message, advice=advice))
        writer.append(ev.End(state="failed"))
    finally:
        writer.close()
    run.update_status(state="failed", error=message + (f" — {advice}" if advice else ""),
                      ended_at=time.time(), **status)


def _stopped(pid: int) -> bool:
    """Is the process stopped (SIGSTOP) or in uninterruptible sleep? Linux's /proc only."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] in ("T", "t", "D")


def last_lines(path: Path, size: int = 8192) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - size))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def last_error_line(tail: str) -> str:
    """The line that says what went wrong: the last exception or error line, else the last line."""
    from .logparse import strip_ansi

    lines = [strip_ansi(line).strip() for line in tail.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(BEAT_MARK.strip())]
    for line in reversed(lines):
        if "Error" in line or "error" in line or "Exception" in line:
            return line[:200]
    return lines[-1][:200] if lines else ""


def lost_peer(tail: str) -> bool:
    """Did this rank fail only because another one went away?"""
    return "connection to a peer was lost" in tail or "closed by the peer" in tail
