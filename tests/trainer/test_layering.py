"""trainer/ depends on schemas/ only: never on pipelines/ or workers/ (the design's layering rule)."""

from __future__ import annotations

import ast
from pathlib import Path

TRAINER = Path(__file__).resolve().parents[2] / "trainer"


def test_trainer_imports_no_pipeline_or_worker_module() -> None:
    offenders = []
    files = sorted(TRAINER.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.name}: {n}" for n in names if n.split(".")[0] in ("pipelines", "workers", "dags")
            ]
    assert offenders == []


def test_cli_modules_do_not_import_torch_at_import_time() -> None:
    import subprocess
    import sys

    code = (
        "import sys, pipelines.commands.train, pipelines.commands.evaluate, trainer.cli, trainer.config;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=TRAINER.parent, check=True
    )
    assert out.stdout.strip() == "False"
