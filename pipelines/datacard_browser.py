"""Open a data card in headless Chromium over the Chrome DevTools Protocol (CDP) and check it.

Used by the tests and by ``medcorpus report --screenshot``. Chromium is Debian's ``chromium``
package (``/usr/bin/chromium``; ``make browser`` installs it). It is started headless with the
flags that keep it off the network (no background networking, component updates, sync or QUIC),
``--remote-debugging-port=0`` and a throw-away profile; the port it picked is read from
``DevToolsActivePort`` in that profile. The ``websockets`` package (sync client) speaks CDP.

:func:`check_page` loads a local HTML file and reports: console errors and uncaught exceptions,
every network request that was not a ``file:``/``data:`` URL (a self-contained page makes none),
each ``<img>``'s natural size (0 means it did not decode), and optionally a PNG screenshot.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

log = logging.getLogger(__name__)

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--mute-audio",
)


class BrowserError(RuntimeError):
    """Chromium could not be found, started or driven."""


@dataclass
class PageCheck:
    """What the browser saw. ``images``: ``{"role", "alt", "complete", "width", "height"}`` each."""

    title: str = ""
    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    page_height: int = 0
    screenshot: Path | None = None

    @property
    def broken_images(self) -> list[dict[str, Any]]:
        return [i for i in self.images if not i["complete"] or i["width"] <= 0]


def find_chromium() -> str | None:
    """Path of a Chromium binary (``$CHROMIUM`` first), or None."""
    env = os.environ.get("CHROMIUM")
    for cand in ((env,) if env else ()) + CHROMIUM_CANDIDATES:
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    found = shutil.which("chromium")
    return found


class _Cdp:
    """A minimal CDP client over one browser websocket, with flattened target sessions."""

    def __init__(self, ws, timeout: float) -> None:
        self.ws = ws  # an open websockets.sync ClientConnection
        self.timeout = timeout
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        mid = next(self.ids)
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"CDP {method}: no answer in {self.timeout:.0f}s")
            data = json.loads(self.ws.recv(timeout=left))
            if data.get("id") == mid:
                if "error" in data:
                    raise BrowserError(f"CDP {method}: {data['error'].get('message')}")
                return data.get("result", {})
            if "method" in data:
                self.events.append(data)

    def wait_event(self, method: str, timeout: float) -> dict:
        for i, ev in enumerate(self.events):
            if ev["method"] == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"CDP: no {method} in {timeout:.0f}s")
            data = json.loads(self.ws.recv(timeout=left))
            if data.get("method") == method:
                return data
            if "method" in data:
                self.events.append(data)

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                data = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                return
            if "method" in data:
                self.events.append(data)


def _start(chromium: str, profile: Path, timeout: float) -> tuple[subprocess.Popen, str]:
    cmd = [
        chromium,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "about:blank",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrowserError(f"chromium exited at start (code {proc.returncode})")
        if port_file.exists():
            lines = port_file.read_text().split()
            if len(lines) >= 2:
                return proc, f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.1)
    proc.kill()
    raise BrowserError(f"chromium did not open its DevTools port in {timeout:.0f}s")


_IMAGES_JS = """JSON.stringify(Array.from(document.images).map(function(i){return {role:i.dataset.role||'',
alt:i.alt,complete:i.complete,width:i.naturalWidth,height:i.naturalHeight};}))"""


def _drive(
    cdp: _Cdp,
    out: PageCheck,
    url: str,
    screenshot: Path | None,
    width: int,
    max_height: int,
    timeout: float,
    until: str | None = None,
) -> None:
    """Open ``url`` in a new target, collect what :class:`PageCheck` reports, take the screenshot."""
    target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    sid = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        cdp.send(f"{domain}.enable", session=sid)
    cdp.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        session=sid,
    )
    cdp.send("Page.navigate", {"url": url}, session=sid)
    cdp.wait_event("Page.loadEventFired", timeout)
    cdp.drain(0.5)
    res = cdp.send("Runtime.evaluate", {"expression": _IMAGES_JS, "returnByValue": True}, session=sid)
    out.images = json.loads(res["result"]["value"])
    res = cdp.send("Runtime.evaluate", {"expression": "document.title", "returnByValue": True}, session=sid)
    out.title = res["result"]["value"]
    metrics = cdp.send("Page.getLayoutMetrics", session=sid)
    out.page_height = int(metrics["cssContentSize"]["height"])
    if screenshot is not None:
        h = min(out.page_height, max_height)
        if until:
            js = f"(function(e){{return e?Math.ceil(e.getBoundingClientRect().bottom+window.scrollY)+16:0}})(document.querySelector({json.dumps(until)}))"
            bottom = cdp.send("Runtime.evaluate", {"expression": js, "returnByValue": True}, session=sid)
            if not bottom["result"]["value"]:
                raise BrowserError(f"no element matches {until!r}")
            h = min(h, int(bottom["result"]["value"]))
        cdp.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": h, "deviceScaleFactor": 1, "mobile": False},
            session=sid,
        )
        shot = cdp.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": False,
                "clip": {"x": 0, "y": 0, "width": width, "height": h, "scale": 1},
            },
            session=sid,
        )
        Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
        out.screenshot = Path(screenshot)
    cdp.drain(0.2)
    for ev in cdp.events:
        m, p = ev["method"], ev.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.console_errors.append(
                " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            )
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            out.console_errors.append(str(p["entry"].get("text", "")))
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.exceptions.append(str(d.get("exception", {}).get("description") or d.get("text", "")))
        elif m == "Network.requestWillBeSent":
            req_url = p.get("request", {}).get("url", "")
            if not req_url.startswith(("file:", "data:", "about:")):
                out.external_requests.append(req_url)


def check_page(
    html_path: Path,
    *,
    screenshot: Path | None = None,
    width: int = 1280,
    max_height: int = 16000,
    chromium: str | None = None,
    timeout: float = 60.0,
    until: str | None = None,
) -> PageCheck:
    """Load ``html_path`` in headless Chromium; report errors, requests, images; optional screenshot.

    ``screenshot`` gets a full-page PNG at ``width`` CSS px (capped at ``max_height`` px tall, or at
    the bottom edge of the element matching the CSS selector ``until``).
    """
    chromium = chromium or find_chromium()
    if not chromium:
        raise BrowserError("chromium not found: install Debian's chromium package (make browser)")
    url = Path(html_path).resolve().as_uri()
    out = PageCheck()
    with tempfile.TemporaryDirectory(prefix="medcorpus-chromium-") as tmp:
        proc, ws_url = _start(chromium, Path(tmp), timeout)
        try:
            with connect(ws_url, max_size=None, open_timeout=timeout) as ws:
                cdp = _Cdp(ws, timeout)
                try:
                    _drive(cdp, out, url, screenshot, width, max_height, timeout, until)
                finally:
                    try:
                        cdp.send("Browser.close")
                    except Exception:  # noqa: BLE001 - the browser may already be gone
                        pass
        finally:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.datacard_browser CARD.html SHOT.png [--width W] [--max-height H] [--until SEL]``."""
    import argparse

    p = argparse.ArgumentParser(description="check a data card in headless Chromium and screenshot it")
    p.add_argument("html", type=Path)
    p.add_argument("png", type=Path)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--max-height", type=int, default=16000)
    p.add_argument(
        "--until", help="CSS selector: the screenshot ends below this element (e.g. '#accounting')"
    )
    args = p.parse_args(argv)
    chk = check_page(
        args.html, screenshot=args.png, width=args.width, max_height=args.max_height, until=args.until
    )
    problems = (
        chk.console_errors + chk.exceptions + chk.external_requests + [i["alt"] for i in chk.broken_images]
    )
    print(
        f"{args.html.name}: {len(chk.images)} images, page {chk.page_height} px, "
        f"{len(problems)} problems; screenshot {args.png}"
    )
    for msg in problems:
        print(f"  {msg[:200]}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
