"""The signal-free per-call limit (``pipelines.watchdog``) with real helper processes, and the
decode step's per-item timeout built on it, from the main thread and from worker threads."""

from __future__ import annotations

import operator
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import replace

import pytest

from pipelines import decode, watchdog
from pipelines.watchdog import ChildDied, ItemTimeout, call_with_limit
from schemas.records import InputItem, InputKind
from tests.conftest import REPO
from workers.config import LimitsConfig

HANG = (("nifti", "tests.fixtures.faulty_decoders:hang"),)


def helper_pid() -> int:
    """The pid of the helper process that serves this thread's next call."""
    return call_with_limit(operator.call, os.getpid, 10)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def in_thread(fn, *args):
    """Run ``fn(*args)`` in a fresh non-main thread; return its result or raised exception."""
    out: list = []

    def target():
        try:
            out.append(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join(30)
    assert not t.is_alive()
    return out[0]


def test_round_trip_and_reuse():
    assert call_with_limit(sorted, [3, 1, 2], 10) == [1, 2, 3]
    assert call_with_limit(bytes, 3_000_000, 10) == bytes(3_000_000)  # many pipe buffers
    pid = helper_pid()
    assert pid != os.getpid() and helper_pid() == pid  # one persistent helper, reused


def test_timeout_kills_the_helper_and_the_next_call_gets_a_fresh_one():
    pid = helper_pid()
    t = time.perf_counter()
    with pytest.raises(ItemTimeout) as info:
        call_with_limit(time.sleep, 30, 0.4)
    assert 0.4 <= time.perf_counter() - t < 2.5
    assert info.value.limit_s == 0.4
    assert not alive(pid)  # killed and reaped
    assert call_with_limit(abs, -5, 10) == 5
    assert helper_pid() != pid


@pytest.mark.parametrize(
    ("fn", "arg", "returncode"),
    [(os._exit, 3, 3), (signal.raise_signal, signal.SIGKILL, -signal.SIGKILL)],
    ids=["exit", "sigkill"],
)
def test_death_during_a_call_raises_child_died(fn, arg, returncode):
    with pytest.raises(ChildDied) as info:
        call_with_limit(fn, arg, 10)
    assert info.value.returncode == returncode
    assert call_with_limit(abs, -1, 10) == 1


def test_exceptions_keep_their_type_and_unpicklable_ones_only_name_it():
    with pytest.raises(ValueError, match="invalid literal"):
        call_with_limit(int, "x", 10)
    with pytest.raises(ModuleNotFoundError):  # the function cannot even be loaded in the helper
        call_with_limit(__import__, "no_such_module_here", 10)
    with pytest.raises(RuntimeError) as info:
        call_with_limit(_faulty("raise_local_error"), 42, 10)
    assert type(info.value) is RuntimeError
    assert "LocalError" in str(info.value) and "Jane" not in str(info.value)
    pid = helper_pid()
    with pytest.raises(TypeError, match="lock"):  # the result cannot travel back
        call_with_limit(operator.call, threading.Lock, 10)
    with pytest.raises((AttributeError, pickle.PicklingError)):  # fn cannot even be sent
        call_with_limit(lambda x: x, 1, 10)
    assert helper_pid() == pid  # the helper survived all of that


def _faulty(name: str):
    import importlib

    return getattr(importlib.import_module("tests.fixtures.faulty_decoders"), name)


def test_watchdog_exceptions_pickle():
    assert pickle.loads(pickle.dumps(ItemTimeout(2.5))).limit_s == 2.5
    died = pickle.loads(pickle.dumps(ChildDied(-11)))
    assert died.returncode == -11 and "SIGSEGV" in str(died)


def test_stdout_noise_logs_and_warnings_of_the_helper(caplog):
    assert call_with_limit(print, "stray output", 10) is None  # goes to stderr, not the protocol
    assert call_with_limit(abs, -3, 10) == 3
    with pytest.warns(UserWarning, match="careful"):
        call_with_limit(warnings.warn, "careful", 10)


def test_limit_holds_in_a_non_main_thread():
    """The case SIGALRM could not handle: the limit was silently off outside the main thread."""
    t = time.perf_counter()
    exc = in_thread(call_with_limit, time.sleep, 30, 0.4)
    assert isinstance(exc, ItemTimeout)
    assert time.perf_counter() - t < 2.5


def test_concurrent_callers_get_one_helper_each():
    watchdog.shutdown()
    warm = [watchdog._Helper() for _ in range(2)]  # started before the clock
    with watchdog._lock:
        watchdog._live.update(warm)
        watchdog._idle.extend(warm)
    t = time.perf_counter()
    threads = [threading.Thread(target=call_with_limit, args=(time.sleep, 1.0, 10)) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert time.perf_counter() - t < 1.7  # in parallel, not one after the other
    assert sorted(watchdog._idle, key=id) == sorted(warm, key=id)  # each used, both kept


def test_forked_process_starts_its_own_helper():
    parent_helper = helper_pid()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            os.write(w, str(helper_pid()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    child_helper = int(os.read(r, 64) or b"0")
    os.close(r)
    assert os.waitpid(pid, 0)[1] == 0
    assert child_helper not in (0, parent_helper)
    assert helper_pid() == parent_helper  # the fork did not disturb ours


CALLER = """
import operator, os, sys, threading, time
from pipelines import watchdog
from pipelines.watchdog import call_with_limit

first = call_with_limit(operator.call, os.getpid, 10)
threading.Thread(target=call_with_limit, args=(time.sleep, 60, 120), daemon=True).start()
while watchdog._idle:  # the thread has taken the first helper: it is busy until we go
    time.sleep(0.01)
second = call_with_limit(operator.call, os.getpid, 10)  # a second helper, left idle
print(first, second, flush=True)
if sys.argv[1] == "exit":
    sys.exit(0)  # atexit: the idle helper gets EOF, the busy one SIGKILL
os._exit(0)  # no atexit: the idle helper sees EOF, the busy one sees its parent gone
"""


@pytest.mark.parametrize("mode", ["exit", "killed"])
def test_helpers_end_with_their_caller(mode):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run(
        [sys.executable, "-c", CALLER, mode], capture_output=True, text=True, env=env, timeout=30
    )
    assert res.returncode == 0, res.stderr[-2000:]
    pids = [int(x) for x in res.stdout.split()]
    assert len(set(pids)) == 2
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids)


# --- the decode step -------------------------------------------------------------------------


@pytest.fixture()
def nifti_item(shared_data):
    p = shared_data / "nifti/nibabel_functional.nii"
    return InputItem("f-test", str(p), InputKind.NIFTI, "s", "MIT", p.stat().st_size)


def test_hanging_decoder_in_a_worker_thread_is_quarantined_as_timeout(nifti_item, ctx):
    ctx = replace(ctx, limits=LimitsConfig(item_timeout_s=0.4))
    task = decode.DecodeTask(nifti_item, ctx, True, "", decoder_overrides=HANG)
    t = time.perf_counter()
    out = in_thread(decode.decode_item, task)
    assert time.perf_counter() - t < 3
    assert [q.reason.value for q in out] == ["timeout"]
    assert out[0].message == "decoding exceeded limits.item_timeout_s=0.4"


def test_crashing_decoder_is_quarantined_or_raises_in_strict_mode(nifti_item, ctx, caplog):
    overrides = (("nifti", "tests.fixtures.faulty_decoders:segfault"),)
    with pytest.raises(ChildDied, match="SIGSEGV"):
        decode.decode_item(decode.DecodeTask(nifti_item, ctx, True, "", decoder_overrides=overrides))
    out = in_thread(decode.decode_item, decode.DecodeTask(nifti_item, ctx, False, "", overrides))
    assert [(q.reason.value, q.message) for q in out] == [
        ("decoder_error", "decoder process died (killed by SIGSEGV)")
    ]
    assert "decoder process died" in caplog.text


def test_decoder_logs_reach_the_caller(nifti_item, ctx, caplog):
    overrides = (("nifti", "tests.fixtures.faulty_decoders:bug"),)
    out = decode.decode_item(decode.DecodeTask(nifti_item, ctx, False, "", overrides))
    assert [q.reason.value for q in out] == ["decoder_error"]
    [rec] = [r for r in caplog.records if r.name == "pipelines.decode"]
    assert rec.levelname == "ERROR" and "RuntimeError" in rec.getMessage()
    assert rec.process != os.getpid()  # logged in the helper, re-emitted here


def test_zero_limit_decodes_in_process_with_the_overrides(nifti_item, ctx, caplog):
    ctx = replace(ctx, limits=LimitsConfig(item_timeout_s=0))
    overrides = (
        ("wfdb", "tests.fixtures.faulty_decoders:hang"),
        ("nifti", "tests.fixtures.faulty_decoders:bug"),
    )
    out = decode.decode_item(decode.DecodeTask(nifti_item, ctx, False, "", overrides))
    assert [q.reason.value for q in out] == ["decoder_error"]
    [rec] = [r for r in caplog.records if r.name == "pipelines.decode"]
    assert rec.process == os.getpid()


def test_shutdown_stops_the_helpers():
    pid = helper_pid()
    watchdog.shutdown()
    assert not alive(pid)
    assert helper_pid() != pid
