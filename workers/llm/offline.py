"""Offline batch generation with ``vllm.LLM`` in a dedicated worker process.

vLLM cannot share the pipeline's environment (its pins conflict with Beam's), so the parent
(:class:`OfflineEngine`, pipeline side) runs ``<python_executable> -m workers.llm.offline`` from
the vLLM environment (``.venv-vllm`` on a CPU, the GPU worker image in production) and talks to
it over the child's stdin/stdout in JSON lines:

1. parent → child: the engine settings (model path, tensor parallel size, ...);
   child → parent: ``{"ready": true, ...}`` once the model is loaded;
2. parent → child: ``{"requests": [{"messages", "schema", "max_tokens", "seed"}, ...]}``;
   child → parent: ``{"results": [{"text", "finish_reason", "prompt_tokens", "completion_tokens"}]}``
   in the same order (one ``vllm.LLM.chat`` call over the whole batch: continuous batching and
   automatic prefix caching over the shared system prompt);
3. EOF on stdin ends the child.

The child moves its own (and vLLM's) stdout logging to stderr before importing vLLM, so the
protocol channel carries nothing else. stderr goes to a log file. If the child dies, hangs past
``worker_timeout_s`` or answers garbage, :class:`~workers.llm.config.LlmWorkerFailed` is raised
and the batch returns nothing (the shard is retried). This module imports only the standard
library at import time; the ``vllm`` import happens inside the child's ``main``.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workers.llm.config import (
    REPO_ROOT,
    STRUCTURED_BACKEND,
    Completion,
    LlmConfig,
    LlmRequest,
    LlmWorkerFailed,
)

log = logging.getLogger(__name__)


def engine_settings(config: LlmConfig) -> dict:
    """The ``vllm.LLM`` keyword arguments the child uses (JSON-serialisable)."""
    settings = {
        "model": config.model,
        "tensor_parallel_size": config.tensor_parallel_size,
        "max_model_len": config.max_model_len,
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "dtype": config.dtype,
        "enforce_eager": config.enforce_eager,
        "seed": config.seed,
        "enable_prefix_caching": True,
        "structured_outputs_config": {"backend": STRUCTURED_BACKEND, "disable_any_whitespace": True},
    }
    if config.single_process:
        settings["distributed_executor_backend"] = "uni"
    return settings


class OfflineEngine:
    """Pipeline-side handle on one offline vLLM worker process (start once, many batches).

    ``log_path``: where the child's stderr (vLLM's log) goes; default a temp file.
    """

    def __init__(self, config: LlmConfig, log_path: Path | None = None) -> None:
        self.config = config
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="vllm-offline-", suffix=".log")[1])
        self._proc: subprocess.Popen | None = None
        self._buf = b""
        self.startup_s = 0.0

    def __enter__(self) -> OfflineEngine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Spawn the worker and wait until vLLM has loaded the model (or raise LlmWorkerFailed)."""
        if self._proc is not None:
            return
        python = self.config.python_executable
        if not Path(python).exists():
            raise LlmWorkerFailed("offline vLLM python not found (build it with `make vllm-env`)")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        if self.config.kv_cache_space_gib:
            env["VLLM_CPU_KVCACHE_SPACE"] = str(self.config.kv_cache_space_gib)
        if self.config.single_process:
            env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
            env.setdefault("OMP_NUM_THREADS", "1")  # measured: 2 threads in-process were 15x slower
        t0 = time.monotonic()
        with open(self.log_path, "ab") as err:
            self._proc = subprocess.Popen(
                [python, "-m", "workers.llm.offline"],
                cwd=str(REPO_ROOT),
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        self._send({"engine": engine_settings(self.config)})
        reply = self._receive(self.config.worker_timeout_s)
        if not reply.get("ready"):
            self._fail("offline vLLM worker did not become ready")
        self.startup_s = time.monotonic() - t0
        log.info("offline vLLM worker ready in %.1f s (vllm %s)", self.startup_s, reply.get("vllm", "?"))

    def generate(self, requests: list[LlmRequest]) -> list[Completion]:
        """Run one batch; results in input order. Raises LlmWorkerFailed on any worker failure."""
        if not requests:
            return []
        self.start()
        payload = [
            {
                "messages": list(r.messages),
                "schema": r.schema,
                "max_tokens": r.max_tokens,
                "seed": self.config.seed,
            }
            for r in requests
        ]
        self._send({"requests": payload})
        reply = self._receive(self.config.worker_timeout_s)
        results = reply.get("results")
        if not isinstance(results, list) or len(results) != len(requests):
            self._fail("offline vLLM worker answered a malformed batch")
        return [
            Completion(
                text=r.get("text"),
                finish_reason=r.get("finish_reason", ""),
                prompt_tokens=int(r.get("prompt_tokens", 0)),
                completion_tokens=int(r.get("completion_tokens", 0)),
                error=r.get("error", ""),
            )
            for r in results
        ]

    def close(self) -> None:
        """End the worker (EOF, then terminate/kill if it lingers)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin:
                proc.stdin.close()
            proc.wait(timeout=30)
        except (subprocess.TimeoutExpired, OSError):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        finally:
            if proc.stdout:
                proc.stdout.close()

    # -- protocol ---------------------------------------------------------------------------

    def _fail(self, message: str) -> None:
        code = self._proc.poll() if self._proc else None
        self.close()
        raise LlmWorkerFailed(f"{message} (exit code {code}; worker log: {self.log_path})")

    def _send(self, obj: dict) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._fail("offline vLLM worker closed its input")

    def _receive(self, timeout_s: float) -> dict:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._fail(f"offline vLLM worker gave no answer within {timeout_s:.0f} s")
                if not sel.select(timeout=min(left, 1.0)):
                    if self._proc.poll() is not None:
                        self._fail("offline vLLM worker died")
                    continue
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    self._fail("offline vLLM worker died")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            self._fail("offline vLLM worker broke the protocol")
            raise  # unreachable


# -- child side (runs in the vLLM environment) ----------------------------------------------


def _child_generate(llm, batch: list[dict]) -> list[dict]:
    """One ``LLM.chat`` over the batch; if vLLM rejects the batch, isolate the bad requests."""
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    def params(r: dict) -> SamplingParams:
        so = StructuredOutputsParams(json=r["schema"]) if r.get("schema") is not None else None
        return SamplingParams(
            temperature=0.0, max_tokens=r["max_tokens"], seed=r.get("seed", 0), structured_outputs=so
        )

    def run(items: list[dict]) -> list[dict]:
        outs = llm.chat(
            [r["messages"] for r in items], sampling_params=[params(r) for r in items], use_tqdm=False
        )
        return [
            {
                "text": o.outputs[0].text,
                "finish_reason": o.outputs[0].finish_reason or "",
                "prompt_tokens": len(o.prompt_token_ids or ()),
                "completion_tokens": len(o.outputs[0].token_ids),
            }
            for o in outs
        ]

    try:
        return run(batch)
    except (ValueError, TypeError) as exc:  # e.g. one prompt longer than max_model_len
        sys.stderr.write(f"batch rejected ({type(exc).__name__}); isolating requests\n")
    results = []
    for r in batch:
        try:
            results.extend(run([r]))
        except (ValueError, TypeError) as exc:
            results.append({"text": None, "finish_reason": "rejected", "error": type(exc).__name__})
    return results


def main() -> int:
    """Child entry point: JSON lines on stdin → JSON lines on the saved stdout."""
    proto = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # vLLM and its worker processes log to stdout: send that to stderr
    sys.stdout = sys.stderr
    first = sys.stdin.buffer.readline()
    if not first:
        return 0
    settings = json.loads(first)["engine"]

    import vllm

    llm = vllm.LLM(**settings)
    proto.write(json.dumps({"ready": True, "vllm": vllm.__version__}).encode() + b"\n")
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        batch = json.loads(line)["requests"]
        results = _child_generate(llm, batch)
        proto.write(json.dumps({"results": results}, ensure_ascii=False).encode("utf-8") + b"\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
