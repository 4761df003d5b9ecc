"""Open a data card in headless Chromium with Playwright and check it.

Used by the tests and by ``medcorpus report --screenshot``. The browser is Debian's
``chromium`` package (``/usr/bin/chromium``; ``make browser`` installs it), driven by Playwright
for Python (the ``medcorpus[browser]`` extra) through ``chromium.launch(executable_path=...)``:
Playwright's own browser downloads are never used, so nothing is fetched at run time. Chromium
runs headless with the flags that keep it off the network (no background networking, component
updates, sync or QUIC).

:func:`check_page` loads a local HTML file and reports: console errors and uncaught exceptions,
every network request that was not a ``file:``/``data:`` URL (a self-contained page makes none),
each ``<img>``'s natural size (0 means it did not decode), and optionally a PNG screenshot.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.preflight import MissingDependency

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_FLAGS = (
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--mute-audio",
)
_IMAGES_JS = """JSON.stringify(Array.from(document.images).map(function(i){return {role:i.dataset.role||'',
alt:i.alt,complete:i.complete,width:i.naturalWidth,height:i.naturalHeight};}))"""
_BOTTOM_JS = """(sel) => { const e = document.querySelector(sel);
  return e ? Math.ceil(e.getBoundingClientRect().bottom + window.scrollY) + 16 : 0; }"""


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
    return shutil.which("chromium")


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
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise MissingDependency("playwright", "medcorpus[browser] (playwright)") from None
    chromium = chromium or find_chromium()
    if not chromium:
        raise BrowserError("chromium not found: install Debian's chromium package (make browser)")
    out = PageCheck()
    ms = timeout * 1000
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=chromium, headless=True, args=list(CHROMIUM_FLAGS), timeout=ms
            )
            try:
                page = browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1)
                page.on(
                    "console",
                    lambda m: out.console_errors.append(m.text) if m.type in ("error", "assert") else None,
                )
                page.on("pageerror", lambda exc: out.exceptions.append(str(exc)))
                page.on(
                    "request",
                    lambda r: (
                        None
                        if r.url.startswith(("file:", "data:", "about:"))
                        else out.external_requests.append(r.url)
                    ),
                )
                page.goto(Path(html_path).resolve().as_uri(), wait_until="load", timeout=ms)
                page.wait_for_timeout(500)  # late console messages and image decodes
                out.images = json.loads(page.evaluate(_IMAGES_JS))
                out.title = page.title()
                out.page_height = int(page.evaluate("document.documentElement.scrollHeight"))
                if screenshot is not None:
                    h = min(out.page_height, max_height)
                    if until:
                        bottom = int(page.evaluate(_BOTTOM_JS, until))
                        if not bottom:
                            raise BrowserError(f"no element matches {until!r}")
                        h = min(h, bottom)
                    page.set_viewport_size({"width": width, "height": h})
                    page.screenshot(path=str(screenshot), clip={"x": 0, "y": 0, "width": width, "height": h})
                    out.screenshot = Path(screenshot)
            finally:
                browser.close()
    except PlaywrightError as exc:
        raise BrowserError(f"chromium could not be driven: {str(exc).splitlines()[0]}") from None
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.datacard.browser CARD.html SHOT.png [--width W] [--max-height H] [--until SEL]``."""
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
