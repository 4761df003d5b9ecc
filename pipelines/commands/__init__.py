"""CLI subcommands: each module defines ``register(subparsers)`` and a handler returning an exit code."""
