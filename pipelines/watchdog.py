"""A signal-free wall-clock limit for one function call, usable from any thread of any process.

Why: ``signal.setitimer``/``SIGALRM`` only works on the main thread of a process, so a limit
built on it is silently off in Beam SDK harness threads and Dask worker threads, and a signal
cannot interrupt native code that holds the GIL anyway. Here the call runs in a persistent
helper process instead, and the caller waits for its answer with ``poll`` and a deadline; when
the deadline passes the helper is killed (SIGKILL, then reaped) and :class:`ItemTimeout` is
raised. A helper that dies during a call (segfault in a native decoder, ``os._exit``, OOM kill)
raises :class:`ChildDied` instead of taking the worker process down.

How: one helper per concurrently calling thread of a process (one per process in the usual
single-threaded worker), started lazily with ``subprocess.Popen([sys.executable, "-m",
"pipelines.watchdog"])`` -- not a ``multiprocessing`` fork, which is unsafe in processes with
gRPC/threads -- with the caller's environment and ``PYTHONPATH`` covering its ``sys.path``.
Helpers are reused across calls; a killed or dead one is replaced on the next call. Requests
and answers are length-prefixed pickles over the helper's stdin/stdout (its own stdout is
redirected to stderr, so a stray ``print`` cannot corrupt the protocol; stderr is shared with
the caller). Log records and warnings emitted in the helper during a call travel back with the
answer and are re-emitted in the caller (subject to its handlers and filters). An exception
raised by the function is re-raised in the caller with its type and arguments when it
pickles both ways, otherwise as a ``RuntimeError`` naming only its type (messages may hold
PHI: they are never logged here). Helpers exit at interpreter exit (``atexit``), on EOF of
their stdin, and within a second when their parent process is gone.

Cost: one extra Python process per worker thread that decodes (its memory: the interpreter,
the modules the function imports, and what the function leaves allocated), started once (tens
of ms, plus the function's imports again after a kill). Per call: the pickled function
reference and argument one way, the pickled result the other, and two process wake-ups
(~0.1 ms of CPU in all for small ones). Keep results small: headers, not payloads, where you
can; a large result costs three more passes over its bytes (pickled in the helper, written to
and read from the pipe straight into the caller's objects), plus a wake-up per MiB (the pipe
buffer). On a machine with more runnable processes than cores each wake-up can also wait for
a scheduler time slice: size worker pools to the cores.
"""

from __future__ import annotations

import atexit
import fcntl
import io
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import warnings
from typing import Any

__all__ = ["ChildDied", "ItemTimeout", "WatchdogError", "call_with_limit", "shutdown"]

_REQUEST = struct.Struct("!iQ")  # caller → helper: the caller's root log level, body length
_REPLY = struct.Struct("!Q")  # helper → caller: body length
_PROTOCOL = pickle.HIGHEST_PROTOCOL
_START_TIMEOUT_S = 60.0  # interpreter start of a helper; not counted in a call's limit
_CLOSE_WAIT_S = 1.0  # grace for a helper to exit on EOF before it is killed
_PARENT_POLL_S = 1.0  # how often a helper checks that its parent is still alive
_MAX_FORWARDED = 1000  # log records / warnings forwarded per call (the rest are counted)
_CHUNK = 1 << 20
_PIPE_BYTES = 1 << 20
_SMALL = 1 << 16  # answers up to this size are read whole, then unpickled


class WatchdogError(RuntimeError):
    """The helper process could not be started or broke the protocol."""


class ItemTimeout(WatchdogError):
    """The call did not finish within its limit; the helper was killed."""

    def __init__(self, limit_s: float) -> None:
        super().__init__(f"call exceeded its limit of {limit_s:g} s")
        self.limit_s = limit_s

    def __reduce__(self):
        return (type(self), (self.limit_s,))


class ChildDied(WatchdogError):
    """The helper process died during the call. ``returncode``: exit code, or -signal number."""

    def __init__(self, returncode: int | None) -> None:
        self.returncode = returncode
        super().__init__(f"watchdog process died ({describe_exit(returncode)})")

    def __reduce__(self):
        return (type(self), (self.returncode,))


