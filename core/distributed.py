"""One run on several ranks: the layout of mlx's own data-parallel training, and what is checked
before it starts.

mlx-lm's trainer already trains data-parallel when ``mx.distributed.init()`` finds a group: each
rank takes every N-th sample of a batch, the gradients are averaged, only rank 0 saves. What
tunedeck adds is around it; this module holds what is settled before any rank starts:

* the layout: ``ranks`` local processes, or the hosts of ``hosts`` (mlx's JSON hostfile, or ssh
  hosts separated by commas; the first is this machine), fixed in the run's ``ranks.json`` at the
  first start so a resume uses the same world;
* the environment ``mlx.launch`` would give the ranks for their backend (``MLX_HOSTFILE`` for
  ring; the coordinator and RDMA devices for jaccl);
* the checks before start: the batch divides by the world size, remote hosts answer over ssh
  with the same tunedeck, mlx and mlx-lm versions and the model and data at the same paths.

Starting the ranks, hearing their heartbeats and ending them is core.rank_supervisor's. This
module imports no MLX: the supervisor costs a few MB.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from .errors import BadInput

LAYOUT_FILE = "ranks.json"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
RING_FIRST_PORT = 32323   # mlx.launch's default, used when a rank is on another host


# ----------------------------------------------------------------------------- the layout


@dataclass
class RankPlace:
    rank: int
    host: str                       # as the user named it (the ssh destination)
    ip: str                         # where the other ranks reach it
    rdma: list = field(default_factory=list)

    @property
    def local(self) -> bool:
        return is_this_machine(self.host)


@dataclass
class Layout:
    backend: str
    places: list[RankPlace]
    envs: list[str] = field(default_factory=list)

    @property
    def world_size(self) -> int:
        return len(self.places)

    @property
    def remote_hosts(self) -> list[str]:
        return list(dict.fromkeys(p.host for p in self.places if not p.local))

    def to_json(self) -> dict:
        return {"backend": self.backend, "envs": self.envs,
                "places": [asdict(p) for p in self.places]}

    @classmethod
    def from_json(cls, data: dict) -> "Layout":
        return cls(data["backend"], [RankPlace(**p) for p in data["places"]], data.get("envs", []))


def is_this_machine(host: str) -> bool:
    if host in LOCAL_HOSTS or host == socket.gethostname():
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _looks_like_file(hosts: str) -> bool:
    return hosts.endswith(".json") or os.sep in hosts


def _hostfile_entries(path: Path) -> tuple[list[dict], str, list[str]]:
    """mlx's hostfile (``mlx.distributed_config`` writes it): a list of hosts, or an object with
    ``backend``, ``envs`` and ``hosts``; each host has ``ssh``, and ``ips`` / ``rdma``."""
    try:
        data = json.loads(path.read_text())
    except OSError:
        raise BadInput(f"hosts: {path}: hostfile not found") from None
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    backend, envs = "", []
    if isinstance(data, dict):
        backend, envs, data = data.get("backend", ""), data.get("envs", []), data.get("hosts")
    if not isinstance(data, list) or not data:
        raise BadInput(f"{path}: expected a list of hosts, or an object with \"hosts\" (mlx's hostfile)")
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get("ssh"), str):
            raise BadInput(f"{path}: host {i + 1}: needs \"ssh\", the name to reach it by")
    return data, backend, envs


def world_size_of(config) -> int:
    """How many ranks ``config`` trains with, without any network: 1 for one process."""
    per_host = config.ranks if isinstance(config.ranks, int) and config.ranks > 0 else 1
    if not config.hosts or not isinstance(config.hosts, str):
        return per_host
    if _looks_like_file(config.hosts):
        entries, _, _ = _hostfile_entries(Path(config.hosts).expanduser())
        return len(entries) * per_host
    return len([h for h in config.hosts.split(",") if h.strip()]) * per_host


def _address(host: str) -> str:
    if is_this_machine(host):
        return "127.0.0.1"
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        return socket.gethostbyname(host)
    except OSError:
        raise BadInput(f"hosts: {host}: no address found for this name (the ring backend "
                       "needs IP addresses; give the IP, or a hostfile with \"ips\")") from None


def layout_of(config) -> Optional[Layout]:
    """The ranks ``config`` asks for, or None for a one-process run."""
    if world_size_of(config) == 1:
        return None
    per_host = config.ranks or 1
    backend = config.backend
    envs: list[str] = []
    if config.hosts and _looks_like_file(config.hosts):
        entries, file_backend, envs = _hostfile_entries(Path(config.hosts).expanduser())
        backend = file_backend or backend
        hosts = [(e["ssh"], (e.get("ips") or [None])[0], e.get("rdma") or []) for e in entries]
    elif config.hosts:
        hosts = [(h.strip(), None, []) for h in config.hosts.split(",") if h.strip()]
    else:
        hosts = [("127.0.0.1", "127.0.0.1", [])]
    if backend == "mpi":
        raise BadInput("backend: mpi is not supported by tunedeck's launcher (it starts each rank "
                       "itself to follow and stop it); use ring, or jaccl over Thunderbolt 5")
    if not is_this_machine(hosts[0][0]):
        raise BadInput(f"hosts: the first host is rank 0, which holds the run directory, and must "
                       f"be this machine (got {hosts[0][0]})")
    places: list[RankPlace] = []
    for host, ip, rdma in hosts:
        for _ in range(per_host):
            places.append(RankPlace(len(places), host, ip or _address(host), list(rdma)))
    # A hostfile gives the addresses itself; a list of hosts gets them looked up here.
    named_here = hosts[0][1] is None or not (config.hosts and _looks_like_file(config.hosts))
    if any(not p.local for p in places) and places[0].ip == "127.0.0.1" and named_here:
        raise BadInput(f"hosts: {places[0].host}: other hosts cannot reach rank 0 at 127.0.0.1; "
                       "name this machine by the IP the others reach it at")
    return Layout(backend, places, list(envs))


def describe_layout(config) -> list[str]:
    """The ranks ``config`` trains on, one line each, as the Hosts helper shows them (no ssh)."""
    try:
        layout = layout_of(config)
    except BadInput as exc:
        return [str(exc)]
    if layout is None:
        return ["one process on this machine (set ranks, or hosts, to train on several)"]
    lines = [f"{layout.world_size} ranks, backend {layout.backend}"]
    for p in layout.places:
        where = "this machine" if p.local else f"ssh {p.host}"
        rdma = f", RDMA {', '.join(str(d) for d in p.rdma if d)}" if any(p.rdma) else ""
        lines.append(f"rank {p.rank}: {where}, reached at {p.ip}{rdma}")
    return lines


def thunderbolt_config_command(hosts: list[str], hostfile: Path, backend: str) -> list[str]:
    """``mlx.distributed_config`` finding the Thunderbolt links between ``hosts`` over ssh and
    writing the hostfile for them (it may ask for sudo on the hosts to set their addresses)."""
    tool = Path(sys.executable).parent / "mlx.distributed_config"
    command = [str(tool) if tool.exists() else "mlx.distributed_config", "--hosts", ",".join(hosts),
               "--over", "thunderbolt", "--output-hostfile", str(hostfile)]
    return command + (["--backend", backend] if backend in ("ring", "jaccl") else [])


def save_layout(run_path: Path, layout: Layout) -> None:
    from .rundir import write_atomic

    write_atomic(Path(run_path) / LAYOUT_FILE, json.dumps(layout.to_json(), indent=1) + "\n")


def load_layout(run_path: Path) -> Optional[Layout]:
    try:
        return Layout.from_json(json.loads((Path(run_path) / LAYOUT_FILE).read_text()))
    except FileNotFoundError:
        return None


# ----------------------------------------------------------------------------- checks before start


def check_batch(config) -> Optional[str]:
    """The config problem of a batch the ranks cannot share evenly, or None."""
    try:
        world = world_size_of(config)
    except BadInput as exc:
        return str(exc)
    if world > 1 and isinstance(config.batch_size, int) and config.batch_size % world:
        return (f"batch_size: {config.batch_size} does not divide by the {world} ranks "
                f"(each rank takes batch_size / ranks samples); use a multiple of {world}")
    return None


_PROBE = """
import json, os, sys
from importlib import metadata
def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
print(json.dumps({"versions": {n: version(n) for n in ("tunedeck", "mlx", "mlx-lm")},
                  "missing": [p for p in sys.argv[1:] if not os.path.exists(p)]}))
