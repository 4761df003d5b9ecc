"""Label-derived captions (UniMed-CLIP style) for classification datasets: labels → text.

An identity table with a ``caption`` block (:class:`pipelines.config.CaptionConfig`) gives every
sample whose items carry its labels a generated text, so image + caption pairs train like image
+ report pairs. Per sample, each distinct label set of its items (in item order; CheXpert's
frontal and lateral views of a study share one) becomes one caption:

- positives are named (``names`` or the label lower-cased), uncertain ones as ``possible X``,
  negatives as ``no X`` (each optional), in the configured label order, joined ``a, b and c``;
- the text is one of ``templates`` over ``{findings}``, chosen by a sha256 of the sample key
  (a keyed pseudonym) and the caption's index: the same labels in the same sample always give
  the same text, independent of Python's randomised ``hash``;
- no positive and no uncertain label: ``no_finding`` (then the negatives, if mentioned);
  nothing mentioned at all: no caption.

The caption is written as the next report members, ``report_{i}.txt`` (the text) and
``report_{i}.json`` (a structured report of the same labels, valid under
``schemas.report_schema``, so the trainer's label targets see them), and listed in the sample's
``meta.json`` under ``generated_text`` (method ``label-template``, table, template index, the
items it describes, the labels used). It is added after the split, in
:meth:`pipelines.tables.TablesGraph.normalise`: a caption is no input unit (the accounting
identity counts the image units only), is never de-identified (it holds label names and codes
only) and never reaches dedup (it is a template by construction).

With ``caption.llm_rewrite`` (:class:`RewriteCaptions`), samples are grouped in 256 buckets and
each bucket's captions are rephrased by the build's LLM in one request batch
(``workers.llm.rewrite``, sidecar-cached); a rephrasing replaces the template text of
``report_{i}.txt`` only if ``pipelines.caption_guard`` finds exactly the caption's findings in
it, in their states (``llm_rewrite: true``), else the template stays (``llm_rewrite:
"rejected"`` and ``llm_reject_reason``). ``report_{i}.json`` never depends on the rewrite.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

from pipelines import caption_guard as guard
from pipelines.blobs import BlobStore
from pipelines.config import CaptionConfig, TableConfig
from pipelines.shards import SampleHeader
from schemas.canonical import canonical_bytes, canonical_json
from schemas.contract import META_MEMBER, member_name
from schemas.labels import ALL_LABELS
from schemas.modality import Modality
from schemas.report_schema import REPORT_SCHEMA_VERSION

METHOD = "label-template"
CONVENTION = (
    "report_{i} members listed under generated_text are captions made from the item's labels with "
    "templates (label-template), not a clinician's report; added after de-identification and dedup; "
    "not input units"
)
_KNOWN = frozenset(ALL_LABELS)


@dataclass(frozen=True)
class Caption:
    """One generated caption: its text, the template used (-1: ``no_finding``) and the labels."""

    text: str
    template: int
    positive: tuple[str, ...]
    uncertain: tuple[str, ...]
    negative: tuple[str, ...]


def label_states(values: Mapping[str, str], cfg: CaptionConfig) -> tuple[tuple[str, ...], ...]:
    """``(positive, uncertain, negative, no_finding)`` labels, in ``cfg.labels`` order;
    ``no_finding`` is ``(no_finding_label,)`` when that label is positive, else ``()``."""
    pos, unc, neg = [], [], []
    for label in cfg.labels:
        v = str(values.get(label, "")).strip()
        if v in cfg.positive:
            pos.append(label)
        elif v in cfg.uncertain:
            unc.append(label)
        elif v in cfg.negative:
            neg.append(label)
    nf = str(values.get(cfg.no_finding_label, "")).strip() if cfg.no_finding_label else ""
    return tuple(pos), tuple(unc), tuple(neg), ((cfg.no_finding_label,) if nf in cfg.positive else ())


def join_phrases(phrases: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def template_index(key: str, index: int, n: int) -> int:
    """Stable template choice: sha256 of ``caption:{key}:{index}`` modulo ``n``."""
    digest = hashlib.sha256(f"caption:{key}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % n


def make_caption(values: Mapping[str, str], cfg: CaptionConfig, key: str, index: int = 0) -> Caption | None:
    """The caption of one label set (``values``: label → raw value), or ``None`` if no label is
    mentioned."""
    pos, unc, neg, nf = label_states(values, cfg)
    if not cfg.mention_uncertain:
        unc = ()
    if not cfg.mention_negative:
        neg = ()
    if not (pos or unc or neg or nf):
        return None

    def name(label: str) -> str:
        return cfg.names.get(label) or label.lower()

    negs = [cfg.negative_phrase.format(label=name(x)) for x in neg]
    if not (pos or unc):
        text = cfg.no_finding.strip()
        if negs:
            text += " " + _cap(join_phrases(negs)) + "."
        return Caption(text, -1, (), (), neg)
    phrases = [name(x) for x in pos] + [cfg.uncertain_phrase.format(label=name(x)) for x in unc] + negs
    t = template_index(key, index, len(cfg.templates))
    return Caption(_cap(cfg.templates[t].format(findings=join_phrases(phrases))), t, pos, unc, neg)


def finding_label(label: str) -> str:
    """A label column as the structured-report vocabulary names it (``Pleural Effusion`` →
    ``pleural_effusion``); ``""`` when the vocabulary has no such label."""
    snake = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
    return snake if snake in _KNOWN else ""


def structured_report(c: Caption, cfg: CaptionConfig) -> dict:
    """The caption's labels as a structured report (``schemas.report_schema``; labels outside its
    vocabulary are left out)."""
    findings = []
    for labels, assertion in ((c.positive, "present"), (c.uncertain, "uncertain"), (c.negative, "negated")):
        for label in labels:
            f = finding_label(label)
            if f:
                findings.append({"label": f, "assertion": assertion, "section": "findings"})
    if c.template < 0 and "no_finding" in _KNOWN:
        findings.insert(0, {"label": "no_finding", "assertion": "present", "section": "findings"})
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "report_type": cfg.report_type,
        "language": cfg.language,
        "sections": {"findings": c.text},
        "findings": findings,
        "normal": not (c.positive or c.uncertain),
    }


def _item_values(item: dict, t: TableConfig) -> dict[str, str] | None:
    """An item's label values for table ``t`` (fields of its row, else its label-table labels)."""
    meta = item.get("meta") or {}
    if t.name not in meta.get("identity", []):
        return None
    row = (meta.get("tables") or {}).get(t.name) or {}
    labels = meta.get("labels") or {}
    c = t.caption
    assert c is not None
    wanted = (*c.labels, *((c.no_finding_label,) if c.no_finding_label else ()))
    return {x: str(row.get(x, "") if x in t.fields else labels.get(x, "")) for x in wanted}