def describe_exit(returncode: int | None) -> str:
    """``exit code 3``, ``killed by SIGSEGV`` or ``exit status unknown`` (PHI-free)."""
    if returncode is None:
        return "exit status unknown"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


# --------------------------------------------------------------------------------------------
# framing (both sides)


def _frame(head: struct.Struct, obj: Any, *fields: int) -> memoryview:
    """``obj`` pickled behind ``head`` (``fields``, then the body length), in one buffer."""
    bio = io.BytesIO()
    bio.write(bytes(head.size))
    pickle.dump(obj, bio, protocol=_PROTOCOL)
    buf = bio.getbuffer()
    head.pack_into(buf, 0, *fields, len(buf) - head.size)
    return buf


def _write_all(fd: int, data: memoryview | bytes, deadline: float | None = None, poller=None) -> None:
    """Write all of ``data``; on a non-blocking ``fd`` wait (``poller``) until ``deadline``."""
    view = memoryview(data).cast("B")
    while view:
        try:
            view = view[os.write(fd, view[:_CHUNK]) :]
        except BlockingIOError:
            if not poller.poll(_poll_ms(deadline)) and _expired(deadline):
                raise TimeoutError from None


def _fill(fd: int, view: memoryview, deadline: float | None = None, poller=None, wait: bool = False) -> int:
    """Read into all of ``view``; return the count (short only at EOF). On a non-blocking ``fd``
    wait (``poller``) until ``deadline``; ``wait``: poll first (the answer is not there yet)."""
    pos, n = 0, len(view)
    while pos < n:
        if wait and not poller.poll(_poll_ms(deadline)):
            if _expired(deadline):
                raise TimeoutError
            continue
        try:
            got = os.readv(fd, [view[pos:]])
        except BlockingIOError:
            wait = True
            continue
        if got == 0:
            break
        pos += got
        wait = False
    return pos


def _read_exact(
    fd: int, n: int, deadline: float | None = None, poller=None, wait: bool = False
) -> bytearray | None:
    """Exactly ``n`` bytes, ``None`` at EOF (see :func:`_fill`)."""
    buf = bytearray(n)
    return buf if _fill(fd, memoryview(buf), deadline, poller, wait) == n else None


class _Closed(Exception):
    """The helper's end of the pipe closed before the whole answer arrived."""


class _Reader:
    """The next ``left`` bytes of a non-blocking pipe as a file for ``pickle.load``: a large
    ``bytes`` payload is read straight into its final object, not via an intermediate buffer."""

    def __init__(self, fd: int, left: int, deadline: float, poller) -> None:
        self.fd, self.left, self.deadline, self.poller = fd, left, deadline, poller

    def readinto(self, b) -> int:
        view = memoryview(b).cast("B")[: self.left]
        got = _fill(self.fd, view, self.deadline, self.poller)
        self.left -= got
        if got < len(view):
            raise _Closed
        return got

    def read(self, n: int | None = -1) -> bytes:
        buf = bytearray(self.left if n is None or n < 0 else min(n, self.left))
        self.readinto(buf)
        return bytes(buf)

    def readline(self) -> bytes:  # text opcodes only: not used by protocol 5 pickles
        out = bytearray()
        while self.left and not out.endswith(b"\n"):
            out += self.read(1)
        return bytes(out)


def _poll_ms(deadline: float | None) -> int | None:
    if deadline is None:
        return None
    return max(0, int((deadline - time.monotonic()) * 1000) + 1)


def _expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _recv(fd: int, head: struct.Struct, deadline: float | None = None, poller=None) -> tuple[Any, ...]:
    """The header fields (length last) and the body of the next message; EOFError at the end."""
    raw = _read_exact(fd, head.size, deadline, poller, wait=poller is not None)
    if raw is None:
        raise EOFError
    fields = head.unpack(raw)
    body = _read_exact(fd, fields[-1], deadline, poller)
    if body is None:
        raise EOFError
    return (*fields[:-1], body)


