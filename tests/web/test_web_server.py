"""`tunedeck web` as a browser meets it: the page, its WebSocket and downloads behind the token,
the app's screen over the WebSocket, runs that outlive tabs, and apps that do not outlive their
connection or the server."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import urllib.error
import urllib.request

import pytest
import websockets

from tunedeck.core.rundir import find_runs

from .conftest import TITLES, TUNEDECK, Tab, alive, eventually

FORM_READY = "ctrl+r starts a run"  # the form's last line: drawn once the whole form is built


def get(url: str, headers: dict | None = None) -> tuple[int, dict, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


async def refused(url: str, origin: str | None) -> int:
    with pytest.raises(websockets.InvalidStatus) as caught:
        async with websockets.connect(url, origin=origin):
            pass
    return caught.value.response.status_code


def test_listens_on_loopback_only_by_default(web):
    server = web()
    assert server.url.startswith(f"http://127.0.0.1:{server.port}/?token=")
    assert len(server.token) >= 32
    assert "warning" not in server.log()
    # A new token each start: a URL from an earlier start (in the browser's history) is dead.
    assert web().token != server.token


def test_a_wider_address_only_when_asked_and_with_a_warning(web):
    server = web("--host", "0.0.0.0")
    assert "warning: listening on 0.0.0.0" in server.log()


def test_a_bad_address_or_port_is_one_line_and_exit_2(web_project, isolated_home):
    for args, expected in ((["--port", "70000"], "--port: must be between 0 and 65535"),
                           (["--host", "203.0.113.9", "--port", "0"], "cannot listen there")):
        done = subprocess.run([TUNEDECK, "web", str(web_project), *args], capture_output=True,
                              text=True, env={"TUNEDECK_HOME": str(isolated_home), "PATH": ""})
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) <= 2  # the warning for 203.0.113.9, then the error


def test_the_page_and_downloads_need_the_token(web):
    server = web()
    assert get(server.page("/"))[0] == 403
    assert get(server.page("/?token=not-the-token"))[0] == 403
    assert get(server.page("/download/0123abcd"))[0] == 403

    status, headers, body = get(server.url)
    assert status == 200
    assert f"ws://127.0.0.1:{server.port}/ws/{server.token}" in body
    assert "https://" not in body and "delay" not in body  # nothing from other sites, no splash
    cookie = headers["Set-Cookie"].split(";")[0]
    assert cookie == f"tunedeck-web-{server.port}={server.token}"
    assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]

    # The page's cookie is the token for what the page script fetches by itself.
    assert get(server.page("/"), {"Cookie": cookie})[0] == 200
    assert get(server.page("/download/0123abcd"), {"Cookie": cookie})[0] == 404
    # A site that points its own name at 127.0.0.1 (DNS rebinding) is refused even with it.
    assert get(server.url, {"Host": f"attacker.example:{server.port}"})[0] == 403


async def test_the_websocket_wants_the_token_and_the_page_origin_and_shows_the_app(web):
    server = web()
    assert await refused(server.websocket_url("not-the-token"), server.origin) == 403
    assert await refused(server.websocket_url(), "https://attacker.example") == 403
    assert await refused(server.websocket_url(), f"http://127.0.0.1:{server.port + 1}") == 403
    assert await refused(server.websocket_url(), None) == 403
    assert server.apps() == []  # nothing refused started an app

    async with websockets.connect(server.websocket_url(), origin=server.origin, max_size=None) as ws:
        text = await Tab(ws).panes()
    assert all(title in text for title in TITLES)


async def test_a_run_started_in_a_tab_outlives_it_and_tabs_reattach_to_it(web, web_project,
                                                                        stop_runs, isolated_home):
    server = web()
    async with websockets.connect(server.websocket_url(), origin=server.origin, max_size=None) as ws:
        tab = Tab(ws)
        await tab.until(lambda text: FORM_READY in text, "the form")
        [app] = server.apps()
        await tab.press("\x12")  # ctrl+r: start a run
        run = await eventually(lambda: [r for r in find_runs(web_project / "runs")
                                        if r.state() == "running"], "the run started")
        run = run[0]
        await tab.until(lambda text: run.name in text, "the Training pane on the run")

    # The tab closed: its app ended, the run goes on.
    await eventually(lambda: not alive(app), "the app of the closed tab to exit")
    assert server.apps() == []
    listing = subprocess.run([TUNEDECK, "runs", "--root", str(web_project / "runs")],
                             capture_output=True, text=True, env={"TUNEDECK_HOME": str(isolated_home)})
    assert run.name in listing.stdout and "running" in listing.stdout, listing.stdout

    # Two tabs at once, each its own app, both on the run that is going.
    async with websockets.connect(server.websocket_url(), origin=server.origin, max_size=None) as one, \
            websockets.connect(server.websocket_url(), origin=server.origin, max_size=None) as two:
        seen = await asyncio.gather(*(Tab(ws).until(lambda text: run.name in text and "running" in text,
                                                    "the tab reattached to the run")
                                      for ws in (one, two)))
        assert len(server.apps()) == 2
    assert all(run.name in text for text in seen)
    await eventually(lambda: server.apps() == [], "both tabs' apps to exit")
    assert run.state() == "running"


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
async def test_an_app_does_not_outlive_a_killed_server(web, how):
    server = web()
    async with websockets.connect(server.websocket_url(), origin=server.origin, max_size=None) as ws:
        await Tab(ws).panes()
        [app] = server.apps()
        server.process.send_signal(getattr(signal, how))
        await eventually(lambda: not alive(app), f"the app to exit after the server's {how}")
    assert server.process.wait() is not None


async def test_a_dropped_connection_ends_its_app(web):
    server = web()
    ws = await websockets.connect(server.websocket_url(), origin=server.origin, max_size=None)
    await Tab(ws).panes()
    [app] = server.apps()
    ws.transport.abort()  # no closing handshake: the network went away
    await eventually(lambda: not alive(app), "the app of the dropped connection to exit")
    assert server.process.poll() is None  # the server goes on for the next tab


async def test_a_transcript_saved_in_a_tab_is_also_downloaded(web, web_project):
    server = web()
    cookie = f"tunedeck-web-{server.port}={server.token}"
    async with websockets.connect(server.websocket_url(), origin=server.origin, max_size=None) as ws:
        tab = Tab(ws)
        await tab.until(lambda text: FORM_READY in text, "the form")
        mark = len(tab.screen)
        await tab.press("5")  # no field has the focus until the page gives the app its focus
        await tab.until(lambda text: "ask the model" in text, "the Chat pane", since=mark)
        # Asked at once: the pane may still be listing its models (the form shows the model's
        # name too, so its name on the screen does not say the list came), and the question
        # waits for the list, then for the chosen model to load.
        mark = len(tab.screen)
        await tab.press("who are you\r")
        await tab.until(lambda text: "answered:" in text, "the answer", since=mark)
        await tab.press("\x13")  # ctrl+s: save the transcript
        await tab.until(lambda text: "sent to the browser" in text, "the save", since=mark)
        await tab.until(lambda text: any(t[0] == "deliver_file_start" for t in tab.texts),
                        "the download offered")
        key = next(t[1] for t in tab.texts if t[0] == "deliver_file_start")

        [saved] = list((web_project / "chats").glob("chat-*.json"))
        assert get(server.page(f"/download/{key}"))[0] == 403  # the link alone is not enough
        status, headers, body = get(server.page(f"/download/{key}"), {"Cookie": cookie})
    assert status == 200
    assert headers["Content-Disposition"] == f'attachment; filename="{saved.name}"'
    assert body == saved.read_text()
    assert json.loads(body)["turns"][0]["user"] == "who are you"
