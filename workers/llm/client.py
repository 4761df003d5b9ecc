"""Async client for a vLLM server's OpenAI-compatible API (the pipeline side of server mode).

* at most ``max_in_flight`` requests are in flight (an ``asyncio.Semaphore``), so a shard of
  thousands of reports neither floods the server nor the event loop;
* transient failures (connection refused/reset, timeouts, HTTP 408/409/425/429/5xx) are retried
  ``retries`` times with exponential backoff and jitter;
* when a request still fails, :class:`~workers.llm.config.LlmServerUnavailable` is raised for the
  whole batch, the other requests are cancelled, and nothing is returned: the caller fails the
  shard (its retry runs later) instead of writing a half-processed one;
* a request the server *rejects* (other 4xx, e.g. a report longer than the model's context)
  is a property of that report, not of the server: it comes back as a :class:`Completion` with
  ``text=None`` and the structurer falls back to the rule path for it.

Structured outputs use vLLM's ``extra_body={"structured_outputs": {"json": schema}}`` (the old
``guided_json`` field was removed in vLLM 0.12). Temperature 0 and a fixed seed.
"""

from __future__ import annotations

import asyncio
import logging
import random

import openai

from workers.llm.config import Completion, LlmConfig, LlmRequest, LlmServerUnavailable

log = logging.getLogger(__name__)
# the SDK's HTTP layer logs every request at INFO: thousands of lines per shard, no information
for _name in ("httpx", "httpx2"):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.WARNING)

TRANSIENT_STATUS: frozenset[int] = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIConnectionError | openai.APITimeoutError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in TRANSIENT_STATUS
    return False


class AsyncLlmClient:
    """Bounded, retrying client. Use as ``async with AsyncLlmClient(cfg) as client: ...``."""

    def __init__(self, config: LlmConfig) -> None:
        self.config = config
        self._client = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key,
            max_retries=0,  # retries are ours: we need the shard-level failure semantics
            timeout=openai.Timeout(config.request_timeout_s, connect=config.connect_timeout_s),
        )
        self._slots = asyncio.Semaphore(config.max_in_flight)
        self.requests_sent = 0
        self.retries_done = 0

    async def __aenter__(self) -> AsyncLlmClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.close()

    async def _backoff(self, attempt: int) -> None:
        delay = min(self.config.backoff_max_s, self.config.backoff_s * (2**attempt))
        await asyncio.sleep(delay * (0.5 + random.random() / 2))

    async def check_ready(self) -> list[str]:
        """The served model names; raises LlmServerUnavailable if the server does not answer
        or does not serve ``config.model``."""
        last: BaseException | None = None
        for attempt in range(self.config.retries + 1):
            try:
                models = await self._client.models.list()
                names = [m.id for m in models.data]
                break
            except Exception as exc:  # classified below
                if not _is_transient(exc):
                    raise LlmServerUnavailable(f"model list failed: {type(exc).__name__}") from exc
                last = exc
                if attempt < self.config.retries:
                    await self._backoff(attempt)
        else:
            raise LlmServerUnavailable(
                f"vLLM server not reachable after {self.config.retries + 1} attempts ({type(last).__name__})"
            ) from last
        if self.config.model not in names:
            raise LlmServerUnavailable(f"server does not serve the configured model (serves {len(names)})")
        return names

    async def complete(self, request: LlmRequest) -> Completion:
        """One request under the in-flight bound, with retries; raises LlmServerUnavailable."""
        extra = {"structured_outputs": {"json": request.schema}} if request.schema is not None else None
        last: BaseException | None = None
        async with self._slots:
            for attempt in range(self.config.retries + 1):
                try:
                    self.requests_sent += 1
                    resp = await self._client.chat.completions.create(
                        model=self.config.model,
                        messages=list(request.messages),
                        temperature=0.0,
                        max_tokens=request.max_tokens,
                        seed=self.config.seed,
                        extra_body=extra,
                    )
                except Exception as exc:  # classified below
                    if not _is_transient(exc):
                        if isinstance(exc, openai.APIStatusError):
                            log.warning("vLLM rejected a request: HTTP %d", exc.status_code)
                            return Completion(None, "rejected", error=f"http_{exc.status_code}")
                        raise
                    last = exc
                    if attempt < self.config.retries:
                        self.retries_done += 1
                        log.info("transient vLLM error (%s), retry %d", type(exc).__name__, attempt + 1)
                        await self._backoff(attempt)
                    continue
                choice = resp.choices[0]
                usage = resp.usage
                return Completion(
                    text=choice.message.content or "",
                    finish_reason=choice.finish_reason or "",
                    prompt_tokens=usage.prompt_tokens if usage else 0,
                    completion_tokens=usage.completion_tokens if usage else 0,
                )
        raise LlmServerUnavailable(
            f"vLLM request failed after {self.config.retries + 1} attempts ({type(last).__name__})"
        ) from last

    async def complete_all(self, requests: list[LlmRequest]) -> list[Completion]:
        """All requests concurrently (bounded), in input order; fail-fast on a shard-level error."""
        return await gather_fail_fast([self.complete(r) for r in requests])


async def gather_fail_fast(coros: list) -> list:
    """Like ``asyncio.gather`` but the first exception cancels the rest (and is re-raised)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    if not tasks:
        return []
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            if t.exception() is not None:
                raise t.exception()
        return [t.result() for t in tasks]
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
