"""LLM report structuring through vLLM (server over the OpenAI-compatible API, or an offline worker).

In: de-identified report text with its report type and language.
Out: the structured report JSON (sections, findings, labels with assertions) valid against the
generation schema of ``prompt``, or a per-report failure beside the rule path's result; results
are cached as content-addressed JSON sidecars (``cache``). A server or worker that is down
fails the whole shard (``config.LlmShardError``), never silently.

Modules: ``config`` (settings and errors), ``prompt`` (versioned prompt and schema), ``cache``,
``client`` (async OpenAI-API client), ``server`` (start/stop a vLLM server), ``offline``
(``vllm.LLM`` in its own process), ``structurer`` (the entry point). vLLM itself lives in its
own environment (docs/vllm.md).
"""
