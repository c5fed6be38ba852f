"""``tunedeck web``: the app in a browser tab, through textual-serve's page script and app service.

One process serves the page; each WebSocket (a tab) gets an app process of its own, started as
``python -m tunedeck.tui.web PROJECT``. A run is a process of its own too, so a tab that closes
ends its app and never a run, and a tab opened later reattaches as the terminal app does.

What textual-serve leaves open, this closes:
- a token made per start guards the page, the WebSocket and downloads; the WebSocket also wants
  the page's own Origin, so another site open in the same browser cannot drive the app;
- the page connects at once (no splash to click, nothing fetched from other sites);
- an app whose connection is gone exits, also when the server was killed, and within a bound
  when its event loop is stuck (textual-serve's app stayed behind, busy, ignoring SIGTERM).

aiohttp and textual-serve are imported by the server only; the app processes never load them.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import secrets
import shlex
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from textual import messages
from textual.drivers.web_driver import WebDriver

from tunedeck.core.commands.web import is_loopback

# How long an app may take to close once told to (or once its connection is gone) before it is
# ended regardless: closing the app normally takes well under a second.
EXIT_GRACE_S = 10.0
# The server pings each tab this often and drops a connection that stops answering (a laptop
# asleep, an SSH tunnel gone), which ends that tab's app like a closed tab does.
HEARTBEAT_S = 15.0


# -- the app process: Textual's web driver, ending with its connection --------------------------
def _exit_after(seconds: float) -> None:
    """End this process after ``seconds`` whatever its threads are doing (a daemon timer runs
    even while the interpreter waits at exit for worker threads that do not stop)."""
    timer = threading.Timer(seconds, os._exit, (0,))
    timer.daemon = True
    timer.start()


class BrowserDriver(WebDriver):
    """Textual's web driver, and an app that exits when nobody is at the other end: the page
    closed (the server says quit), the server is gone (standard input ends, writes fail), or
    a SIGTERM came. Each asks the app to exit and ends the process if it has not within
    EXIT_GRACE_S, since a busy or blocked event loop would never get to the request."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The packets need standard output to themselves: a native library printing there
        # would break the stream. The driver keeps its own copy; fd 1 goes where stderr goes.
        self.fileno = os.dup(self.fileno)
        os.dup2(2, 1)
        self._write = self._write_to_server
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._ending = False
        self._connection_gone = False

    def _write_to_server(self, data: bytes) -> None:
        if self._connection_gone:
            return  # nobody reads it: a write could only block on a full pipe
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fileno, view):]
        except OSError:
            self.end(connection_gone=True)

    def start_application_mode(self) -> None:
        self._loop = asyncio.get_running_loop()
        super().start_application_mode()
        if sys.platform != "win32":
            # The web driver's handlers run on the event loop, so a stuck loop ignores them;
            # a plain handler runs between any two bytecodes of the main thread.
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._loop.remove_signal_handler(signum)
                signal.signal(signum, lambda *_: self.end())

    def run_input_thread(self) -> None:
        super().run_input_thread()
        if not self.exit_event.is_set():  # input ended while the app runs: the server is gone
            self.end(connection_gone=True)

    def on_meta(self, packet_type: str, payload: dict) -> None:
        if packet_type == "quit":  # the server's word that the tab closed
            self.end(connection_gone=True)
        else:
            super().on_meta(packet_type, payload)

    def end(self, connection_gone: bool = False) -> None:
        """Ask the app to exit, and make sure the process does; safe from any thread and from a
        signal handler (the request reaches the loop through its thread-safe wake-up)."""
        self._connection_gone = self._connection_gone or connection_gone
        if self._ending:
            return
        self._ending = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._app.post_message, messages.ExitApp())
        _exit_after(EXIT_GRACE_S)


def run_app_for_browser(project: Optional[Path]) -> None:
    """The app process of one tab (started by the server with the web driver's pipes)."""
    from .app import TunedeckApp

    app = TunedeckApp(project=project)
    app.driver_class = BrowserDriver
    app.run()
    # Worker threads still busy (a model load, say) must not keep the process after the app.
    _exit_after(EXIT_GRACE_S)


