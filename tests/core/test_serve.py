"""`tunedeck serve`: mlx-lm's own server in the tunedeck process, answered by the real openai client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.core.runhelpers import like_a_terminal
from tunedeck.core.errors import BadInput
from tunedeck.core.serve import ModelServer, free_port, serve_target

TUNEDECK = str(Path(sys.executable).parent / "tunedeck")


def start_serving(*args, env: dict | None = None) -> tuple[subprocess.Popen, dict, list[str]]:
    """`tunedeck serve ARGS` until it says it is ready; returns the process, what it printed
    (base URL and model) and its stderr lines so far."""
    proc = subprocess.Popen([TUNEDECK, "serve", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                            preexec_fn=like_a_terminal)  # the tests stop it with Ctrl-C's SIGINT
    printed = {}
    for line in proc.stdout:
        key, _, value = line.strip().partition("  ")
        printed[key.strip()] = value.strip()
        if line.startswith("Ctrl-C stops it."):
            return proc, printed, []
    raise AssertionError(f"serve exited: {proc.wait()} {proc.stderr.read()}")


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


def test_openai_client_gets_tunedeck_chats_greedy_answer_and_ctrl_c_stops_the_server(
        tunedeck, tiny_model, trained_run, tmp_path):
    from openai import OpenAI

    port = free_port()
    scratch = tmp_path / "tmp"  # where the numbered checkpoint's adapter directory goes
    scratch.mkdir()
    proc, printed, _ = start_serving(trained_run, "--checkpoint", "20", "--port", port,
                                     env={"TMPDIR": str(scratch)})
    try:
        assert printed["base URL"] == f"http://127.0.0.1:{port}/v1"
        assert printed["try"].startswith(f"curl http://127.0.0.1:{port}/v1/chat/completions")
        client = OpenAI(base_url=printed["base URL"], api_key="not-needed")
        reply = client.chat.completions.create(
            model=printed["model"], messages=[{"role": "user", "content": "who are you"}],
            temperature=0, max_tokens=16)
        code, expected, err = tunedeck("chat", "--model", tiny_model, "--adapter",
                                       trained_run / "adapters" / "0000020_adapters.safetensors",
                                       "--prompt", "who are you", "--temp", "0", "--max-tokens", "16")
        assert code == 0, err
        assert reply.choices[0].message.content == expected.rstrip("\n")
        # Web pages other than the loopback's own are not allowed to call it.
        import urllib.request

        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models", method="OPTIONS",
                                         headers={"Origin": "http://example.com"})
        with urllib.request.urlopen(request) as response:
            assert response.headers.get("Access-Control-Allow-Origin") is None
        request.headers["Origin"] = f"http://localhost:{port}"
        with urllib.request.urlopen(request) as response:
            assert response.headers.get("Access-Control-Allow-Origin") == f"http://localhost:{port}"
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=180)
    err = proc.stderr.read()
    assert code == 0, err  # how it ended (a native abort, -6, says its last words there)
    assert "server stopped" in err
    assert not listening(port)
    assert list(scratch.glob("tunedeck-serve-*")) == []  # MLX keeps a cache of its own there


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a process that ended while the list was read
        if parent == pid:
            found.append(int(stat.parent.name))
    return found


def test_the_server_is_the_tunedeck_process_itself_and_dies_with_it(trained_run):
    port = free_port()
    proc, _, _ = start_serving(trained_run, "--port", port)
    # No second process (a second interpreter start and import of mlx-lm before the first
    # token, which made serving slower than mlx_lm.server by hand): tunedeck is the server.
    assert children(proc.pid) == []
    proc.kill()
    proc.wait()
    assert not listening(port)


def test_a_non_loopback_address_needs_an_explicit_host(tiny_model):
    target = serve_target(tiny_model)
    with pytest.raises(BadInput, match="only with an explicit --host"):
        ModelServer(target, host="0.0.0.0")
    assert ModelServer(target).host == "127.0.0.1"


def test_host_binds_wider_with_a_warning(tiny_model):
    port = free_port()
    proc, printed, _ = start_serving(tiny_model, "--host", "0.0.0.0", "--port", port)
    try:
        assert printed["base URL"] == f"http://0.0.0.0:{port}/v1"
        assert listening(port)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=180)
    err = proc.stderr.read()
    assert "warning: serving on 0.0.0.0" in err and "no authentication" in err


def test_default_bind_is_loopback_only(tiny_model):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent; it only picks an interface
            address = s.getsockname()[0]
        except OSError:
            address = "127.0.0.1"
    if address.startswith("127."):
        pytest.skip("this machine has no non-loopback address to try")
    port = free_port()
    proc, _, _ = start_serving(tiny_model, "--port", port)
    try:
        assert listening(port) and not listening(port, address)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=180)


def test_a_port_in_use_is_one_clear_line(tunedeck, tiny_model):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = tunedeck("serve", tiny_model, "--port", port)
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith(f"tunedeck: error: --port {port}: cannot listen on 127.0.0.1:{port}")
