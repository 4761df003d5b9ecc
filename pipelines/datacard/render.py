"""The data card's HTML, rendered from the Jinja2 template ``templates/datacard.html.j2``.

The page is self-contained: CSS and JS inline (``templates/datacard.css``/``.js``), images as
``data:image/png;base64`` URIs, and a Content-Security-Policy that forbids any other load.
Every value the template prints is HTML-escaped (``html.escape``, quotes included); only the
template's own markup and macro output are not. The templates are written with line breaks
and indentation between tags for reading; :class:`_Loader` drops that whitespace (any run that
holds a line break between two tags or template tags) from the template source, so the page
is compact and the data (report text, the configuration JSON) is never touched.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from pipelines.datacard import view
from schemas.labels import ASSERTIONS

TEMPLATES = Path(__file__).resolve().parent / "templates"
PAGE = "datacard.html.j2"
MACROS = "macros.j2"

# whitespace holding a line break after a tag (or template tag) and before the next one
_BETWEEN_TAGS = re.compile(r"(>|\}\}|%\}|#\})[ \t]*\n\s*(?=<|\{\{|\{%|\{#)")


class _Loader(jinja2.FileSystemLoader):
    def get_source(self, environment, template):
        source, filename, uptodate = super().get_source(environment, template)
        return _BETWEEN_TAGS.sub(r"\1", source), filename, uptodate


def _escape(value: Any) -> Markup:
    """Every printed value: markup as is, anything else ``html.escape``-d (quotes included)."""
    if hasattr(value, "__html__"):
        return Markup(value.__html__())
    return Markup(html.escape(str(value), quote=True))


def fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        s = f"{v:,.3f}".rstrip("0").rstrip(".")
        return s if s not in ("", "-0") else "0"
    return str(v)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return str(n)


def _jpath(path: Sequence[Any]) -> str:
    return json.dumps(list(path), ensure_ascii=False)


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=_Loader(str(TEMPLATES)),
        autoescape=True,
        finalize=_escape,
        keep_trailing_newline=True,
    )
    env.filters.update(jpath=_jpath, fmt=fmt, hbytes=human_bytes, b64=_b64, pretty_json=_pretty_json)
    return env


def _static(name: str) -> Markup:
    return Markup((TEMPLATES / name).read_text(encoding="utf-8"))


def reliability_view(rel: Mapping[str, Any]) -> dict[str, Any]:
    """The label reliability section's data (see ``macros.j2``: ``reliability``)."""
    if not rel.get("present"):
        return {"present": False}
    models = ", ".join(f"{k} {v}" for k, v in sorted(rel.get("label_models", {}).items()))
    return {
        "present": True,
        "generated": rel.get("generated") or "undated",
        "rules": rel.get("rules_version", "?"),
        "models": models or "none",
        "sets": view.reliability_tables(rel),
    }


def render_reliability(rel: Mapping[str, Any]) -> str:
    """HTML of the label reliability section alone (the CLI's ``eval-labels`` tests use it)."""
    return str(environment().get_template(MACROS).module.reliability(reliability_view(rel)))


def render_excerpt(text: str, findings: list[dict], limit: int) -> tuple[str, int]:
    """HTML of a report excerpt with its findings marked, and how many were located in it."""
    segments, cut, n_marked = view.highlight(text, findings, limit)
    return str(environment().get_template(MACROS).module.excerpt(segments, cut)), n_marked


def render_html(
    card: Mapping[str, Any],
    gallery: list[dict],
    clusters: list[dict],
    figures: Mapping[str, bytes],
) -> str:
    """The self-contained page of ``card`` (the JSON twin), its gallery and dedup clusters
    (:func:`view.gallery_view`, :func:`view.dedup_view`) and its figures (PNG bytes by name)."""
    t, acc, ds = card["totals"], card["accounting"], card["distributions"]
    v = {
        "kpis": [
            ("samples", view.num(["totals", "samples"], t["samples"])),
            ("shards", view.num(["totals", "shards"], t["shards"])),
            ("input units", view.num(["totals", "input_units"], t["input_units"])),
            (
                "quarantined units",
                view.num(["accounting", "total", "quarantined"], acc["total"]["quarantined"]),
            ),
            ("patients", view.num(["totals", "patients"], t["patients"])),
            (
                "patients in 2+ splits",
                view.num(["totals", "patients_in_several_splits"], t["patients_in_several_splits"]),
            ),
        ],
        "shard_bytes_key": ["totals", "shard_bytes"],
        "without_patient": view.num(["totals", "samples_without_patient"], t["samples_without_patient"]),
        "counts": view.count_tables(card),
        "accounting": view.accounting_table(acc),
        "quarantine": view.quarantine_tables(card["quarantine"]),
        "dedup": view.dedup_tables(card["dedup"]),
        "clusters": clusters,
        "gallery": gallery,
        "distributions": view.distribution_blocks(ds),
        "findings": view.num(["distributions", "report", "findings"], ds["report"]["findings"]),
        "distinct_labels": view.num(
            ["distributions", "report", "distinct_labels"], ds["report"]["distinct_labels"]
        ),
        "entities": view.entity_table(ds["report"]),
        "reliability": reliability_view(card.get("label_reliability", {})),
    }
    return (
        environment()
        .get_template(PAGE)
        .render(
            card=card,
            v=v,
            figures=figures,
            assertions=ASSERTIONS,
            css=_static("datacard.css"),
            js=_static("datacard.js"),
        )
    )
