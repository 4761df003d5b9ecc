"""Benchmark: LLM report structuring with vLLM: reports/s, output tokens/s, structured-output overhead.

The same prompts (the structurer's own: shared system prefix + one report each) are run twice
through vLLM, once under structured outputs (the generation schema, ``guidance`` backend) and
once as free text, with temperature 0 and the same ``--max-tokens``. A warm-up request of each
kind runs first (model load, grammar compile, prefix cache). For each run it prints wall time,
reports/s, output tokens/s, seconds per output token and the share of schema-valid outputs;
the overhead is the ratio of seconds per output token with and without the schema (free text
can stop at a different length, so per-token cost is the fair comparison), plus the ratio of
reports/s with and without the schema.

Modes:

* ``--mode server``: the OpenAI-compatible API through :class:`workers.llm.client.AsyncLlmClient`
  (``--max-in-flight`` concurrent requests). Without ``--base-url`` a server is started from
  ``--model`` with the vLLM environment's Python (``--python``) and stopped at the end.
* ``--mode offline``: :class:`workers.llm.offline.OfflineEngine` (``vllm.LLM.chat`` over the whole
  batch in a worker process).

Reports: the PTB-XL sample (``--reports CSV``, column ``--column``), first ``--n`` rows.
Without a GPU (no ``nvidia-smi``) the CPU settings of the tests are used (float32, eager,
KV cache 1 GiB, 20 % of RAM); with one, vLLM's defaults (see docs/vllm.md). Examples::

    .venv/bin/python bench/bench_llm.py --model build/tiny-llm --mode server
    .venv/bin/python bench/bench_llm.py --model /models/Qwen2.5-7B-Instruct --mode offline --n 512 \\
        --max-tokens 1024 --tensor-parallel-size 1 --max-model-len 8192

Run with no arguments (``make bench``) it uses ``build/tiny-llm`` and skips if that or
``.venv-vllm`` is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workers.llm.config import Completion, LlmConfig, LlmRequest  # noqa: E402
from workers.llm.structurer import build_request, validate_output  # noqa: E402

DEFAULT_MODEL = REPO / "build" / "tiny-llm"
DEFAULT_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
DEFAULT_REPORTS = (
    REPO.parent / "shared" / "data" / "reports" / "ptbxl_ecg" / "ptbxl_database_subset_partA.csv"
)


def load_reports(path: Path, column: str, n: int, report_type: str) -> list[tuple[str, str, str]]:
    """First ``n`` non-empty texts of ``column`` as (text, report_type, language)."""
    try:
        from workers.report.nlp.lang import detect_language
    except ImportError:  # language only goes into the prompt and the schema

        def detect_language(text: str) -> str:
            return "und"

    with open(path, newline="", encoding="utf-8") as f:
        texts = [row[column].strip() for row in csv.DictReader(f) if row.get(column, "").strip()]
    return [(t, report_type, detect_language(t)) for t in texts[:n]]


def requests_for(reports, config: LlmConfig, schema: bool) -> list[LlmRequest]:
    """The structurer's own requests (``build_request``), with or without the schema."""
    return [build_request(rep, config, structured=schema) for rep in reports]


class Runner:
    """Sends request batches through one mode; ``close()`` stops what it started."""

    def __init__(self, args: argparse.Namespace, gpu: bool) -> None:
        self.args = args
        self.server = None
        self.engine = None
        self.startup_s = 0.0
        cpu = {} if gpu else {"dtype": "float32", "enforce_eager": True, "gpu_memory_utilization": 0.2}
        engine_kw = {
            "dtype": args.dtype or cpu.get("dtype", "auto"),
            "enforce_eager": args.enforce_eager or cpu.get("enforce_eager", False),
            "gpu_memory_utilization": args.gpu_memory_utilization or cpu.get("gpu_memory_utilization", 0.85),
            "max_model_len": args.max_model_len,
            "tensor_parallel_size": args.tensor_parallel_size,
            "kv_cache_space_gib": 0 if gpu else 1,
        }
        base_url, name = args.base_url, args.served_model_name or Path(args.model).name
        if args.mode == "server" and not base_url:
            from workers.llm.server import ServerSpec, VllmServer, free_port

            spec = ServerSpec(
                model=args.model,
                served_model_name=name,
                port=free_port(),
                python_executable=args.python,
                **engine_kw,
            )
            self.server = VllmServer(spec).start(timeout_s=1800)
            self.startup_s = self.server.startup_s
            base_url = spec.base_url
        self.config = LlmConfig(
            mode=args.mode,
            base_url=base_url or "http://127.0.0.1:8000/v1",
            model=name if args.mode == "server" else args.model,
            max_in_flight=args.max_in_flight,
            max_tokens=args.max_tokens,
            python_executable=args.python,
            single_process=not gpu,
            worker_timeout_s=3600,
            request_timeout_s=3600,
            **{k: v for k, v in engine_kw.items()},
        )
        if args.mode == "offline":
            from workers.llm.offline import OfflineEngine

            self.engine = OfflineEngine(self.config)
            self.engine.start()
            self.startup_s = self.engine.startup_s

    def run(self, requests: list[LlmRequest]) -> list[Completion]:
        if self.engine is not None:
            return self.engine.generate(requests)
        from workers.llm.client import AsyncLlmClient

        async def go():
            async with AsyncLlmClient(self.config) as client:
                return await client.complete_all(requests)

        return asyncio.run(go())

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        if self.server is not None:
            self.server.stop()