"""


def local_versions() -> dict:
    from importlib import metadata

    found: dict[str, Optional[str]] = {}
    for name in ("tunedeck", "mlx", "mlx-lm"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def check_hosts(layout: Layout, paths: list[str], python: str = sys.executable,
                timeout: float = 20.0) -> None:
    """Every remote host answers over ssh, runs the same tunedeck, mlx and mlx-lm as this
    machine, and has the model and data at the same paths; else one line naming the host."""
    import shlex

    if not layout.remote_hosts:
        return
    mine = local_versions()
    for host in layout.remote_hosts:
        command = shlex.join([python, "-c", _PROBE, *paths])
        try:
            done = subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", host,
                                   command], capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise BadInput(f"hosts: {host}: no answer over ssh within {timeout:.0f} s") from None
        said = (done.stderr.strip().splitlines() or [""])[-1]
        if done.returncode == 255:
            raise BadInput(f"hosts: {host}: not reachable by ssh ({said or 'ssh failed'}); "
                           "set up key-based ssh from this machine to every host")
        try:
            answer = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise BadInput(f"hosts: {host}: {python} does not run there ({said or 'no answer'}); "
                           "install tunedeck at the same path on every host") from None
        for name, version in mine.items():
            theirs = answer["versions"].get(name)
            if theirs != version:
                raise BadInput(f"hosts: {host}: {name} {theirs or 'is not installed'}, but this "
                               f"machine has {version}; install the same versions on every host")
        if answer["missing"]:
            raise BadInput(f"hosts: {host}: {answer['missing'][0]}: not found there (the model "
                           "and data must be at the same paths on every host)")


def recorded_world_size(status: dict) -> int:
    return int(status.get("world_size") or 1)


def check_resume_world(run, layout: Optional[Layout]) -> None:
    """A checkpoint resumes exactly only with the world size it was trained with: mlx-lm splits
    each batch among the ranks and averages their gradients, so another split is another sum."""
    before = recorded_world_size(run.read_status())
    now = layout.world_size if layout else 1
    if before != now:
        raise BadInput(f"{run.path}: trained with {before} rank{'s' * (before > 1)}, resuming with "
                       f"{now}: an exact resume needs the same world size (set ranks/hosts back)")


# ----------------------------------------------------------------------------- the ranks' environment


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_environment(layout: Layout, files: dict) -> list[tuple[str, str]]:
    """The variables every rank gets, as mlx.launch sets them for its backend; ``files`` maps a
    variable to the content of the file it names (written per host)."""
    env = [(name, value) for name, _, value in (e.partition("=") for e in layout.envs if "=" in e)]
    if layout.backend == "ring":
        # Ports free here are free for every rank when all of them are here; other hosts get
        # mlx.launch's fixed ones.
        here = all(ipaddress.ip_address(p.ip).is_loopback for p in layout.places)
        ring = [[f"{p.ip}:{_free_port() if here else RING_FIRST_PORT + p.rank}"]
                for p in layout.places]
        files["MLX_HOSTFILE"] = json.dumps(ring)
    elif layout.backend == "jaccl":
        env.append(("MLX_JACCL_COORDINATOR", f"{layout.places[0].ip}:{RING_FIRST_PORT}"))
        files["MLX_IBV_DEVICES"] = json.dumps([p.rdma for p in layout.places])
    return env