# --------------------------------------------------------------------------------------------
# caller side


def _child_env() -> dict[str, str]:
    """The caller's environment, with PYTHONPATH covering its sys.path (project, tests, ...)."""
    env = dict(os.environ)
    seen: dict[str, None] = {}
    for p in sys.path:
        if isinstance(p, str):
            seen.setdefault(os.path.abspath(p) if p else os.getcwd(), None)
    for p in env.get("PYTHONPATH", "").split(os.pathsep):
        if p:
            seen.setdefault(p, None)
    env["PYTHONPATH"] = os.pathsep.join(seen)
    return env


def _grow_pipe(fd: int) -> None:
    """Up to 1 MiB of pipe buffer (Linux; default 64 kB): a result of a few hundred kB then
    crosses in one write instead of a context switch per 64 kB."""
    if hasattr(fcntl, "F_SETPIPE_SZ"):
        try:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        except OSError:  # above /proc/sys/fs/pipe-max-size or the user's pipe quota: keep 64 kB
            pass


class _Helper:
    """One helper process and the caller's ends of its pipes."""

    def __init__(self) -> None:
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipelines.watchdog"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=_child_env(),
                bufsize=0,
            )
        except OSError as exc:
            raise WatchdogError(f"the watchdog process could not be started ({type(exc).__name__})") from exc
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.wfd = self.proc.stdin.fileno()
        self.rfd = self.proc.stdout.fileno()
        self.rpoll, self.wpoll = select.poll(), select.poll()
        self.rpoll.register(self.rfd, select.POLLIN)
        self.wpoll.register(self.wfd, select.POLLOUT)
        for fd in (self.wfd, self.rfd):
            os.set_blocking(fd, False)
            _grow_pipe(fd)
        try:
            (hello,) = _recv(self.rfd, _REPLY, time.monotonic() + _START_TIMEOUT_S, self.rpoll)
            hello = pickle.loads(hello)
        except (EOFError, TimeoutError, OSError, pickle.UnpicklingError) as exc:
            code = self.kill()
            raise WatchdogError(
                f"the watchdog process did not start ({describe_exit(code)}); see its stderr above"
            ) from exc
        if hello != ("ready", self.proc.pid):
            self.kill()
            raise WatchdogError("the watchdog process broke the protocol at start")

    def call(self, request: memoryview, limit_s: float) -> tuple:
        """Send a framed request, return the unpickled answer (the helper is then idle again)."""
        deadline = time.monotonic() + limit_s
        try:
            _write_all(self.wfd, request, deadline, self.wpoll)
            head = _read_exact(self.rfd, _REPLY.size, deadline, self.rpoll, wait=True)
            if head is None:
                raise _Closed
            reader = _Reader(self.rfd, _REPLY.unpack(head)[0], deadline, self.rpoll)
            # a small answer in one read; a large one streamed into its objects
            answer = pickle.loads(reader.read()) if reader.left <= _SMALL else pickle.load(reader)
        except TimeoutError:
            self.kill()
            raise ItemTimeout(limit_s) from None
        except (_Closed, BrokenPipeError, ConnectionResetError):
            raise ChildDied(self.reap()) from None
        except Exception as exc:  # unpickling failed here (the stream is out of step now)
            self.kill()
            raise WatchdogError(f"the answer could not be unpickled here ({type(exc).__name__})") from None
        if reader.left:
            self.kill()
            raise WatchdogError("the watchdog process broke the protocol (answer longer than its pickle)")
        return answer

    def reap(self) -> int | None:
        """Wait for a helper that closed its pipes (it is exiting); kill it if it lingers."""
        try:
            code = self.proc.wait(timeout=_CLOSE_WAIT_S * 5)
        except subprocess.TimeoutExpired:
            code = self.kill()
        self._close_pipes()
        return code

    def kill(self) -> int | None:
        try:
            self.proc.kill()
        except OSError:
            pass
        code = self.proc.wait()
        self._close_pipes()
        return code

    def close(self) -> None:
        """Ask the helper to exit (EOF on its stdin); kill it if it does not within a second."""
        self._close_pipes()
        try:
            self.proc.wait(timeout=_CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:
            self.kill()

    def abandon(self) -> None:
        """In a forked copy of the caller: drop our copies of the pipes, leave the process alone."""
        self._close_pipes()
        self.proc.returncode = 0  # not ours to wait for (Popen.__del__ must not track it)

    def _close_pipes(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except (OSError, AttributeError):
                pass


_lock = threading.Lock()
_idle: list[_Helper] = []  # started helpers not in a call (LIFO: the warm one first)
_live: set[_Helper] = set()  # every started helper of this process


def call_with_limit(fn, arg, limit_s: float) -> Any:
    """Return ``fn(arg)`` computed in a helper process, within ``limit_s`` seconds of wall clock.

    ``fn`` and ``arg`` must pickle (``fn`` by reference: a module-level function), and so must
    the result. Safe from any thread; concurrent callers get one helper each.

    Raises :class:`ItemTimeout` when the limit passes (the helper is killed), :class:`ChildDied`
    when the helper dies during the call, :class:`WatchdogError` when no helper can be started,
    and whatever ``fn`` raised (same type; ``RuntimeError`` naming the type if it cannot travel).
    """
    if limit_s <= 0:
        raise ValueError("limit_s must be positive")
    # pickled here, before a helper is taken: an unpicklable fn or arg raises in the caller
    request = _frame(_REQUEST, (fn, arg), logging.getLogger().getEffectiveLevel())
    with _lock:
        helper = _idle.pop() if _idle else None
    if helper is None:
        helper = _Helper()
        with _lock:
            _live.add(helper)
    answer = None
    try:
        answer = helper.call(request, limit_s)
    finally:
        with _lock:
            if answer is not None:
                _idle.append(helper)
            else:  # timed out, died, or the caller was interrupted mid-call
                _live.discard(helper)
        if answer is None and helper.proc.returncode is None:
            helper.kill()
    kind, value, records, warns = answer
    _replay(records, warns)
    if kind == "ok":
        return value
    type_name, blob = value
    exc = None
    if blob is not None:
        try:
            exc = pickle.loads(blob)
        except Exception:
            exc = None
    if isinstance(exc, BaseException):
        raise exc
    raise RuntimeError(f"{type_name} raised in the watchdog process (its message is withheld)")


_warn_registries: dict[str, dict] = {}


def _replay(records: list[dict], warns: list[tuple]) -> None:
    for d in records:
        record = logging.makeLogRecord(d)
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)
    for category, text, filename, lineno, module in warns:
        warnings.warn_explicit(
            text, category, filename, lineno, module, _warn_registries.setdefault(filename, {})
        )


def shutdown() -> None:
    """Stop every helper of this process (idle ones by EOF, busy ones by SIGKILL)."""
    with _lock:
        idle, busy = list(_idle), _live - set(_idle)
        _idle.clear()
        _live.clear()
    for h in busy:
        h.kill()
    for h in idle:
        h.close()


def _after_fork_in_child() -> None:
    """A forked copy of the caller must not talk to (or keep open) the parent's helpers."""
    global _lock
    _lock = threading.Lock()
    for h in _live:
        h.abandon()
    _idle.clear()
    _live.clear()
    _warn_registries.clear()


atexit.register(shutdown)
os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------------------------
# helper side


class _Collector(logging.Handler):
    """Keeps the log records of the current call, flattened to picklable dicts."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[dict] = []
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) >= _MAX_FORWARDED:
            self.dropped += 1
            return
        d = dict(record.__dict__)
        d["msg"] = record.getMessage()
        d["args"] = None
        if record.exc_info:
            d["exc_text"] = record.exc_text or logging.Formatter().formatException(record.exc_info)
        d["exc_info"] = None
        self.records.append(
            {k: v for k, v in d.items() if v is None or isinstance(v, str | int | float | bool)}
        )

    def take(self) -> list[dict]:
        out, self.records = self.records, []
        if self.dropped:
            out.append(
                {
                    "name": "pipelines.watchdog",  # (this module is __main__ in a helper)
                    "levelno": logging.WARNING,
                    "levelname": "WARNING",
                    "msg": f"{self.dropped} more log records of one call in the watchdog process dropped",
                }
            )
            self.dropped = 0
        return out


def _warning_tuples(caught: list[warnings.WarningMessage]) -> list[tuple]:
    out = []
    for w in caught[:_MAX_FORWARDED]:
        category = w.category
        try:
            pickle.loads(pickle.dumps(category, protocol=_PROTOCOL))
        except Exception:
            category = UserWarning
        module = os.path.splitext(os.path.basename(w.filename or ""))[0] or "<unknown>"
        out.append((category, str(w.message), w.filename, w.lineno, module))
    return out


def _call(request: bytearray) -> tuple[str, Any]:
    try:
        fn, arg = pickle.loads(request)  # may import modules, may fail: the caller learns why
        return "ok", fn(arg)
    except Exception as exc:
        return _failure(exc)


def _failure(exc: Exception) -> tuple[str, Any]:
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    try:
        blob = pickle.dumps(exc, protocol=_PROTOCOL)
        pickle.loads(blob)  # a custom __init__ can make unpickling fail
    except Exception:
        blob = None
    return "exc", (name, blob)


def _serve() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's business
    from pipelines.heap import keep_heap

    keep_heap()  # the decoders run here: reuse freed heap memory instead of refaulting it
    rfd, wfd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)  # print() and C-level writes to stdout go to stderr, not into the protocol

    parent = os.getppid()

    def watch_parent() -> None:
        while True:
            time.sleep(_PARENT_POLL_S)
            if os.getppid() != parent:  # reparented: the caller is gone (maybe mid-call)
                os._exit(0)

    threading.Thread(target=watch_parent, name="watchdog-parent", daemon=True).start()
    collector = _Collector()
    root = logging.getLogger()
    root.addHandler(collector)

    out = open(wfd, "wb", buffering=_PIPE_BYTES)  # the protocol stream (closed at exit)
    _reply(out, ("ready", os.getpid()))
    while True:
        try:
            level, request = _recv(rfd, _REQUEST)
        except EOFError:
            return
        if root.level != level:
            root.setLevel(level)  # (clears every logger's level cache: only when it changes)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            kind, value = _call(request)
        records, warns = collector.take(), _warning_tuples(caught)
        try:
            _reply(out, (kind, value, records, warns))
        except BrokenPipeError:
            return
        except _Unpicklable as exc:  # raised in the caller like fn's own error
            _reply(out, (*_failure(exc.__cause__), records, warns))
        del value, request  # a large result or argument is not kept until the next call


class _Unpicklable(Exception):
    pass


class _Counter:
    """A file that only counts: pickling into it checks the reply and measures it, without
    copying large payloads (the pickler hands those to ``write`` as they are)."""

    def __init__(self) -> None:
        self.n = 0

    def write(self, b) -> int:
        n = memoryview(b).nbytes
        self.n += n
        return n


def _reply(out, obj) -> None:
    """Length-prefixed pickle of ``obj`` to ``out``, payloads streamed (one copy fewer than
    ``dumps``). Raises :class:`_Unpicklable` before anything is written when it cannot pickle."""
    counter = _Counter()
    try:
        pickle.dump(obj, counter, protocol=_PROTOCOL)
    except Exception as exc:
        raise _Unpicklable from exc
    out.write(_REPLY.pack(counter.n))
    try:
        pickle.dump(obj, out, protocol=_PROTOCOL)
        out.flush()
    except BrokenPipeError:
        raise
    except BaseException:  # half a reply is out: the stream cannot be resynchronised
        os._exit(70)


if __name__ == "__main__":
    _serve()
