"""Fuzz suite: print the cases run per parser and their outcomes at the end of the session."""

from __future__ import annotations

from tests.fuzz.harness import EXAMPLES, SEED, summary_lines


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    lines = summary_lines()
    if not lines:
        return
    terminalreporter.section(f"fuzz cases (max_examples={EXAMPLES}, seed={SEED or 'derandomized'})")
    for line in lines:
        terminalreporter.write_line(line)