def sample_captions(meta: dict, tables: tuple[TableConfig, ...], key: str) -> list[tuple[Caption, dict]]:
    """The captions of one sample (``meta``: its ``meta.json``) with their ``generated_text``
    entries (member prefix not yet set)."""
    out: list[tuple[Caption, dict]] = []
    for t in tables:
        assert t.caption is not None
        seen: dict[tuple, int] = {}
        for item in meta.get("items", []):
            values = _item_values(item, t)
            if values is None:
                continue
            states = label_states(values, t.caption)
            if states in seen:
                out[seen[states]][1]["items"].append(item.get("member_prefix", ""))
                continue
            cap = make_caption(values, t.caption, key, len(out))
            if cap is None:
                continue
            seen[states] = len(out)
            entry = {
                "method": METHOD,
                "table": t.name,
                "template": cap.template,
                "items": [item.get("member_prefix", "")],
                "positive": list(cap.positive),
                "uncertain": list(cap.uncertain),
                "negative": list(cap.negative),
                "llm_rewrite": False,
            }
            out.append((cap, entry))
    return out


def _write(
    sample: SampleHeader, store: BlobStore, meta: dict, caps: list, tables: tuple, texts: list
) -> SampleHeader:
    """``sample`` with the caption members (``texts[j]`` as ``report_{i}.txt``; the structured
    ``report_{i}.json`` always from the labels and the template text) and the marked ``meta.json``."""
    first = sum(1 for it in meta.get("items", []) if it.get("modality") == Modality.REPORT.value)
    by_name = {t.name: t for t in tables}
    new = []
    generated = []
    for j, ((cap, entry), text) in enumerate(zip(caps, texts, strict=True)):
        i = first + j
        txt = text.encode("utf-8")
        js = canonical_json(structured_report(cap, by_name[entry["table"]].caption)).encode("utf-8")
        new.append((member_name(Modality.REPORT, i, "txt"), store.put(txt), len(txt)))
        new.append((member_name(Modality.REPORT, i, "json"), store.put(js), len(js)))
        generated.append({"member_prefix": f"{Modality.REPORT.value}_{i}", **entry})
    meta["generated_text"] = generated
    meta["conventions"] = {**meta.get("conventions", {}), "generated_text": CONVENTION}
    raw = canonical_bytes(meta)
    members = [m for m in sample.members if m[0] != META_MEMBER]
    members += [*new, (META_MEMBER, store.put(raw), len(raw))]
    return replace(sample, members=tuple(sorted(members)))


def _meta(sample: SampleHeader, store: BlobStore) -> dict:
    sha = next(s for name, s, _ in sample.members if name == META_MEMBER)
    return json.loads(store.get(sha))


