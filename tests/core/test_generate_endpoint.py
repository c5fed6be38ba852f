"""`tunedeck data generate` against real HTTP: mlx_lm.server serving the tiny model on a free
loopback port, and small servers that fail the way real ones do (busy, down, silent)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.core.test_generate import asked, cli, rows_of, write_prompts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlx_server(tiny_model):
    """mlx_lm.server on the tiny model; its /v1 URL once /health answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlx_lm.server", "--model", str(tiny_model),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"mlx_lm.server exited: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("mlx_lm.server did not become healthy")
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/v1"
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_answers_from_mlx_lm_server(tunedeck, tmp_path, mlx_server):
    prompts = write_prompts(tmp_path / "prompts.txt")
    out = tmp_path / "data"
    code, stdout, err = tunedeck("data", "generate", "answers", "--prompts", prompts,
                                 "--endpoint", mlx_server, "--out", out, "--max-tokens", "8",
                                 "--concurrency", "3", "--split", "60,20,20")
    assert code == 0, stdout + err
    rows = rows_of(*out.glob("*.jsonl"))
    assert sorted(asked(rows)) == sorted(set(asked(rows))) and len(rows) == 6
    assert all(row["messages"][-1]["content"] for row in rows)
    assert tunedeck("data", "check", out)[0] == 0


def test_questions_from_mlx_lm_server(tunedeck, tmp_path, mlx_server):
    out = tmp_path / "questions.txt"
    code, stdout, err = tunedeck("data", "generate", "questions", "--topic", "birds", "--count",
                                 "5", "--endpoint", mlx_server, "--out", out, "--max-tokens",
                                 "40", "--concurrency", "2")
    assert code == 0, stdout + err
    assert len(out.read_text().splitlines()) == 5


def test_sigkill_mid_run_against_the_server_then_rerun_answers_each_once(tmp_path, mlx_server):
    many = [f"Tell me fact number {i}." for i in range(1, 41)]
    prompts = write_prompts(tmp_path / "prompts.txt", many)
    out = tmp_path / "answers.jsonl"
    args = ["data", "generate", "answers", "--prompts", prompts, "--endpoint", mlx_server,
            "--out", out, "--max-tokens", "24", "--concurrency", "2"]
    proc = subprocess.Popen([sys.executable, "-c", "from tunedeck.core.cli import main; "
                             "import sys; sys.exit(main())", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (out.exists() and out.read_bytes().count(b"\n") >= 4):
        assert proc.poll() is None, "finished before it could be killed"
        assert time.monotonic() < deadline, "no rows written"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = cli(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = rows_of(out)
    assert sorted(asked(rows)) == sorted(many)


# -- servers that misbehave -----------------------------------------------------------------------

class FlakyServer:
    """OpenAI-style answers over real HTTP, after ``busy`` 503s; prompts containing "poison"
    always get a 500."""

    def __init__(self, busy: int = 0):
        self.busy = busy
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests += 1
                prompt = body["messages"][-1]["content"]
                if owner.busy > 0 or "poison" in prompt:
                    owner.busy -= 1
                    self.send_response(500 if "poison" in prompt else 503)
                    self.end_headers()
                    self.wfile.write(b"busy")
                    return
                data = json.dumps({"choices": [{"message": {"role": "assistant",
                                                            "content": f"answer to {prompt}"},
                                                "finish_reason": "stop"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_busy_answers_are_retried_and_a_prompt_that_keeps_failing_is_skipped(tunedeck,
                                                                            tmp_path):
    server = FlakyServer(busy=2)
    try:
        prompts = write_prompts(tmp_path / "prompts.txt", ["one?", "poison two?", "three?"])
        out = tmp_path / "answers.jsonl"
        code, stdout, err = tunedeck("data", "generate", "answers", "--prompts", prompts,
                                     "--endpoint", server.url, "--out", out, "--retries", "3")
        assert code == 1, stdout + err
        assert sorted(asked(rows_of(out))) == ["one?", "three?"]
        assert f"{prompts}:2: not answered: HTTP 500" in stdout
        assert "1 prompt failed (run again to retry)" in stdout
    finally:
        server.close()


def test_an_unreachable_port_gets_one_line_and_exit_1(tunedeck, tmp_path):
    prompts = write_prompts(tmp_path / "prompts.txt", ["hi?"])
    port = free_port()   # nothing listens there
    code, out, err = tunedeck("data", "generate", "answers", "--prompts", prompts, "--endpoint",
                              f"http://127.0.0.1:{port}/v1", "--out", tmp_path / "a.jsonl",
                              "--retries", "2")
    assert code == 1
    assert err.strip().splitlines() == [
        f"tunedeck: error: http://127.0.0.1:{port}/v1: the endpoint does not answer: connection "
        f"refused at http://127.0.0.1:{port}/v1/chat/completions (is the server running on "
        "that port?) (after 2 attempts)"]
    assert not (tmp_path / "a.jsonl").exists() or (tmp_path / "a.jsonl").read_text() == ""


def test_a_server_that_never_answers_gets_one_line_and_exit_1(tunedeck, tmp_path):
    prompts = write_prompts(tmp_path / "prompts.txt", ["hi?"])
    with socket.socket() as silent:   # accepts connections (the backlog), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        code, out, err = tunedeck("data", "generate", "answers", "--prompts", prompts,
                                  "--endpoint", url, "--out", tmp_path / "a.jsonl",
                                  "--timeout", "0.5", "--retries", "2")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "the endpoint does not answer: no answer from" in lines[0]


@pytest.mark.parametrize("url", ["localhost:8080", "ftp://127.0.0.1/v1", "http://:80/v1",
                                 "http://127.0.0.1:99999/v1"])
def test_a_bad_endpoint_url_gets_one_line_and_exit_2(tunedeck, tmp_path, url):
    prompts = write_prompts(tmp_path / "prompts.txt", ["hi?"])
    code, out, err = tunedeck("data", "generate", "answers", "--prompts", prompts, "--endpoint",
                              url, "--out", tmp_path / "a.jsonl")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tunedeck: error: --endpoint {url}: ")
