"""Metadata tables in the build graph: identity joins, anchors, lab events, labs normalisation.

Tables (``pipelines.config.TableConfig``) are read in workers, one task per table, in chunks
(pandas ``read_csv``, only the needed columns): a row becomes a small header, never a
payload, and no raw identifier leaves the reading worker (patients, studies and anchors are
keyed pseudonyms, times are shifted per patient).

- ``identity`` rows name a file by its path (a template over the row's columns), so their join
  key is the file's unit id (``pseudo.source_id("{source}/{path}")``): a GroupByKey on that id
  meets each decoded record with its row; the row sets patient, study, time (shifted), the
  image view and copies allow-listed fields and labels into the item's metadata. A record
  without a row is quarantined ``no_metadata``; rows without a decoded record (no file, or a
  file quarantined before the join) are counted. A volume whose row gives a rescale or a
  spacing (CT-RATE's metadata CSV) is rewritten in the joining worker (its blob read, converted
  by ``workers.volume.ct_metadata``, written back as a new blob; the header records both spacings).
- ``anchor`` rows and ``labs`` events join the patient's study groups in the anchor linker
  (``pipelines.link.AnchorLinker``), a GroupByKey on the patient.
- ``split`` rows (a published split file) are counted per patient in the reading worker and
  meet the patient's sample groups in a GroupByKey on the patient just before the split
  (:class:`AssignSplits`): one split per patient, whatever the table says.
- label-derived captions (``pipelines.captions``) are added after the split to the samples of
  identity tables with a ``caption`` block.
- labs normalisation runs after the split: train samples' values are grouped per lab item
  (empirical CDF, stored as a blob), gathered into a small side value (item → CDF blob, mean
  percentile), and each sample with labs gets its ``labs_0.npy``/``labs_0.json`` members.
  The statistics are written to ``labs_normalisation.json``; same input → same statistics.

Counts (rows read, rows without a record, lab values used, anchors per status) are summed in a
worker and written to ``stats.json`` under ``tables``; one row per anchor goes to
``anchor_links.parquet`` (what each admission linked, by source id).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import posixpath
import re
import string
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipelines.blobs import BlobStore
from pipelines.captions import ApplyCaptions, RewriteCaptions, caption_bucket, sample_order
from pipelines.config import BuildConfig, ConfigError, TableConfig
from pipelines.flow import Flow, Select
from pipelines.link import AnchorLinker, AnchorRow, LabEvent, anchor_element_order, anchor_patient_key
from pipelines.rowtables import concat_sorted, to_tables, value_counts
from pipelines.shards import SampleHeader
from schemas.canonical import canonical_bytes, canonical_json
from schemas.contract import member_name
from schemas.modality import Modality
from schemas.reasons import QuarantineError, ReasonCode
from schemas.records import ImageRecord, QuarantineRecord, VolumeRecord
from workers.deid.pseudonym import Pseudonymizer
from workers.ecg.convention import array_sha256, npy_bytes
from workers.ids import normalise_id
from workers.labs.values import fit_cdf, labs_members, parse_value
from workers.volume.ct_metadata import apply_ct_metadata

log = logging.getLogger(__name__)

CHUNK_ROWS = 200_000
#: split names of published split files → the corpus's splits
SPLIT_NAMES = {"train": "train", "validate": "val", "validation": "val", "valid": "val", "val": "val"}
SPLIT_NAMES |= {"test": "test"}
#: tie-break of a patient whose rows name several splits: held-out first
SPLIT_TIE_RANK = {"test": 2, "val": 1, "train": 0}
ANCHOR_LINKS = "anchor_links.parquet"
LABS_NORMALISATION = "labs_normalisation.json"


# --- reading ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdentityRow:
    """What an identity row says about one file (pseudonymous, shifted): a header."""

    source_id: str
    table: str
    patient: str
    study: str
    acquired_at: str
    view: str
    fields: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    #: volume metadata as text: ("slope"|"intercept"|"spacing", value), non-empty ones only
    ct: tuple[tuple[str, str], ...] = ()


def template_fields(template: str) -> set[str]:
    """Column names a format template uses (``"{subject_id:.2}"`` → ``{"subject_id"}``)."""
    out = set()
    for _, name, _, _ in string.Formatter().parse(template):
        if name:
            out.add(re.split(r"[.\[]", name, maxsplit=1)[0] if name[0] != "{" else name)
    return out


def render(template: str, values: dict) -> str:
    return template.format_map(values) if template else ""


_DICOM_TIME = re.compile(r"^(\d{8})(?:[ T]?(\d{1,6})(\.\d+)?)?$")


def parse_time(text: str, fmt: str = "") -> datetime | None:
    """A table time: ``strptime(fmt)``, else ISO 8601, else DICOM ``YYYYMMDD[ HHMMSS[.f]]``
    (MIMIC-CXR StudyTime is a number: ``84530.0`` is 08:45:30). None when unparseable."""
    s = (text or "").strip()
    if not s:
        return None
    try:
        if fmt:
            return datetime.strptime(s, fmt)
        return datetime.fromisoformat(s)
    except ValueError:
        pass
    m = _DICOM_TIME.match(s.replace(" ", " ", 1))
    if not m:
        return None
    try:
        t = (m.group(2) or "0").zfill(6)
        frac = (m.group(3) or ".0")[1:7].ljust(6, "0")
        return datetime.strptime(f"{m.group(1)}{t}{frac}", "%Y%m%d%H%M%S%f")
    except ValueError:
        return None


def _shifted(pseudo: Pseudonymizer, dt: datetime | None, patient: str) -> str:
    if dt is None or not patient:
        return ""
    try:
        return pseudo.shift_datetime(dt, patient).isoformat()
    except OverflowError:
        return ""


def _read_csv(path: Path, columns: set[str]):
    """Chunks (DataFrames of str) of a CSV/TSV table, only ``columns`` (checked against the header)."""
    import pandas as pd

    name = path.name.lower().removesuffix(".gz")
    sep = "\t" if name.endswith((".tsv", ".tab")) else ","
    header = pd.read_csv(path, sep=sep, nrows=0, dtype=str).columns
    missing = sorted(columns - set(header))
    if missing:
        raise ConfigError(f"table {path.name}: column(s) not found: {', '.join(missing)}")
    return pd.read_csv(
        path,
        sep=sep,
        dtype=str,
        usecols=sorted(columns),
        keep_default_na=False,
        na_filter=False,
        chunksize=CHUNK_ROWS,
    )


def _rows(path: Path, columns: set[str]) -> Iterator[dict[str, str]]:
    for chunk in _read_csv(path, columns):
        cols = list(chunk.columns)
        for values in chunk.itertuples(index=False, name=None):
            yield dict(zip(cols, values, strict=True))


@dataclass(frozen=True)
class ReadTable:
    """``flat_map``: table index → tagged headers ``id`` / ``a`` / ``l`` / ``item`` / ``count``."""

    fans_out = True
    root: str
    cfg: BuildConfig
    pseudo: Pseudonymizer

    def __call__(self, index: int) -> Iterator[tuple[str, object]]:
        t = self.cfg.tables[index]
        path = Path(self.root, t.path)
        if t.role == "identity":
            yield from self._identity(t, path)
        elif t.role == "anchor":
            yield from self._anchors(t, path)
        elif t.role == "split":
            yield from self._splits(t, path)
        else:
            yield from self._labs(t, path)

    def _identity(self, t: TableConfig, path: Path) -> Iterator[tuple[str, object]]:
        src = next(s for s in self.cfg.resolved_sources() if s.name == t.source)
        src_dir = posixpath.normpath(src.path)
        base = (
            posixpath.normpath(t.path_root) if t.path_root else posixpath.dirname(posixpath.normpath(t.path))
        )
        rx = re.compile(t.path_regex) if t.path_regex else None
        prx = re.compile(t.parse_regex) if t.parse_regex else None
        groups = (set(rx.groupindex) if rx else set()) | (set(prx.groupindex) if prx else set())
        ct_templates = (("slope", t.slope), ("intercept", t.intercept), ("spacing", t.spacing))
        cols = set().union(
            *(template_fields(x) for x in (t.path_template, t.patient, t.study, t.time)),
            *(template_fields(x) for _, x in ct_templates),
            t.fields,
            {t.view, t.parse_column} - {""},
        )
        cols -= groups
        labels = self._label_table(t)
        counts: Counter[str] = Counter()
        for row in _rows(path, cols):
            counts["rows"] += 1
            values = dict(row)
            if prx is not None:
                pm = prx.search(str(row.get(t.parse_column, "")))
                if pm is None:
                    counts["rows_parse_regex_mismatch"] += 1
                    continue
                values.update({k: v or "" for k, v in pm.groupdict().items()})
            rel = render(t.path_template, values)
            full = posixpath.normpath(posixpath.join(base, rel))
            in_src = posixpath.relpath(full, src_dir) if src_dir != "." else full
            if in_src.startswith("../") or in_src == ".." or posixpath.isabs(in_src):
                counts["rows_outside_source"] += 1
                continue
            if rx is not None:
                m = rx.search(rel)
                if m is None:
                    counts["rows_path_regex_mismatch"] += 1
                    continue
                values.update({k: v or "" for k, v in m.groupdict().items()})
            patient = self.pseudo.patient(normalise_id(render(t.patient, values)))
            if not patient:
                counts["rows_without_patient"] += 1
            dt = parse_time(render(t.time, values), t.time_format) if t.time else None
            if t.time and dt is None:
                counts["rows_without_time"] += 1
            lab = ()
            if labels is not None:
                lab = labels.get(tuple(normalise_id(values.get(c, "")) for c in t.labels_on), ())
                counts["rows_with_labels" if lab else "rows_without_labels"] += 1
            yield (
                "id",
                IdentityRow(
                    source_id=self.pseudo.source_id(f"{src.name}/{in_src}"),
                    table=t.name,
                    patient=patient,
                    study=self.pseudo.study(normalise_id(render(t.study, values))),
                    acquired_at=_shifted(self.pseudo, dt, patient),
                    view=str(row.get(t.view, "")).strip() if t.view else "",
                    fields=tuple((c, str(row.get(c, "")).strip()) for c in t.fields),
                    labels=lab,
                    ct=tuple((k, render(x, values).strip()) for k, x in ct_templates if x),
                ),
            )
        yield from (("count", (t.name, k, n)) for k, n in sorted(counts.items()))

    def _label_table(self, t: TableConfig) -> dict | None:
        """Label rows keyed by the normalised ``labels_on`` values (read once, in this worker)."""
        if not t.labels_path:
            return None
        import pandas as pd

        path = Path(self.root, t.labels_path)
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
        missing = [c for c in t.labels_on if c not in df.columns]
        if missing or not t.labels_on:
            raise ConfigError(
                f"table {t.name}: labels_on column(s) not in the label table: {', '.join(missing)}"
            )
        label_cols = [c for c in df.columns if c not in t.labels_on]
        if t.caption is not None:
            absent = [x for x in t.caption.labels if x not in t.fields and x not in label_cols]
            if absent:
                raise ConfigError(
                    f"tables.{t.name}.caption.labels: neither in fields nor in the label table: {', '.join(absent)}"
                )
        out: dict[tuple, tuple] = {}
        for rec in df.itertuples(index=False, name=None):
            row = dict(zip(df.columns, rec, strict=True))
            key = tuple(normalise_id(row[c]) for c in t.labels_on)
            vals = []
            for c in label_cols:
                v = parse_value(row[c])
                if v is not None:
                    vals.append((c, f"{v:g}"))
            out.setdefault(key, tuple(vals))
        return out

    def _anchors(self, t: TableConfig, path: Path) -> Iterator[tuple[str, object]]:
        cols = set().union(*(template_fields(x) for x in (t.id, t.patient, t.time)))
        counts: Counter[str] = Counter()
        for row in _rows(path, cols):
            counts["rows"] += 1
            patient = self.pseudo.patient(normalise_id(render(t.patient, row)))
            anchor_id = normalise_id(render(t.id, row))
            dt = parse_time(render(t.time, row), t.time_format)
            time = _shifted(self.pseudo, dt, patient)
            if not patient or not anchor_id or not time:
                counts["rows_without_patient_id_or_time"] += 1
                continue
            token = "a" + self.pseudo.token("anchor", f"{t.name}/{anchor_id}", 20)
            yield "a", AnchorRow(t.name, token, patient, time, t.licence)
        yield from (("count", (t.name, k, n)) for k, n in sorted(counts.items()))

    def _labs(self, t: TableConfig, path: Path) -> Iterator[tuple[str, object]]:
        cols = set().union(*(template_fields(x) for x in (t.patient, t.time, t.item, t.value, t.unit)))
        keep = [normalise_id(i) for i in t.items]
        if not keep:  # top_k by numeric events: a first pass over item and value only
            freq: Counter[str] = Counter()
            for row in _rows(path, template_fields(t.item) | template_fields(t.value)):
                if parse_value(render(t.value, row)) is not None:
                    freq[normalise_id(render(t.item, row))] += 1
            keep = [i for i, _ in sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))[: t.top_k]]
        names = self._item_names(t)
        for rank, item in enumerate(keep):
            yield "item", (rank, item, names.get(item, ""))
        wanted = set(keep)
        counts: Counter[str] = Counter()
        for row in _rows(path, cols):
            counts["rows"] += 1
            item = normalise_id(render(t.item, row))
            if item not in wanted:
                counts["rows_item_not_selected"] += 1
                continue
            value = parse_value(render(t.value, row))
            if value is None:
                counts["rows_not_numeric"] += 1
                continue
            patient = self.pseudo.patient(normalise_id(render(t.patient, row)))
            time = _shifted(self.pseudo, parse_time(render(t.time, row), t.time_format), patient)
            if not patient or not time:
                counts["rows_without_patient_or_time"] += 1
                continue
            yield "l", LabEvent(t.name, patient, time, item, value, render(t.unit, row).strip(), t.licence)
        yield from (("count", (t.name, k, n)) for k, n in sorted(counts.items()))

    def _splits(self, t: TableConfig, path: Path) -> Iterator[tuple[str, object]]:
        """``("s", (table, patient, split, rows))`` per patient and split named in the table."""
        counts: Counter[str] = Counter()
        votes: Counter[tuple[str, str]] = Counter()
        for row in _rows(path, template_fields(t.patient) | template_fields(t.value)):
            counts["rows"] += 1
            patient = self.pseudo.patient(normalise_id(render(t.patient, row)))
            split = SPLIT_NAMES.get(render(t.value, row).strip().lower())
            if not patient:
                counts["rows_without_patient"] += 1
            elif split is None:
                counts["rows_unknown_split"] += 1
            else:
                votes[(patient, split)] += 1
        for (patient, split), n in sorted(votes.items()):
            yield "s", (t.name, patient, split, n)
        yield from (("count", (t.name, k, n)) for k, n in sorted(counts.items()))

    def _item_names(self, t: TableConfig) -> dict[str, str]:
        if not t.names_path:
            return {}
        out = {}
        for row in _rows(Path(self.root, t.names_path), {t.names_id, t.names_label}):
            out[normalise_id(row[t.names_id])] = row[t.names_label].strip()
        return out


# --- identity join ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteIdentity:
    """Records of sources with an identity table → ``join``; the others → ``rec``."""

    sources: frozenset[str]

    def __call__(self, rec) -> Iterator[tuple[str, object]]:
        yield ("join" if rec.source_name in self.sources and rec.source_ids else "rec"), rec


def _as_record(rec) -> Iterator[tuple[str, object]]:
    yield "r", rec


def _as_row(row: IdentityRow) -> Iterator[tuple[str, object]]:
    yield "m", row


def join_key(element: tuple[str, object]) -> str:
    tag, v = element
    return v.source_ids[0] if tag == "r" else v.source_id  # type: ignore[union-attr]


def join_order(element: tuple[str, object]) -> tuple:
    tag, v = element
    if tag == "r":
        return (0, v.record_id)  # type: ignore[union-attr]
    return (1, v.table, v.acquired_at, v.patient, v.study, v.view, v.fields, v.labels, v.ct)  # type: ignore[union-attr]


def apply_identity(rec, rows: list[IdentityRow]):
    """The record with the identity of its rows (first row per table, tables in name order)."""
    meta = json.loads(rec.meta_json) if rec.meta_json else {}
    changes: dict = {}
    seen: set[str] = set()
    for row in rows:
        if row.table in seen:
            continue
        seen.add(row.table)
        if row.patient:
            changes["patient"] = row.patient
        if row.study:
            changes["study"] = row.study
        if row.acquired_at:
            changes["acquired_at"] = row.acquired_at
        if row.view and isinstance(rec, ImageRecord):
            changes["view_position"] = row.view
        meta.setdefault("tables", {})[row.table] = dict(row.fields)
        meta.setdefault("table", {}).update(dict(row.fields))
        if row.labels:
            meta.setdefault("labels", {}).update(dict(row.labels))
    patient = changes.get("patient", rec.patient)
    if "acquired_at" not in changes and patient != rec.patient:
        changes["acquired_at"] = ""  # a time shifted for another patient is not kept
    meta["identity"] = sorted(seen)
    changes["meta_json"] = canonical_json(meta)
    return replace(rec, **changes)


def apply_ct_rows(rec: VolumeRecord, rows: list[IdentityRow], store: BlobStore) -> VolumeRecord:
    """The volume after its metadata row's rescale/spacing (first row with any), in this worker:
    payload blob read, converted, written; raises ``QuarantineError`` for unusable metadata."""
    ct = dict(next((r.ct for r in rows if r.ct), ()))
    (name, data), *_ = store.get_payload(rec.payload_refs)
    vol = np.load(io.BytesIO(data), allow_pickle=False)
    affine = np.asarray(rec.affine, dtype=np.float64).reshape(4, 4)
    vol, affine, info = apply_ct_metadata(
        vol, affine, ct.get("slope", ""), ct.get("intercept", ""), ct.get("spacing", "")
    )
    meta = json.loads(rec.meta_json) if rec.meta_json else {}
    meta["ct_metadata"] = info
    applied = bool(info.get("rescale", {}).get("applied"))
    if applied:
        meta.setdefault("volume", {}).update(
            {"hounsfield": True, "dtype": "int16", "value_range": [int(vol.min()), int(vol.max())]}
        )
    spacing = tuple(round(float(x), 6) for x in np.linalg.norm(affine[:3, :3], axis=0))
    return replace(
        rec,
        payload_refs=store.put_payload(((name, npy_bytes(vol)),)),
        content_sha256=array_sha256(vol),
        hounsfield=rec.hounsfield or applied,
        spacing_mm=spacing,
        affine=tuple(round(float(x), 6) for x in affine.ravel()),
        meta_json=canonical_json(meta),
    )


@dataclass(frozen=True)
class JoinIdentity:
    """``group`` on unit id: a record meets its identity rows (volumes with metadata rewritten)."""

    blob_root: str

    def __call__(self, key: str, elements: list) -> Iterator[tuple[str, object]]:
        for tag, v in join_identity(key, elements):
            if tag == "rec" and isinstance(v, VolumeRecord) and any(r.ct for _, r in _rows_of(elements)):
                try:
                    v = apply_ct_rows(v, [r for _, r in _rows_of(elements)], BlobStore(self.blob_root))
                except QuarantineError as exc:
                    for sid in v.source_ids:
                        yield (
                            "q",
                            QuarantineRecord(
                                sid, v.source_name, v.modality, "ct-metadata", exc.reason, exc.message
                            ),
                        )
                    continue
            yield tag, v


def _rows_of(elements: list) -> list[tuple[str, IdentityRow]]:
    return [(t, v) for t, v in elements if t == "m"]


def join_identity(key: str, elements: list) -> Iterator[tuple[str, object]]:  # noqa: ARG001
    """``group`` on unit id: a record meets its identity rows."""
    recs = [v for t, v in elements if t == "r"]
    rows = [v for t, v in elements if t == "m"]
    if not recs:
        for table in sorted({r.table for r in rows}):
            yield "count", (table, "rows_without_record", 1)
        return
    for table, n in sorted(Counter(r.table for r in rows).items()):
        if n > 1:
            yield "count", (table, "files_with_several_rows", 1)
    for rec in recs:
        if not rows:
            for sid in rec.source_ids:
                yield (
                    "q",
                    QuarantineRecord(
                        sid,
                        rec.source_name,
                        rec.modality,
                        "join",
                        ReasonCode.NO_METADATA,
                        "no metadata table row",
                    ),
                )
            continue
        yield "rec", apply_identity(rec, rows)


# --- split table (before the split) ------------------------------------------------------------------


def split_patient_key(element: tuple[str, object]) -> str:
    tag, v = element
    if tag == "g":
        return v.patient or v.group_key  # type: ignore[union-attr]
    return v[1]  # type: ignore[index]


def split_element_order(element: tuple[str, object]) -> tuple:
    tag, v = element
    return (0, v.group_key) if tag == "g" else (1, *v)  # type: ignore[union-attr, misc]


@dataclass(frozen=True)
class AssignSplits:
    """``group`` on patient: the patient's sample groups meet its split-table votes.

    The split most rows name wins (ties: test, val, train); a patient without votes keeps the
    keyed-hash split (``split: ""``). Counts: patients per outcome, under ``table`` (the first
    split table's name).
    """

    table: str

    def __call__(self, key: str, elements: list) -> Iterator[tuple[str, object]]:  # noqa: ARG002
        votes: Counter[str] = Counter()
        for tag, v in elements:
            if tag == "s":
                votes[v[2]] += v[3]
        groups = [v for tag, v in elements if tag == "g"]
        table = self.table
        split = max(votes, key=lambda s: (votes[s], SPLIT_TIE_RANK[s])) if votes else ""
        if groups:
            outcome = "patients_split_by_table" if split else "patients_not_in_split_table"
            yield "count", (table, outcome, 1)
            if len(votes) > 1:
                yield "count", (table, "patients_in_several_splits", 1)
        for g in groups:
            yield "group", replace(g, split=split)


# --- labs normalisation (after the split) -----------------------------------------------------------


def _labs_item(meta: dict) -> dict | None:
    return next((it for it in meta.get("items", []) if it.get("modality") == Modality.LABS.value), None)


def _meta_of(sample: SampleHeader, store: BlobStore) -> dict:
    sha = next(s for name, s, _ in sample.members if name == "meta.json")
    return json.loads(store.get(sha))


@dataclass(frozen=True)
class TrainLabValues:
    """``flat_map``: a train sample with labs → ``(item id, value)`` pairs."""

    blob_root: str

    def __call__(self, sample: SampleHeader) -> Iterator[tuple[str, float]]:
        if sample.split != "train" or Modality.LABS.value not in sample.modalities:
            return
        it = _labs_item(_meta_of(sample, BlobStore(self.blob_root)))
        if it is not None:
            yield from zip(it["item_ids"], it["values"], strict=True)


@dataclass(frozen=True)
class FitItemCdf:
    """``group`` on item id: sorted train values → blob; yields ``(item, sha, n, mean percentile)``."""

    blob_root: str

    def __call__(self, item: str, pairs: list[tuple[str, float]]) -> Iterator[tuple[str, str, int, float]]:
        x, mean = fit_cdf([v for _, v in pairs])
        sha = BlobStore(self.blob_root).put(x.astype("<f8").tobytes())
        yield item, sha, int(x.size), mean


def _item_of(pair: tuple[str, float]) -> str:
    return pair[0]


def _value_of(pair: tuple[str, float]) -> float:
    return pair[1]


def _ident(x):
    return x


def labs_stats(elements: list) -> dict:
    """``gather``: the item list and the per-item CDF references → one small side value."""
    items = sorted(v for t, v in elements if t == "item")  # (rank, item id, name)
    cdf = {v[0]: tuple(v[1:]) for t, v in elements if t == "cdf"}
    rows = [
        {
            "item_id": i,
            "name": name,
            "n_train": cdf.get(i, ("", 0, 0.5))[1],
            "mean_percentile": cdf.get(i, ("", 0, 0.5))[2],
            "cdf_sha256": cdf.get(i, ("",))[0],
        }
        for _, i, name in items
    ]
    stats_id = hashlib.sha256(canonical_bytes(rows)).hexdigest()
    return {"stats_id": stats_id, "items": rows}


def _tag(tag: str):
    return _Tag(tag)


@dataclass(frozen=True)
class _Tag:
    tag: str

    def __call__(self, v) -> Iterator[tuple[str, object]]:
        yield self.tag, v


_CDF_CACHE: dict[str, np.ndarray] = {}


@dataclass(frozen=True)
class ApplyLabs:
    """``flat_map_with`` (side: :func:`labs_stats`): add ``labs_0.npy``/``labs_0.json`` members."""

    blob_root: str

    def __call__(self, sample: SampleHeader, stats: dict) -> Iterator[SampleHeader]:
        if Modality.LABS.value not in sample.modalities:
            yield sample
            return
        store = BlobStore(self.blob_root)
        it = _labs_item(_meta_of(sample, store))
        if it is None:
            yield sample
            return
        cdfs = {}
        for row in stats["items"]:
            sha = row["cdf_sha256"]
            if sha and sha not in _CDF_CACHE:
                _CDF_CACHE[sha] = np.frombuffer(store.get(sha), dtype="<f8")
            cdfs[row["item_id"]] = (_CDF_CACHE[sha] if sha else np.zeros(0), row["mean_percentile"])
        present = {
            i: (float(v), u, t)
            for i, v, u, t in zip(it["item_ids"], it["values"], it["units"], it["times"], strict=True)
        }
        items = [(r["item_id"], r["name"]) for r in stats["items"]]
        npy, js = labs_members(items, present, cdfs, stats["stats_id"])
        new = [
            (member_name(Modality.LABS, 0, "npy"), store.put(npy), len(npy)),
            (member_name(Modality.LABS, 0, "json"), store.put(js), len(js)),
        ]
        yield replace(sample, members=tuple(sorted((*sample.members, *new))))


# --- the graph --------------------------------------------------------------------------------------


def sum_counts(rows: list[tuple[str, str, int]]) -> dict:
    out: dict[str, Counter] = {}
    for table, name, n in rows:
        out.setdefault(table, Counter())[name] += n
    return {t: dict(sorted(c.items())) for t, c in sorted(out.items())}


def _emit(_seed, value) -> Iterator:
    yield value


def _count_order(row: tuple[str, str, int]) -> tuple:
    return row


@dataclass
class TablesGraph:
    """Handles of the table stages; ``outputs`` are the small rows the driver writes."""

    flow: Flow
    cfg: BuildConfig
    blob_root: str
    rows: object
    counts: list
    quarantine: list
    outputs: dict

    def join(self, records):
        """Records of sources with identity tables meet their rows (GroupByKey on unit id)."""
        sources = frozenset(t.source for t in self.cfg.tables if t.role == "identity")
        if not sources:
            return records
        routed = records.flat_map(RouteIdentity(sources), "identity-route")
        recs = routed.flat_map(Select("join"), "identity-recs").flat_map(_as_record, "identity-r")
        idrows = self.rows.flat_map(Select("id"), "identity-rows").flat_map(_as_row, "identity-m")
        joined = self.flow.union(recs, idrows).group(
            join_key, JoinIdentity(self.blob_root), join_order, "identity-join"
        )
        self.counts.append(joined.flat_map(Select("count"), "identity-counts"))
        self.quarantine.append(joined.flat_map(Select("q"), "identity-q"))
        return self.flow.union(
            routed.flat_map(Select("rec"), "identity-other"),
            joined.flat_map(Select("rec"), "identity-joined"),
        )

    def link(self, study_groups):
        """Anchor linking: study groups, anchors and lab events meet per patient."""
        a = self.cfg.linking.anchor
        parts = [study_groups.flat_map(_tag("g"), "anchor-groups")]
        parts.append(self.rows.flat_map(Select("a"), "anchor-rows").flat_map(_tag("a"), "anchor-a"))
        parts.append(self.rows.flat_map(Select("l"), "lab-events").flat_map(_tag("l"), "anchor-l"))
        linked = self.flow.union(*parts).group(
            anchor_patient_key,
            AnchorLinker(a, self.cfg.linking.unlinked),
            anchor_element_order,
            "link-anchor",
        )
        self.counts.append(linked.flat_map(Select("count"), "anchor-counts"))
        rows = linked.flat_map(Select("anchor"), "anchor-out").flat_map(anchor_link_row, "anchor-row")
        # one row per admission: Arrow tables built in the workers (pipelines.rowtables)
        self.outputs["anchor_rows"] = to_tables(
            rows, ANCHOR_SCHEMA, "anchor", anchor_link_order, "anchor-table"
        )
        return linked

    def assign_splits(self, groups):
        """Sample groups with the split a split table gives their patient (GroupByKey on patient)."""
        names = sorted(t.name for t in self.cfg.tables if t.role == "split")
        if not names:
            return groups
        parts = [
            groups.flat_map(_tag("g"), "split-groups"),
            self.rows.flat_map(Select("s"), "split-rows").flat_map(_tag("s"), "split-s"),
        ]
        joined = self.flow.union(*parts).group(
            split_patient_key, AssignSplits(names[0]), split_element_order, "split-join"
        )
        self.counts.append(joined.flat_map(Select("count"), "split-counts"))
        return joined.flat_map(Select("group"), "split-out")

    def normalise(self, samples, out_dir: str = ""):
        """After the split: labs percentiles under the train split's CDF (a global stage), then
        label-derived captions (``pipelines.captions``) of identity tables with a ``caption``;
        with ``caption.llm_rewrite`` grouped in buckets, one LLM request batch per bucket."""
        samples = self._labs(samples)
        captioned = tuple(sorted((t for t in self.cfg.tables if t.caption is not None), key=lambda t: t.name))
        if any(t.caption is not None and t.caption.llm_rewrite for t in captioned):
            rewrite = RewriteCaptions(tuple(sorted(self.cfg.llm.items())), out_dir, self.blob_root, captioned)
            return samples.group(caption_bucket, rewrite, sample_order, "captions-llm")
        if captioned:
            samples = samples.flat_map(ApplyCaptions(self.blob_root, captioned), "captions")
        return samples

    def _labs(self, samples):
        if not any(t.role == "labs" for t in self.cfg.tables):
            return samples
        values = samples.flat_map(TrainLabValues(self.blob_root), "labs-train-values")
        cdfs = values.group(_item_of, FitItemCdf(self.blob_root), _value_of, "labs-cdf")
        items = self.rows.flat_map(Select("item"), "labs-items").flat_map(_tag("item"), "labs-i")
        side = self.flow.union(items, cdfs.flat_map(_tag("cdf"), "labs-c")).gather(
            labs_stats, _ident, "labs-stats"
        )
        self.outputs["labs_stats"] = self.flow.create([0], "labs-stats-seed").flat_map_with(
            _emit, side, "labs-stats-out"
        )
        return samples.flat_map_with(ApplyLabs(self.blob_root), side, "labs-apply")

    def finish(self):
        """Declare the summed counts (one element) once every stage has added its counts."""
        counts = self.flow.union(self.rows.flat_map(Select("count"), "table-counts"), *self.counts)
        side = counts.gather(sum_counts, _count_order, "table-counts-sum")
        self.outputs["table_counts"] = self.flow.create([0], "table-counts-seed").flat_map_with(
            _emit, side, "table-counts-out"
        )
        return self.outputs


def declare_tables(
    flow: Flow, root: str, cfg: BuildConfig, pseudo: Pseudonymizer, blob_root: str
) -> TablesGraph:
    """Declare the table readers (one task per table); the caller wires join/link/normalise."""
    for t in cfg.tables:
        for rel in (t.path, t.labels_path, t.names_path):
            if rel and not Path(root, rel).is_file():
                raise FileNotFoundError(f"table {t.name!r}: file not found: {rel}")
    rows = flow.create(list(range(len(cfg.tables))), "tables").flat_map(
        ReadTable(root, cfg, pseudo), "table-rows"
    )
    return TablesGraph(flow, cfg, blob_root, rows, [], [], {})


#: ``anchor_links.parquet``: one row per anchor (admission), sorted by time then anchor id
ANCHOR_SCHEMA = pa.schema(
    [
        ("anchor", pa.string()),
        ("patient", pa.string()),
        ("time", pa.string()),
        ("status", pa.string()),
        ("sample_group", pa.string()),
        ("linked", pa.string()),  # canonical JSON: modality → linked unit ids
        ("labs_items", pa.list_(pa.string())),
    ]
)


def anchor_link_row(r: dict) -> Iterator[dict]:
    """``flat_map``: an anchor's outcome as its ``anchor_links.parquet`` row."""
    yield r | {"sample_group": r.get("sample_group", ""), "linked": canonical_json(r["linked"])}


def anchor_link_order(r: dict) -> tuple[str, str]:
    return r["time"], r["anchor"]


def write_table_outputs(out: dict, out_dir: Path) -> dict:
    """Driver: ``anchor_links.parquet``, ``labs_normalisation.json``; returns the stats block."""
    from pipelines.manifest import write_table
    from schemas.atomic import write_atomic

    block: dict = {"counts": out["table_counts"][0] if out.get("table_counts") else {}}
    if "anchor_rows" in out:
        table = concat_sorted(out["anchor_rows"], ANCHOR_SCHEMA, ["time", "anchor"])
        write_table(out_dir / ANCHOR_LINKS, table)
        block["anchors"] = dict(sorted(value_counts(table["status"]).items()))
    if out.get("labs_stats"):
        stats = out["labs_stats"][0]
        doc = {
            "method": "percentile = #(train values <= x) / n_train per item (empirical CDF of the train "
            "split); a missing item gets the mean train percentile; items without train values: 0.5",
            "split": "train",
            **stats,
        }
        write_atomic(out_dir / LABS_NORMALISATION, json.dumps(doc, sort_keys=True, indent=1).encode())
        block["labs_stats_id"] = stats["stats_id"]
    return block
