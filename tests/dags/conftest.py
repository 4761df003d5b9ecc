"""Real Airflow for the DAG tests: a temporary AIRFLOW_HOME with SQLite, migrated once per session,
and one long-lived Airflow process (``airflow_driver.py``) that parses the DAGs and runs ``dag.test()``."""

from __future__ import annotations

import collections
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import REPO

DRIVER = Path(__file__).with_name("airflow_driver.py")
MARK = "@@medcorpus-airflow@@"
BIN = Path(sys.executable).parent


class AirflowDriver:
    """Client of ``airflow_driver.py``: one JSON request, one JSON answer, log lines kept for errors."""

    def __init__(self, env: dict[str, str], cwd: Path, timeout_s: float = 600) -> None:
        self.timeout_s = timeout_s
        self.log: collections.deque[str] = collections.deque(maxlen=300)
        self._answers: queue.Queue[dict | None] = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, str(DRIVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=cwd,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.parsed = self._answer()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(MARK):
                self._answers.put(json.loads(line[len(MARK) :]))
            else:
                self.log.append(line.rstrip("\n"))
        self._answers.put(None)

    def _answer(self) -> dict:
        try:
            ans = self._answers.get(timeout=self.timeout_s)
        except queue.Empty:
            pytest.fail(f"airflow driver timed out; log tail:\n{self.log_tail()}")
        if ans is None:
            pytest.fail(f"airflow driver exited; log tail:\n{self.log_tail()}")
        if "error" in ans:
            pytest.fail(f"airflow driver error:\n{ans['error']}\nlog tail:\n{self.log_tail()}")
        return ans

    def log_tail(self, n: int = 80) -> str:
        return "\n".join(list(self.log)[-n:])

    def request(self, **req) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def dag_test(self, dag_id: str, **kw) -> dict:
        return self.request(op="test", dag_id=dag_id, **kw)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def medcorpus_bin() -> str:
    exe = BIN / "medcorpus"
    return str(exe) if exe.exists() else f"{sys.executable} -m pipelines.cli"


@pytest.fixture(scope="session")
def airflow(tmp_path_factory) -> AirflowDriver:
    """A migrated temporary Airflow home and a driver process on it (retries: 1 after 1 s)."""
    home = tmp_path_factory.mktemp("airflow_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MEDCORPUS_"))}
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",  # enabled, as in a deployment
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "MEDCORPUS_BIN": medcorpus_bin(),
        "MEDCORPUS_RETRIES": "1",
        "MEDCORPUS_RETRY_DELAY_S": "1",
        "LOGURU_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    migrate = subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"], env=env, cwd=home, capture_output=True, text=True
    )
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    driver = AirflowDriver(env, home)
    yield driver
    driver.close()