# -- the server ----------------------------------------------------------------------------------
PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tunedeck: {title}</title>
<link rel="stylesheet" href="/static/css/xterm.css">
<link rel="preload" href="/static/fonts/RobotoMono-VariableFont_wght.ttf" as="font" type="font/ttf" crossorigin>
<style>
  @font-face {{ font-family: "Roboto Mono"; src: url("/static/fonts/RobotoMono-VariableFont_wght.ttf"); }}
  html, body {{ margin: 0; height: 100%; background: #0c181f; overflow: hidden; }}
  #ended {{ display: none; position: fixed; inset: 0; align-items: center; justify-content: center;
           background: rgba(12, 24, 31, 0.9); color: #eee; font: 16px "Roboto Mono", monospace; }}
  body.-closed #ended {{ display: flex; }}
  #ended a {{ color: #8cf; margin-left: 1ch; }}
</style>
<script>
  // The page script opens a download in a new window, which a popup blocker stops (no click
  // led to it): a link clicked by the page downloads the same URL, with the page's cookie.
  const openWindow = window.open.bind(window);
  window.open = (url, target) => {{
    if (String(url).startsWith(location.origin + "/download/")) {{
      const link = document.createElement("a");
      link.href = url;
      link.download = "";
      document.body.append(link);
      link.click();
      link.remove();
      return null;
    }}
    return openWindow(url, target);
  }};
</script>
<script src="/static/js/textual.js"></script>
</head>
<body>
<div class="textual-terminal" data-session-websocket-url="{websocket_url}" data-font-size="16"></div>
<div id="ended">The app in this tab has closed; runs go on.<a href="">Reopen</a></div>
</body>
</html>
"""


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def page_url(host: str, port: int, token: str) -> str:
    """The URL to print: the address listened on, or this machine's name for a wildcard."""
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    return f"http://{_bracketed(shown)}:{port}/?token={token}"


class BrowserServer:
    """The page, the WebSocket of each tab and its downloads, all behind the token."""

    def __init__(self, project: Optional[Path], host: str, token: str, loopback: bool):
        from textual_serve.download_manager import DownloadManager

        self.project = project
        self.host = host
        self.token = token
        self.loopback = loopback  # listening on loopback only: the Host must name it too
        self.port = 0  # known once listening; names the cookie
        self.downloads = DownloadManager()
        self.tabs: dict = {}  # AppService -> its WebSocket

    # -- who may come in --------------------------------------------------------------------------
    @property
    def cookie(self) -> str:
        # Per port: cookies for one host are shared by all its ports (two servers, two tokens).
        return f"tunedeck-web-{self.port}"

    def _token_ok(self, given: Optional[str]) -> bool:
        return bool(given) and secrets.compare_digest(given.encode(), self.token.encode())

    def _allowed(self, request, token: Optional[str]) -> bool:
        """The token (in the URL or the page's cookie), and a Host naming this machine when
        listening on loopback only: a page of another site that makes its name point at
        127.0.0.1 (DNS rebinding) comes with its own name as Host."""
        if not (self._token_ok(token) or self._token_ok(request.cookies.get(self.cookie))):
            return False
        if self.loopback:
            return is_loopback(urlsplit(f"//{request.host}").hostname or "")
        return True

    def _same_origin(self, request) -> bool:
        """A WebSocket is not bound by the same-origin rule: any page can open one to 127.0.0.1.
        Only the page this server served (Origin = the Host it was asked for) may."""
        origin = request.headers.get("Origin")
        if not origin:
            return False
        return urlsplit(origin).netloc.lower() == request.host.lower()

    def _refuse(self, why: str):
        from aiohttp import web

        return web.Response(status=403, text=f"tunedeck web: {why}\n")

    # -- the three routes ---------------------------------------------------------------------------
    def application(self):
        from aiohttp import web
        import textual_serve

        static = Path(textual_serve.__file__).parent / "static"
        app = web.Application()
        app.add_routes([
            web.get("/", self.page),
            web.get("/ws/{token}", self.websocket),
            web.get("/download/{key}", self.download),
            web.static("/static", static),  # textual-serve's page script, styles and font
        ])
        app.on_shutdown.append(self._close_tabs)
        return app

    async def page(self, request):
        from aiohttp import web

        token = request.query.get("token")
        if not self._allowed(request, token):
            return self._refuse("open the URL that `tunedeck web` printed, with its token")
        scheme = "wss" if request.secure else "ws"
        body = PAGE.format(
            title=html.escape(self.project.name if self.project else "tunedeck"),
            websocket_url=html.escape(f"{scheme}://{request.host}/ws/{self.token}"))
        response = web.Response(text=body, content_type="text/html")
        response.headers["Cache-Control"] = "no-store"  # the page holds the token
        response.set_cookie(self.cookie, self.token, httponly=True, samesite="Strict", path="/")
        return response

    async def websocket(self, request):
        from aiohttp import WSMsgType, web
        from textual_serve.app_service import AppService

        if not self._allowed(request, request.match_info["token"]):
            return self._refuse("this connection needs the token of the page")
        if not self._same_origin(request):
            return self._refuse("a connection from another site's page is refused")
        width = _number(request.query.get("width"), 80)
        height = _number(request.query.get("height"), 24)
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S)
        await ws.prepare(request)
        tab = AppService(self._app_command(), write_bytes=ws.send_bytes, write_str=ws.send_str,
                         close=ws.close, download_manager=self.downloads)
        self.tabs[tab] = ws
        try:
            await tab.start(width, height)
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await self._from_page(ws, tab, message.data)
        finally:
            await self._end(tab)
        return ws

    async def _from_page(self, ws, tab, text: str) -> None:
        """One envelope of the page script: keys, a new size, focus, or a ping."""
        try:
            kind, *rest = json.loads(text)
        except (ValueError, TypeError):
            return
        data = rest[0] if rest else None
        if kind == "stdin" and isinstance(data, str):
            await tab.send_bytes(data.encode("utf-8"))
        elif kind == "resize" and isinstance(data, dict):
            await tab.set_terminal_size(_number(data.get("width"), 80), _number(data.get("height"), 24))
        elif kind == "ping":
            await ws.send_json(["pong", data])
        elif kind == "focus":
            await tab.focus()
        elif kind == "blur":
            await tab.blur()

    async def download(self, request):
        """A file the app delivers (a chat transcript): the page fetches it with its cookie."""
        from aiohttp import web

        if not self._allowed(request, request.query.get("token")):
            return self._refuse("a download needs the token of the page")
        key = request.match_info["key"]
        try:
            meta = await self.downloads.get_download_metadata(key)
        except KeyError:
            raise web.HTTPNotFound(text="tunedeck web: no such download (each link works once)\n")
        content_type = meta.mime_type or "application/octet-stream"
        if meta.encoding:
            content_type += f"; charset={meta.encoding}"
        disposition = "inline" if meta.open_method == "browser" else "attachment"
        response = web.StreamResponse(headers={
            "Content-Type": content_type,
            "Content-Disposition": f'{disposition}; filename="{_header_safe(meta.file_name)}"',
        })
        await response.prepare(request)
        async for chunk in self.downloads.download(key):
            await response.write(chunk)
        await response.write_eof()
        return response

    # -- the app of each tab -------------------------------------------------------------------------
    def _app_command(self) -> str:
        # textual-serve starts it through a shell: exec, so the app is the shell's own process.
        argv = [sys.executable, "-m", "tunedeck.tui.web"]
        if self.project is not None:
            argv.append(str(self.project))
        return "exec " + shlex.join(argv)

    async def _end(self, tab) -> None:
        """Tell the tab's app to quit and wait for it; past the grace, kill it."""
        self.tabs.pop(tab, None)
        try:
            await asyncio.wait_for(tab.stop(), EXIT_GRACE_S)
        except asyncio.TimeoutError:
            process = tab._process  # textual-serve keeps the app's process to itself
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()

    async def _close_tabs(self, _app) -> None:
        """The server stops: every tab's app ends with it (runs do not)."""
        tabs = list(self.tabs.items())
        await asyncio.gather(*(self._end(tab) for tab, _ in tabs), return_exceptions=True)
        await asyncio.gather(*(ws.close() for _, ws in tabs), return_exceptions=True)


def _number(value, default: int) -> int:
    try:
        return max(1, min(int(value), 10_000))
    except (TypeError, ValueError):
        return default


def _header_safe(name: str) -> str:
    return "".join(c for c in name if c.isprintable() and c not in '"\\')


async def _serve(project: Optional[Path], host: str, port: int) -> None:
    from aiohttp import web

    from tunedeck.core.errors import BadInput

    server = BrowserServer(project, host, secrets.token_urlsafe(24), loopback=is_loopback(host))
    runner = web.AppRunner(server.application(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise BadInput(f"{host}:{port}: cannot listen there ({exc.strerror or exc}); "
                       "choose another --port or --host")
    server.port = runner.addresses[0][1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"tunedeck web: serving {project or 'no project'}", flush=True)
    print(f"open {page_url(host, server.port, server.token)}", flush=True)
    print("ctrl+c stops the server and its tabs' apps; runs go on", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(project: Optional[Path], host: str, port: int) -> int:
    asyncio.run(_serve(project, host, port))
    return 0


if __name__ == "__main__":
    run_app_for_browser(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
