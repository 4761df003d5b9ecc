"""WHICH steps, in WHAT order, and HOW they run: build graph, runners, global stages, writer, CLI."""
