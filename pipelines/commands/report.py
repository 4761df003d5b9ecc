"""``medcorpus report BUILD [--out FILE] [--json FILE] [--screenshot PNG] [--quiet]``: the data card.

Writes a self-contained HTML data card (default ``BUILD/datacard.html``) and its JSON twin
(default: the HTML path with ``.json``). ``--screenshot`` also opens the card in headless
Chromium, checks it loaded cleanly (no console errors, no network request, every image
decoded) and saves a full-page PNG; a failed check exits 1. A broken accounting identity is
shown on the card and in the summary line (``medcorpus validate`` is the gate for it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pipelines.config import ConfigError


def register(sub) -> None:
    p = sub.add_parser("report", help="write the data card (HTML + JSON twin) of a build")
    p.add_argument("build", type=Path, help="a build output folder")
    p.add_argument("--out", type=Path, help="HTML file to write (default BUILD/datacard.html)")
    p.add_argument("--json", type=Path, help="JSON twin to write (default: --out with .json)")
    p.add_argument("--screenshot", type=Path, help="also check the card in headless Chromium and save a PNG")
    p.add_argument("--quiet", action="store_true", help="no progress bars (for schedulers)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.datacard import write_datacard

    if not args.build.is_dir():
        raise ConfigError(f"build folder not found: {args.build}")
    if not (args.build / "manifest.parquet").exists():
        raise ConfigError(f"not a finished build (no manifest.parquet): {args.build}")
    t0 = time.perf_counter()
    res = write_datacard(args.build, html_path=args.out, json_path=args.json, quiet=args.quiet)
    status = 0
    extra = ""
    if args.screenshot:
        from pipelines.datacard.browser import BrowserError, check_page

        try:
            chk = check_page(res.html_path, screenshot=args.screenshot)
        except BrowserError as exc:
            raise ConfigError(str(exc)) from exc
        problems = (
            len(chk.console_errors)
            + len(chk.exceptions)
            + len(chk.external_requests)
            + len(chk.broken_images)
        )
        extra = (
            f"; browser: {len(chk.images)} images decoded, {problems} problems, screenshot {args.screenshot}"
        )
        for msg in chk.console_errors + chk.exceptions:
            print(f"  console error: {msg[:200]}")
        for url in chk.external_requests:
            print(f"  external request: {url[:200]}")
        for img in chk.broken_images:
            print(f"  image did not decode: {img['alt'][:120]}")
        status = 1 if problems else 0
    ident = "holds" if res.identity_holds else "BROKEN"
    print(
        f"medcorpus report: {res.html_path} ({res.html_bytes / 1e6:.1f} MB, {res.n_gallery_images} gallery images)"
        f" + {res.json_path.name}: {res.n_samples} samples, {res.n_quarantined} quarantined units, "
        f"accounting identity {ident}{extra}; {time.perf_counter() - t0:.1f}s"
    )
    return status
