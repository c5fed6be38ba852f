"""Where `tunedeck serve` listens: the port check agrees with mlx_lm.server's own bind."""

from __future__ import annotations

import socket

from tunedeck.core.serve import free_port, port_is_free


def test_a_port_just_served_on_every_address_is_free_again():
    # mlx_lm.server binds with SO_REUSEADDR, so the connections of a server just stopped
    # (TIME_WAIT on its side) do not keep its port; the check before starting must agree, or a
    # restart on the same port is refused for a minute.
    port = free_port()
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", port))
        listener.listen()
        with socket.create_connection(("127.0.0.1", port)) as client:
            served, _ = listener.accept()
            served.close()  # the server closes first: its side waits in TIME_WAIT
            client.recv(1)
    assert port_is_free(port, "0.0.0.0")
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("0.0.0.0", port))
        taken.listen()
        assert not port_is_free(port, "0.0.0.0")



def test_the_warning_for_every_address_names_it_in_words():
    from tunedeck.core.serve import no_auth_warning

    # "anyone who can reach 0.0.0.0:8080" named no address anyone can reach.
    assert no_auth_warning("0.0.0.0", 8080) == (
        "warning: serving on 0.0.0.0 (every address of this machine), beyond this machine: the server "
        "has no authentication, so anyone who can reach this machine on port 8080 can use the model")
    assert no_auth_warning("192.168.1.5", 8080).startswith("warning: serving on 192.168.1.5, beyond")


def test_on_the_loopback_mlx_lms_production_warning_is_not_shown(tiny_model):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from tests.core.runhelpers import like_a_terminal

    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "tunedeck"), "serve", str(tiny_model),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=like_a_terminal)
    try:
        for line in proc.stdout:
            if line.startswith("Ctrl-C stops it."):
                break
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    assert "server stopped" in err
    assert "UserWarning" not in err and "not recommended for production" not in err