def measure(runner: Runner, reports, requests: list[LlmRequest]) -> dict:
    t0 = time.perf_counter()
    out = runner.run(requests)
    wall = time.perf_counter() - t0
    tokens = sum(c.completion_tokens for c in out)
    valid = sum(
        validate_output(c, rt, lang)[0] is not None for c, (_, rt, lang) in zip(out, reports, strict=True)
    )
    return {
        "reports": len(out),
        "wall_s": round(wall, 3),
        "reports_per_s": round(len(out) / wall, 2),
        "output_tokens": tokens,
        "output_tokens_per_s": round(tokens / wall, 1),
        "s_per_output_token": wall / tokens if tokens else float("nan"),
        "mean_output_tokens": round(tokens / len(out), 1),
        "stopped_by_length": sum(c.finish_reason == "length" for c in out),
        "schema_valid": valid,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="local model folder (HF format)")
    p.add_argument("--mode", choices=("server", "offline"), default="server")
    p.add_argument("--base-url", default="", help="use a running server instead of starting one")
    p.add_argument("--served-model-name", default="", help="model name on that server (default: folder name)")
    p.add_argument("--python", default=str(DEFAULT_PYTHON), help="Python of the vLLM environment")
    p.add_argument("--reports", type=Path, default=DEFAULT_REPORTS)
    p.add_argument("--column", default="report")
    p.add_argument("--report-type", default="cardiology", choices=("radiology", "cardiology", "other"))
    p.add_argument("--n", type=int, default=64, help="reports per run")
    p.add_argument("--max-tokens", type=int, default=1024)
    p.add_argument("--max-in-flight", type=int, default=64)
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    p.add_argument("--max-model-len", type=int, default=4096)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.0, help="0: 0.85 on GPU, 0.2 on CPU")
    p.add_argument("--dtype", default="", help="empty: auto on GPU, float32 on CPU")
    p.add_argument("--enforce-eager", action="store_true")
    p.add_argument("--json-out", type=Path, default=None, help="also write the figures as JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")

    needs_python = not (args.mode == "server" and args.base_url)
    if needs_python and not Path(args.python).exists():
        print(f"skip: vLLM environment not found ({args.python}); run `make vllm-env`")
        return 0
    if not args.base_url and not Path(args.model).is_dir():
        print(f"skip: model folder not found ({args.model}); `make tiny-llm` builds the tiny test model")
        return 0
    if not args.reports.exists():
        print(f"skip: reports file not found ({args.reports})")
        return 0

    gpu = shutil.which("nvidia-smi") is not None
    reports = load_reports(args.reports, args.column, args.n, args.report_type)
    runner = Runner(args, gpu)
    try:
        with_schema = requests_for(reports, runner.config, schema=True)
        free_text = requests_for(reports, runner.config, schema=False)
        runner.run(with_schema[:1] + free_text[:1])  # warm-up: grammar compile, prefix cache
        results = {
            "free_text": measure(runner, reports, free_text),
            "schema": measure(runner, reports, with_schema),
        }
    finally:
        runner.close()

    s, f = results["schema"], results["free_text"]
    overhead_token = s["s_per_output_token"] / f["s_per_output_token"] - 1
    report_ratio = s["reports_per_s"] / f["reports_per_s"]
    summary = {
        "model": Path(args.model).name,
        "mode": args.mode,
        "device": "gpu" if gpu else "cpu",
        "startup_s": round(runner.startup_s, 1),
        "max_tokens": args.max_tokens,
        **results,
        "structured_overhead_per_token": round(overhead_token, 3),
        "reports_per_s_schema_over_free_text": round(report_ratio, 3),
    }
    print(
        f"model {summary['model']} | mode {args.mode} | {summary['device']} | startup {summary['startup_s']} s"
    )
    print(f"{'run':<10} {'reports':>7} {'wall s':>8} {'reports/s':>10} {'out tok/s':>10} {'tok/report':>10} "
          f"{'len-stop':>8} {'valid':>6}")  # fmt: skip
    for name, r in (("schema", s), ("free text", f)):
        print(
            f"{name:<10} {r['reports']:>7} {r['wall_s']:>8.2f} {r['reports_per_s']:>10.2f} "
            f"{r['output_tokens_per_s']:>10.1f} {r['mean_output_tokens']:>10.1f} {r['stopped_by_length']:>8} "
            f"{r['schema_valid']:>6}"
        )
    print(
        f"structured-output overhead: {overhead_token:+.1%} time per output token; reports/s with the schema "
        f"= {report_ratio:.2f}x free text (free text may stop at another length)"
    )
    for r in results.values():
        r["s_per_output_token"] = round(r["s_per_output_token"], 6)
    if args.json_out:
        args.json_out.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