@dataclass(frozen=True)
class ApplyCaptions:
    """``flat_map`` after the split: add the caption members and mark them in ``meta.json``."""

    blob_root: str
    tables: tuple[TableConfig, ...]

    def __call__(self, sample: SampleHeader) -> Iterator[SampleHeader]:
        store = BlobStore(self.blob_root)
        meta = _meta(sample, store)
        caps = sample_captions(meta, self.tables, sample.key)
        if not caps:
            yield sample
            return
        yield _write(sample, store, meta, caps, self.tables, [cap.text for cap, _ in caps])


def caption_bucket(sample: SampleHeader) -> str:
    """256 buckets by sample key (a keyed pseudonym): one LLM request batch per bucket."""
    return hashlib.sha256(f"caption-bucket:{sample.key}".encode()).hexdigest()[:2]


def sample_order(sample: SampleHeader) -> str:
    return sample.key


_REWRITERS: dict[str, object] = {}


def _rewriter(cfg):
    """One caption rewriter per worker process and LLM config (server client or offline worker)."""
    key = repr(cfg)
    if key not in _REWRITERS:
        import atexit

        from workers.llm.rewrite import CaptionRewriter

        r = CaptionRewriter(cfg).setup()
        atexit.register(r.close)
        _REWRITERS[key] = r
    return _REWRITERS[key]


def guard_spec(cap: Caption, cfg: CaptionConfig) -> tuple[dict[str, str], dict[str, str], str]:
    """What a text of this caption must state: the findings (label → state), the optional ones,
    and (a no-finding caption) the no-finding label whose normal statement it must keep."""
    normal = cfg.no_finding_label if cap.template < 0 and cfg.no_finding_label else ""
    optional = {normal: guard.PRESENT} if normal else {}
    return guard.expected(cap.positive, cap.uncertain, cap.negative), optional, normal


@dataclass(frozen=True)
class RewriteCaptions:
    """``group`` on :func:`caption_bucket` (tables with ``caption.llm_rewrite``): the captions
    of the bucket's samples, rewritten through the build's LLM in one request batch, each kept
    only if it passes ``pipelines.caption_guard`` (else the template text, with the reason)."""

    options: tuple[tuple[str, object], ...]
    out_dir: str
    blob_root: str
    tables: tuple[TableConfig, ...]

    def __call__(self, key: str, samples: list[SampleHeader]) -> Iterator[SampleHeader]:  # noqa: ARG002
        from pathlib import Path

        from pipelines.llm_stage import _llm_config

        store = BlobStore(self.blob_root)
        by_name = {t.name: t for t in self.tables}
        vocab = {t.name: guard.Vocabulary.of(t.caption) for t in self.tables if t.caption is not None}
        work = []
        ask: list[str] = []
        for sample in samples:
            meta = _meta(sample, store)
            caps = sample_captions(meta, self.tables, sample.key)
            work.append((sample, meta, caps))
            for cap, entry in caps:
                c = by_name[entry["table"]].caption
                want, optional, normal = guard_spec(cap, c)
                if c.llm_rewrite and not guard.check(cap.text, want, vocab[entry["table"]], optional, normal):
                    ask.append(cap.text)
        answers: dict[str, dict] = {}
        rewriter = None
        if ask:
            rewriter = _rewriter(_llm_config(dict(self.options), Path(self.out_dir)))
            answers = dict(zip(ask, rewriter(ask), strict=True))
        for sample, meta, caps in work:
            if not caps:
                yield sample
                continue
            texts = []
            for cap, entry in caps:
                c = by_name[entry["table"]].caption
                text = cap.text
                if c.llm_rewrite:
                    text = _judge(cap, entry, c, vocab[entry["table"]], answers.get(cap.text), rewriter)
                texts.append(text)
            yield _write(sample, store, meta, caps, self.tables, texts)


def _judge(cap: Caption, entry: dict, cfg: CaptionConfig, vocab, answer: dict | None, rewriter) -> str:
    """The text of one caption under ``llm_rewrite``; marks ``entry`` (accepted or the reason)."""
    if rewriter is not None:
        entry["llm_prompt_id"], entry["llm_model_id"] = rewriter.prompt_id, rewriter.model_id
    if answer is None:  # the template itself does not pass the guard: never sent
        entry["llm_rewrite"], entry["llm_reject_reason"] = "rejected", guard.UNGUARDED
        return cap.text
    want, optional, normal = guard_spec(cap, cfg)
    if answer["text"] is None:
        reason = ",".join(answer["reasons"]) or "empty"
    else:
        reason = guard.check(answer["text"], want, vocab, optional, normal)
    if reason:
        entry["llm_rewrite"], entry["llm_reject_reason"] = "rejected", reason
        return cap.text
    entry["llm_rewrite"] = True
    return answer["text"]
