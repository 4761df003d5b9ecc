"""The ``medcorpus`` command line. Subcommands live in ``pipelines/commands/`` (one module each,
with ``register(subparsers)``); they are discovered, so adding a command is adding a file.

User errors (bad path, unreadable config, bad value) print one line and exit 2, never a traceback;
so does a command whose optional package is not installed (``medcorpus train`` without torch):
the line names the extra that installs it (``pipelines.preflight.EXTRA_OF``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys

from pipelines import commands
from pipelines.config import ConfigError
from pipelines.errors import UserError
from pipelines.preflight import from_import_error, is_missing_dependency


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medcorpus",
        description="Turn raw hospital data into de-identified multimodal WebDataset corpora.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"pipelines.commands.{mod.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("LOGURU_LEVEL", "WARNING")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet = getattr(args, "quiet", False)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else (logging.WARNING if quiet else logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("matplotlib", "PIL", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        try:
            return int(args.func(args) or 0)
        except ImportError as exc:
            if not is_missing_dependency(exc):
                raise  # a bug in our own imports keeps its traceback
            raise from_import_error(exc) from None
    except (UserError, ConfigError, FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        msg = (
            str(exc)
            if not isinstance(exc, OSError) or not exc.filename
            else f"{exc.strerror}: {exc.filename}"
        )
        print(f"medcorpus {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"medcorpus {args.command}: interrupted (rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
