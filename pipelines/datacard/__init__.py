"""The data card of a build: one self-contained HTML page plus its JSON twin (``datacard.json``).

``write_datacard(build_dir)`` reads a finished build and writes ``datacard.html`` and
``datacard.json`` into it.

Modules, by responsibility: ``common`` (names, settings, small helpers), ``shard_stats`` (the
per-shard statistics the shard writers compute, and their merge), ``collect`` (every number of
the JSON twin), ``gallery`` (which samples and clusters are shown, and what is read from the
tars for them), ``view`` (the numbers shaped as tables and figures for the page), ``render``
(the Jinja2 template ``templates/datacard.html.j2``), ``plots`` (matplotlib figures), ``card``
(the entry points), ``browser`` (checking the page in headless Chromium). The HTML has no external reference at all: CSS and JS are inline,
images are ``data:image/png;base64`` URIs, and a Content-Security-Policy forbids any load that
is not inline, so the page opens from disk, offline, in any browser.

Inputs (all written by ``pipelines.build``):

* ``manifest.parquet`` (``SampleRecord`` rows), ``shards.parquet``, ``quarantine.parquet``
  (``QuarantineRecord``), ``inputs.parquet`` (every input unit: source_id, file_id, source_name,
  kind, modality), ``stats.json`` and ``build.json`` (config, tool versions, demo flag);
* the card statistics of every shard: the ``card`` section of its stats JSON
  (``shards/{split}/{split}-NNNNNN.json``), computed by :func:`shard_card_stats` while the shard
  is written; a shard without one (built by an older version) has them computed from its tar's
  ``meta.json`` and ``report_{i}.txt``/``.json`` members. Besides that, only the gallery's
  samples (and kept images of the dedup clusters shown) are read from the tars;
* optionally ``dedup.parquet`` (``pipelines.dedup``), one row per record that fell into a
  near-duplicate cluster. Columns the card reads:

  ==============  =========  ==========================================================
  ``cluster_id``  string     the cluster
  ``record_id``   string     an item record id (``DecodedRecord.record_id``)
  ``kept``        bool       written to a shard (false: removed as duplicate/conflict)
  ``verdict``     string     ``representative`` (the keeper) | ``duplicate`` (dropped,
                             counted as deduplicated) | ``template`` (flagged, kept) |
                             ``conflict`` (quarantined); ``reason`` is read if absent
  ``source_ids``  list<str>  optional: the record's input units; with it, units of rows
                             not kept (and not quarantined) count as ``deduplicated`` in
                             the accounting table, else ``stats.json``'s count is used
  ``modality``, ``tier``, ``cosine``  optional, shown when present
  ==============  =========  ==========================================================

  The ``patient`` column is never shown. Without ``dedup.parquet`` (or with no rows) the card
  says "no dedup stage in this build" (or that the stage was disabled / clustered nothing,
  from ``stats.json``'s ``dedup`` entry).

Numbers: every number in a table cell of the HTML carries ``data-k`` (the JSON path of that
number in the twin, as a JSON array) and, where the shown text is rounded or humanised,
``data-v`` (the exact value), so a test can check the page against the twin and the twin
against the parquet files. Counts come from the parquet files; the accounting identity
(inputs = written + quarantined + deduplicated, per modality, in input units) is recomputed
here and compared with ``stats.json``.

Privacy: the card shows pseudonymous sample keys and keyed-hash source ids, never file paths
(the ``path`` of each configured source is dropped), patient pseudonyms, dates or header values;
quarantine messages are PHI-free by contract (``schemas.reasons``); report excerpts are the
de-identified report text as written to the shards. All text is HTML-escaped.
"""

from pipelines.datacard.card import build_card, write_datacard
from pipelines.datacard.collect import collect_counts, label_reliability
from pipelines.datacard.common import (
    CARD_VERSION,
    DATACARD_HTML,
    DATACARD_JSON,
    NO_DEDUP_NOTE,
    DatacardConfig,
    DatacardResult,
)
from pipelines.datacard.shard_stats import (
    CARD_STATS_KEY,
    CARD_STATS_VERSION,
    KEEP_CHARS,
    is_card_member,
    shard_card_stats,
)

__all__ = [
    "CARD_STATS_KEY",
    "CARD_STATS_VERSION",
    "CARD_VERSION",
    "DATACARD_HTML",
    "DATACARD_JSON",
    "KEEP_CHARS",
    "NO_DEDUP_NOTE",
    "DatacardConfig",
    "DatacardResult",
    "build_card",
    "collect_counts",
    "is_card_member",
    "label_reliability",
    "shard_card_stats",
    "write_datacard",
]
