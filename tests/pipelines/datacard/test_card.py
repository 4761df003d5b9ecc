"""The data card of the real demo build: numbers vs the parquet files (DuckDB) and the shards
(webdataset), the HTML vs its JSON twin, privacy and escaping, and the page in headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import statistics
import tarfile
from collections import Counter, defaultdict
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from pipelines.build import run_build
from pipelines.config import load_config
from pipelines.datacard import (
    CARD_STATS_KEY,
    CARD_STATS_VERSION,
    DATACARD_HTML,
    DATACARD_JSON,
    KEEP_CHARS,
    NO_DEDUP_NOTE,
    DatacardConfig,
    build_card,
    shard_card_stats,
    write_datacard,
)
from pipelines.datacard.browser import check_page, find_chromium
from pipelines.datacard.render import render_excerpt
from schemas.labels import ASSERTIONS
from tests.conftest import REPO

DEMO_CFG = REPO / "examples" / "demo.yaml"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The real demo build (bundled sample data) with its data card written by write_datacard."""
    out = tmp_path_factory.mktemp("dc-demo")
    cfg = replace(load_config(DEMO_CFG), strict=True, workers=2)
    run_build(REPO / "examples", out, cfg, quiet=True)
    write_datacard(out, quiet=True)
    return out


@pytest.fixture(scope="module")
def card(demo) -> dict:
    return json.loads((demo / DATACARD_JSON).read_text())


@pytest.fixture(scope="module")
def page(demo) -> str:
    return (demo / DATACARD_HTML).read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------
# every number recomputed independently
# ------------------------------------------------------------------------------------------


def _sql(out: Path, query: str) -> list[tuple]:
    con = duckdb.connect()
    for name in ("manifest", "shards", "quarantine", "inputs", "dedup"):
        if (out / f"{name}.parquet").exists():
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{out / name}.parquet')")
    return con.execute(query).fetchall()


def _by_count(rows) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(rows, key=lambda kv: (-kv[1], str(kv[0])))}


def test_counts_match_parquet(demo, card):
    s = lambda q: _sql(demo, q)  # noqa: E731
    [(n_samples, n_bytes, n_pat, n_nopat)] = s(
        "SELECT count(*), sum(n_bytes), count(DISTINCT nullif(patient, '')), count(*) FILTER (patient = '') FROM manifest"
    )
    [(n_shards, shard_bytes)] = s("SELECT count(*), sum(n_bytes) FROM shards")
    [(n_units, n_files)] = s("SELECT count(*), count(DISTINCT file_id) FROM inputs")
    [(n_q,)] = s("SELECT count(*) FROM quarantine")
    [(several,)] = s(
        "SELECT count(*) FROM (SELECT patient FROM manifest WHERE patient <> '' GROUP BY patient "
        "HAVING count(DISTINCT split) > 1)"
    )
    assert card["totals"] == {
        "samples": n_samples,
        "sample_bytes": n_bytes,
        "patients": n_pat,
        "samples_without_patient": n_nopat,
        "shards": n_shards,
        "shard_bytes": shard_bytes,
        "input_units": n_units,
        "input_files": n_files,
        "quarantine_records": n_q,
        "patients_in_several_splits": several,
    }
    assert several == 0 and n_samples > 40 and n_q >= 4

    splits = s(
        "SELECT m.split, count(*), count(DISTINCT nullif(patient, '')), count(DISTINCT nullif(study, '')), "
        "(SELECT count(*) FROM shards x WHERE x.split = m.split), "
        "(SELECT sum(n_bytes) FROM shards x WHERE x.split = m.split) FROM manifest m GROUP BY m.split"
    )
    assert card["splits"] == {
        sp: {"samples": a, "patients": b, "studies": c, "shards": d, "shard_bytes": e}
        for sp, a, b, c, d, e in splits
    }
    assert list(card["splits"]) == [x for x in ("train", "val", "test") if x in card["splits"]]

    mods = dict(s("SELECT m, count(*) FROM (SELECT unnest(modalities) AS m FROM manifest) GROUP BY m"))
    items = dict(
        s(
            "SELECT regexp_extract(x, '^([a-z]+)_', 1), count(*) FROM (SELECT unnest(members) AS x FROM manifest) "
            r"WHERE regexp_matches(x, '^[a-z]+_\d+\.(png|npy|txt)$') GROUP BY 1"
        )
    )
    assert card["modalities"] == {
        m: {"samples": mods.get(m, 0), "items": items.get(m, 0)} for m in ("image", "volume", "ecg", "report")
    }
    assert all(card["modalities"][m]["samples"] > 0 for m in card["modalities"])
    assert card["modality_combinations"] == _by_count(
        s("SELECT array_to_string(modalities, '+'), count(*) FROM manifest GROUP BY 1")
    )

    src = s(
        """
        WITH w AS (SELECT DISTINCT unnest(source_ids) AS sid FROM manifest),
             q AS (SELECT DISTINCT source_id AS sid FROM quarantine),
             names AS (SELECT source_name AS n FROM inputs UNION SELECT unnest(source_names) FROM manifest)
        SELECT n,
          (SELECT count(*) FROM manifest WHERE list_contains(source_names, n)),
          (SELECT count(*) FROM inputs WHERE source_name = n),
          (SELECT count(*) FROM inputs WHERE source_name = n AND source_id IN (SELECT sid FROM w)),
          (SELECT count(*) FROM inputs WHERE source_name = n AND source_id NOT IN (SELECT sid FROM w)
                                                             AND source_id IN (SELECT sid FROM q))
        FROM names ORDER BY n
        """
    )
    assert card["sources"] == {
        n: {"samples": a, "input_units": b, "written_units": c, "quarantined_units": d}
        for n, a, b, c, d in src
    }
    lic = s("SELECT l, count(*) FROM (SELECT unnest(licences) AS l FROM manifest) GROUP BY l ORDER BY l")
    assert card["licences"] == {lic_: {"samples": n} for lic_, n in lic}
    assert card["inputs_by_kind"] == _by_count(s("SELECT kind, count(*) FROM inputs GROUP BY kind"))


def test_accounting_matches_parquet_and_stats(demo, card):
    dedup_cte = (
        "SELECT DISTINCT unnest(source_ids) AS sid FROM dedup WHERE NOT kept"
        if (demo / "dedup.parquet").exists()
        else "SELECT NULL AS sid WHERE false"
    )
    rows = _sql(
        demo,
        f"""
        WITH w AS (SELECT DISTINCT unnest(source_ids) AS sid FROM manifest),
             q AS (SELECT DISTINCT source_id AS sid FROM quarantine),
             d AS ({dedup_cte}),
             u AS (SELECT modality,
                     CASE WHEN source_id IN (SELECT sid FROM w) THEN 'written'
                          WHEN source_id IN (SELECT sid FROM q) THEN 'quarantined'
                          WHEN source_id IN (SELECT sid FROM d) THEN 'deduplicated' ELSE 'unaccounted' END AS fate
                   FROM inputs)
        SELECT modality, count(*), count(*) FILTER (fate = 'written'), count(*) FILTER (fate = 'quarantined'),
               count(*) FILTER (fate = 'deduplicated'), count(*) FILTER (fate = 'unaccounted')
        FROM u GROUP BY modality ORDER BY modality
        """,
    )
    acc = card["accounting"]
    expected = {
        m: {"inputs": i, "written": w, "quarantined": q, "deduplicated": d, "unaccounted": x, "holds": x == 0}
        for m, i, w, q, d, x in rows
    }
    assert acc["per_modality"] == expected
    assert acc["identity_holds"] and acc["total"]["unaccounted"] == 0
    stats = json.loads((demo / "stats.json").read_text())
    for m, r in expected.items():
        assert {k: r[k] for k in ("inputs", "written", "quarantined", "deduplicated")} == stats[
            "per_modality"
        ][m]
    assert acc["stats_json_agrees"] is True


def test_quarantine_and_dedup_match_parquet(demo, card):
    q = card["quarantine"]
    reasons = _sql(
        demo,
        "SELECT reason, count(*), count(DISTINCT source_id), list(DISTINCT stage ORDER BY stage), "
        "list(DISTINCT source_id ORDER BY source_id)[1:3], min(message) FROM quarantine GROUP BY reason",
    )
    assert set(q["by_reason"]) == {r[0] for r in reasons}
    for reason, n, units, stages, examples, message in reasons:
        got = q["by_reason"][reason]
        assert (got["records"], got["units"], got["stages"], got["examples"], got["example_message"]) == (
            n,
            units,
            stages,
            examples,
            message,
        )
        by_mod = _sql(demo, f"SELECT modality, count(*) FROM quarantine WHERE reason = '{reason}' GROUP BY 1")
        assert got["by_modality"] == _by_count(by_mod)
    assert list(q["by_reason"]) == [r for r, *_ in sorted(reasons, key=lambda r: (-r[1], r[0]))]
    assert q["by_source"] == _by_count(_sql(demo, "SELECT source_name, count(*) FROM quarantine GROUP BY 1"))
    # the demo's deliberately broken inputs land here with their specific reasons
    assert {"empty_file", "unsupported_format"} <= set(q["by_reason"])

    d = card["dedup"]
    if not (demo / "dedup.parquet").exists():
        assert d == {"present": False, "note": NO_DEDUP_NOTE}
        return
    [(n, clusters, kept, not_kept)] = _sql(
        demo,
        "SELECT count(*), count(DISTINCT cluster_id), count(*) FILTER (kept), count(*) FILTER (NOT kept) FROM dedup",
    )
    assert (d["records"], d["clusters"], d["kept"], d["not_kept"]) == (n, clusters, kept, not_kept)
    assert d["verdicts"] == _by_count(_sql(demo, "SELECT verdict, count(*) FROM dedup GROUP BY 1"))
    # the demo has PTB-XL template reports ("sinusrhythmus normales ekg") across patients: flagged, kept
    assert d["verdicts"].get("template", 0) >= 2 and d["flagged_kept"] == d["verdicts"]["template"]


def test_distributions_match_shards(demo, card):
    """Recompute the distributions with webdataset from the shards themselves."""
    tars = sorted(str(p) for p in (demo / "shards").rglob("*.tar"))
    items: dict[str, list[dict]] = defaultdict(list)
    lengths, langs, entities = [], Counter(), defaultdict(Counter)
    for sample in wds.WebDataset(tars, shardshuffle=False, empty_check=False):
        meta = json.loads(sample["meta.json"])
        for it in meta["items"]:
            items[it["modality"]].append(it)
            if it["modality"] == "report":
                text = sample[f"{it['member_prefix']}.txt"].decode("utf-8")
                lengths.append(len(text))
                langs[it["language"] or "(unknown)"] += 1
                for f in json.loads(sample[f"{it['member_prefix']}.json"])["findings"]:
                    entities[f["label"]][f["assertion"]] += 1
    ds = card["distributions"]
    assert card["scanned_samples"] == card["totals"]["samples"]
    assert {m: ds[m]["items"] for m in ds} == {m: len(items[m]) for m in ("image", "volume", "ecg", "report")}
    rows = [it["rows"] for it in items["image"]]
    assert ds["image"]["rows"] == {
        "n": len(rows),
        "min": min(rows),
        "median": round(statistics.median(rows), 3),
        "mean": round(statistics.fmean(rows), 3),
        "max": max(rows),
    }
    assert ds["volume"]["shape"] == dict(
        Counter(" x ".join(str(x) for x in v["shape"]) for v in items["volume"])
    )
    assert ds["ecg"]["with_qc_flags"] == sum(1 for e in items["ecg"] if e["qc_flags"])
    durations = [e["meta"]["source_duration_s"] for e in items["ecg"]]
    assert ds["ecg"]["source_duration_s"]["max"] == round(max(durations), 3)
    assert ds["report"]["length_chars"]["max"] == max(lengths) and ds["report"]["length_chars"]["n"] == len(
        lengths
    )
    assert ds["report"]["languages"] == dict(sorted(langs.items(), key=lambda kv: (-kv[1], kv[0])))
    assert {"de", "en"} <= set(langs)  # PTB-XL reports are German and English
    assert ds["report"]["findings"] == sum(sum(c.values()) for c in entities.values())
    for row in ds["report"]["top_entities"]:
        assert {a: row[a] for a in ASSERTIONS} == {a: entities[row["label"]][a] for a in ASSERTIONS}
        assert row["total"] == sum(entities[row["label"]].values())
    assert ds["report"]["findings"] > 0 and ds["report"]["top_entities"]


# ------------------------------------------------------------------------------------------
# the HTML against its twin
# ------------------------------------------------------------------------------------------


class _Cells(HTMLParser):
    """Collects ``data-k`` elements (path, data-v, text) and every ``<td>``'s text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.keyed: list[tuple[list, str | None, str]] = []
        self.tds: list[tuple[bool, str]] = []
        self._open: list[list] = []  # [tag, attrs, text parts]
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.tags: Counter = Counter()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags[tag] += 1
        if "src" in a:
            self.srcs.append(a["src"])
        if "href" in a:
            self.hrefs.append(a["href"])
        if tag == "td" or "data-k" in a:
            self._open.append([tag, a, []])

    def handle_endtag(self, tag):
        if self._open and self._open[-1][0] == tag:
            t, a, parts = self._open.pop()
            text = "".join(parts).strip()
            if "data-k" in a:
                self.keyed.append((json.loads(a["data-k"]), a.get("data-v"), text))
            if t == "td":
                self.tds.append(("data-k" in a or a.get("class") == "k", text))
            if self._open:
                self._open[-1][2].extend(parts)

    def handle_data(self, data):
        if self._open:
            self._open[-1][2].append(data)


def _resolve(card: dict, path: list):
    node = card
    for k in path:
        node = node[k]
    return node


def test_every_number_on_the_page_is_the_twins(page, card):
    cells = _Cells()
    cells.feed(page)
    assert len(cells.keyed) > 150
    for path, exact, text in cells.keyed:
        value = _resolve(card, path)
        if exact is not None:
            assert int(exact) == value, path
        elif isinstance(value, bool):
            assert text == ("yes" if value else "no"), path
        else:
            assert float(text.replace(",", "")) == pytest.approx(value, abs=5e-4), (path, text, value)
    # no bare number in any table cell (other than a label, class "k"): each one is tied to the twin
    bare = [t for keyed, t in cells.tds if not keyed and re.fullmatch(r"-?[\d,]+(\.\d+)?", t)]
    assert not bare
    # the headline numbers are on the page
    paths = {json.dumps(p) for p, _, _ in cells.keyed}
    for p in (["totals", "samples"], ["accounting", "total", "inputs"], ["quarantine", "records"]):
        assert json.dumps(p) in paths


def test_page_is_self_contained_and_phi_free(demo, page, card):
    cells = _Cells()
    cells.feed(page)
    assert cells.srcs and all(s.startswith("data:image/png;base64,") for s in cells.srcs)
    assert all(h.startswith("#") for h in cells.hrefs)
    assert cells.tags["link"] == 0 and cells.tags["iframe"] == 0
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    # no file paths: neither the input folder nor any configured source path
    assert str(REPO) not in page and str(demo) not in page
    for src in load_config(DEMO_CFG).sources:
        assert src.path not in page
    assert "path" not in json.dumps(card["build"]["config"])
    # no patient pseudonyms and no (shifted) acquisition dates
    patients = {p for p in pq.read_table(demo / "manifest.parquet").column("patient").to_pylist() if p}
    assert patients and not any(p in page for p in patients)
    for tar in (demo / "shards").rglob("*.tar"):
        for sample in wds.WebDataset(str(tar), shardshuffle=False, empty_check=False):
            for it in json.loads(sample["meta.json"])["items"]:
                if it.get("acquired_at"):
                    assert it["acquired_at"][:10] not in page


def test_report_excerpt_is_escaped_and_highlighted():
    text = "Pleural effusion <script>alert('x')</script> & no pneumothorax. Heart size normal."
    findings = [
        {"label": "pleural_effusion", "assertion": "present", "evidence": "pleural effusion"},
        {"label": "pneumothorax", "assertion": "negated", "evidence": "pneumothorax", "section": "findings"},
        {"label": "cardiomegaly", "assertion": "negated", "evidence": "not in the text"},
    ]
    out, n = render_excerpt(text, findings, 500)
    assert n == 2
    assert "<script>" not in out and "&lt;script&gt;" in out and "&amp;" in out
    assert '<mark class="as-present" title="pleural_effusion (present)">Pleural effusion</mark>' in out
    assert '<mark class="as-negated" title="pneumothorax (negated, findings)">pneumothorax</mark>' in out
    cut, n_cut = render_excerpt(text, findings, 20)
    assert n_cut == 1 and cut.endswith('<span class="more">…</span>')


def test_template_whitespace_rule_leaves_the_data_alone():
    """The template loader drops line breaks between tags of the template source, never in the data."""
    text = "\n  FINDINGS:\n>  effusion <b>\n\n"
    out, _ = render_excerpt(text, [], 500)
    assert out == "\n  FINDINGS:\n&gt;  effusion &lt;b&gt;\n\n"


# ------------------------------------------------------------------------------------------
# dedup: "no stage" and a real dropped duplicate
# ------------------------------------------------------------------------------------------


def test_card_without_dedup_stage_says_so(demo, tmp_path):
    for name in ("manifest.parquet", "shards.parquet", "quarantine.parquet", "inputs.parquet", "build.json"):
        shutil.copy(demo / name, tmp_path / name)
    stats = json.loads((demo / "stats.json").read_text())
    stats.pop("dedup", None)
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    (tmp_path / "shards").symlink_to(demo / "shards")
    res = write_datacard(tmp_path, quiet=True)
    card = json.loads(res.json_path.read_text())
    assert card["dedup"] == {"present": False, "note": NO_DEDUP_NOTE}
    assert NO_DEDUP_NOTE in res.html_path.read_text()
    assert card["accounting"]["identity_holds"]


def test_real_duplicate_is_counted_and_shown(examples_dir, tmp_path):
    """The same DICOM file under two sources: the dedup stage drops one; the card accounts for it."""
    src = examples_dir / "dicom"
    for sub, files in {"a": ["ct/CT_small.dcm", "mr/MR_small.dcm"], "b": ["ct/CT_small.dcm"]}.items():
        (tmp_path / "in" / sub).mkdir(parents=True)
        for f in files:
            shutil.copy(src / f, tmp_path / "in" / sub / Path(f).name)
    (tmp_path / "cfg.yaml").write_text(
        "deid: {demo: true}\nsources:\n  - {name: site_a, path: a, licence: MIT}\n"
        "  - {name: site_b, path: b, licence: MIT}\nworkers: 1\n"
    )
    out = tmp_path / "out"
    run_build(tmp_path / "in", out, replace(load_config(tmp_path / "cfg.yaml"), strict=True), quiet=True)
    res = write_datacard(out, quiet=True)
    card = json.loads(res.json_path.read_text())
    acc = card["accounting"]
    assert acc["per_modality"]["image"] == {
        "inputs": 3,
        "written": 2,
        "quarantined": 0,
        "deduplicated": 1,
        "unaccounted": 0,
        "holds": True,
    }
    assert acc["deduplicated_from"] == "dedup.parquet" and acc["stats_json_agrees"]
    d = card["dedup"]
    assert d["present"] and d["verdicts"] == {"duplicate": 1, "representative": 1} and d["not_kept"] == 1
    [cluster] = d["largest_clusters"]
    assert len(cluster["kept"]) == 1 and len(cluster["not_kept"]) == 1
    page = res.html_path.read_text()
    assert page.count('data-role="dedup"') == 2 and "identical decoded content" in page
    src = card["sources"]
    assert [v["input_units"] for v in src.values()] == [2, 1]  # site_a, site_b
    assert (
        sum(v["written_units"] for v in src.values()) == 2
        and sum(v["quarantined_units"] for v in src.values()) == 0
    )


# ------------------------------------------------------------------------------------------
# the page in a real browser
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if not path:
        pytest.fail("Debian's chromium is not installed: run `make browser` (mk/browser.mk)")
    return path


def test_demo_card_in_headless_chromium(demo, card, chromium, tmp_path):
    shot = tmp_path / "datacard.png"
    chk = check_page(demo / DATACARD_HTML, screenshot=shot, chromium=chromium)
    assert chk.title == "medcorpus data card"
    assert chk.console_errors == [] and chk.exceptions == []
    assert chk.external_requests == []
    assert chk.broken_images == []
    roles = Counter(i["role"] for i in chk.images)
    assert roles["gallery"] == card["gallery_images"] >= 6
    assert roles["plot"] == len(card["figures"]) >= 3
    gallery = [i for i in chk.images if i["role"] == "gallery"]
    assert all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in gallery)
    # radiograph thumbnails, ECG plots and volume planes are all there
    alts = " ".join(i["alt"] for i in gallery)
    assert "image_0" in alts and "ecg_0" in alts and "volume_0" in alts
    assert any(i["width"] >= 1000 for i in gallery if "ecg_" in i["alt"])  # the 12-lead figure
    with Image.open(shot) as im:
        assert im.width == 1280 and im.height == min(chk.page_height, 16000) > 3000
        arr = np.asarray(im.convert("L"))
    assert arr.std() > 20  # not a blank page


def test_browser_check_catches_a_broken_page(chromium, tmp_path):
    """The checker itself can fail: console errors, exceptions, network requests, undecodable images."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!doctype html><html><head><title>bad</title></head><body>"
        '<img data-role="gallery" alt="broken" src="data:image/png;base64,iVBORw0KGgoAAAAA">'
        '<img data-role="gallery" alt="remote" src="http://127.0.0.1:9/x.png">'
        "<script>console.error('boom'); null.x;</script></body></html>"
    )
    chk = check_page(bad, chromium=chromium)
    assert any("boom" in e for e in chk.console_errors)
    assert chk.exceptions
    assert any(u.startswith("http://127.0.0.1:9/") for u in chk.external_requests)
    assert {i["alt"] for i in chk.broken_images} == {"broken", "remote"}


def test_cli_report_writes_card_and_summary(demo, tmp_path, capsys):
    from pipelines.cli import main

    out = tmp_path / "card.html"
    assert main(["report", str(demo), "--out", str(out), "--quiet"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("medcorpus report: ") and "accounting identity holds" in line
    twin = json.loads(out.with_suffix(".json").read_text())
    assert f"{twin['totals']['samples']} samples" in line
    assert twin == json.loads((demo / DATACARD_JSON).read_text())  # deterministic
    assert out.read_bytes() == (demo / DATACARD_HTML).read_bytes()
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_png_payload_roundtrip_in_card(page):
    """Gallery thumbnails are real PNGs (decodable by Pillow, 8-bit grey)."""
    srcs = re.findall(r'data-role="gallery" alt="image_[^"]*" src="data:image/png;base64,([^"]+)"', page)
    assert srcs
    for b64 in srcs:
        with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
            assert im.format == "PNG" and im.mode in ("L", "RGB") and max(im.size) <= 256


def test_card_of_a_build_with_no_samples(examples_dir, tmp_path):
    """Only broken inputs: the card still renders, every unit is quarantined and accounted for."""
    shutil.copytree(examples_dir / "quarantine_demo", tmp_path / "in" / "broken")
    (tmp_path / "cfg.yaml").write_text(
        "deid: {demo: true}\nsources:\n  - {name: broken, path: broken, licence: generated}\nworkers: 1\n"
    )
    out = tmp_path / "out"
    run_build(tmp_path / "in", out, replace(load_config(tmp_path / "cfg.yaml"), strict=True), quiet=True)
    res = write_datacard(out, quiet=True)
    card = json.loads(res.json_path.read_text())
    n_files = sum(1 for p in (examples_dir / "quarantine_demo").rglob("*") if p.is_file())
    assert card["totals"]["samples"] == 0 and card["gallery"] == [] and card["figures"] == []
    assert card["accounting"]["total"] == {
        "inputs": n_files,
        "written": 0,
        "quarantined": n_files,
        "deduplicated": 0,
        "unaccounted": 0,
        "holds": True,
    }
    assert card["quarantine"]["units"] == n_files
    assert 'data-role="gallery"' not in res.html_path.read_text()


# ------------------------------------------------------------------------------------------
# per-shard card statistics (the "card" section of each shard's stats JSON)
# ------------------------------------------------------------------------------------------


def _shard_samples(tar: Path) -> list[tuple[str, dict[str, bytes]]]:
    """One shard's samples as the shard writer hands them over: (key, {member: bytes}), in order."""
    return [
        (s["__key__"], {k: v for k, v in s.items() if not k.startswith("__")})
        for s in wds.WebDataset(str(tar), shardshuffle=False, empty_check=False)
    ]


def _copy_build(demo: Path, dst: Path, card) -> list[str]:
    """The demo build under ``dst`` (tars symlinked); each shard stats JSON's ``card`` section
    becomes ``card(tar)`` (``None``: removed, as written by an older version). Returns the shards."""
    for p in demo.iterdir():
        if p.is_file() and p.suffix in (".parquet", ".json") and p.name != DATACARD_JSON:
            shutil.copy(p, dst / p.name)
    shards = [r["shard"] for r in pq.read_table(demo / "shards.parquet").to_pylist()]
    for name in shards:
        (dst / "shards" / name).parent.mkdir(parents=True, exist_ok=True)
        (dst / "shards" / name).symlink_to(demo / "shards" / name)
        stats = json.loads((demo / "shards" / name).with_suffix(".json").read_text())
        stats.pop(CARD_STATS_KEY, None)
        section = card(demo / "shards" / name)
        if section is not None:
            stats[CARD_STATS_KEY] = section
        # as the shard writer writes it
        (dst / "shards" / name).with_suffix(".json").write_text(json.dumps(stats, sort_keys=True, indent=1))
    return shards


def _card_of(build: Path, cfg: DatacardConfig | None = None) -> tuple[dict, str]:
    card, page = build_card(build, cfg or DatacardConfig())
    return json.loads(json.dumps(card, ensure_ascii=False)), page


class _CountOpens:
    """``tarfile.open`` that records the shard (``split/name.tar``) of each call."""

    def __init__(self, monkeypatch) -> None:
        self.opened: list[str] = []
        self._open = tarfile.open
        monkeypatch.setattr(tarfile, "open", self)

    def __call__(self, name, *args, **kwargs):
        self.opened.append("/".join(Path(name).parts[-2:]))
        return self._open(name, *args, **kwargs)


def test_card_statistics_merge_to_the_fallback_card(demo, card, page, tmp_path, monkeypatch):
    """shard_card_stats on the real samples of each tar, stored as the writer stores them: the
    merged card is the one computed from the tars (fallback), number for number, byte for byte."""
    sizes: dict[str, int] = {}

    def section(tar: Path) -> dict:
        samples = _shard_samples(tar)
        stats = shard_card_stats(samples)
        blob = json.dumps(stats, separators=(",", ":"))
        sizes[tar.name] = len(blob.encode())
        assert stats["version"] == CARD_STATS_VERSION and stats["keep_chars"] == KEEP_CHARS == 700
        assert stats["n_samples"] == len(samples)
        # small and payload-free: no member bytes, no base64, no meta headers
        assert "PNG" not in blob and "NUMPY" not in blob and '"dicom"' not in blob
        return json.loads(blob)

    for name in ("with", "without", "short"):
        (tmp_path / name).mkdir()
    shards = _copy_build(demo, tmp_path / "with", section)
    assert sum(sizes.values()) / card["totals"]["samples"] < 1024, sizes  # JSON bytes per sample
    _copy_build(demo, tmp_path / "without", lambda tar: None)
    # heads shorter than the excerpt/preview: the card reads those texts from the tars instead
    _copy_build(demo, tmp_path / "short", lambda tar: shard_card_stats(_shard_samples(tar), keep_chars=10))

    count = _CountOpens(monkeypatch)
    fallback, fallback_page = _card_of(tmp_path / "without")
    assert set(shards) <= set(count.opened)  # every tar read: the old path
    assert fallback == card and fallback_page == page
    assert _card_of(tmp_path / "with") == (fallback, fallback_page)
    assert _card_of(tmp_path / "short") == (fallback, fallback_page)


def test_card_reads_only_the_gallery_members(demo, card, tmp_path, monkeypatch):
    """With card statistics in every shard JSON, a tar is opened only for the gallery's samples
    (and kept images of the dedup clusters shown): once per shard, nothing else."""
    shards = _copy_build(demo, tmp_path, lambda tar: shard_card_stats(_shard_samples(tar)))
    rows = pq.read_table(demo / "manifest.parquet", columns=["key", "shard", "record_ids"]).to_pylist()
    shard_of = {r["key"]: r["shard"] for r in rows}
    shard_of_record = {rid: r["shard"] for r in rows for rid in r["record_ids"]}
    clusters = card["dedup"].get("largest_clusters", [])
    allowed = {shard_of[g["key"]] for g in card["gallery"]} | {
        shard_of_record[rid] for c in clusters for rid in c["kept"]
    }
    count = _CountOpens(monkeypatch)
    assert _card_of(tmp_path)[0] == card
    assert {shard_of[g["key"]] for g in card["gallery"]} <= set(count.opened) <= allowed
    assert len(count.opened) == len(set(count.opened))  # each shard opened once

    # one image in the gallery, no other pick: exactly its shard is opened, once
    count.opened.clear()
    one = DatacardConfig(
        gallery_images=1, gallery_ecgs=0, gallery_volumes=0, gallery_reports=0, dedup_clusters=0
    )
    small, page = _card_of(tmp_path, one)
    [pick] = small["gallery"]
    assert count.opened == [shard_of[pick["key"]]] and len(shards) > 1
    assert small["gallery_images"] == 1 and page.count('data-role="gallery"') == 1
    assert small["distributions"] == card["distributions"] and small["deid"] == card["deid"]


def test_counts_in_passes_over_key_ranges_give_the_same_card(demo, card, page, monkeypatch):
    """Above PASS_ROWS rows, distinct counts and id lookups run in passes over ranges of the key
    values (bounded hash sets): with a tiny PASS_ROWS every count and the page are unchanged."""
    from pipelines.datacard import common

    assert len(common.key_ranges(demo / "inputs.parquet", "source_id")) == 1
    monkeypatch.setattr(common, "PASS_ROWS", 7)
    ranges = common.key_ranges(demo / "inputs.parquet", "source_id")
    assert len(ranges) > 3 and ranges[0][0] is None and ranges[-1][1] is None
    assert all(lo < hi for lo, hi in ranges[1:-1])
    assert _card_of(demo) == (card, page)


def test_shard_json_without_card_section_still_gets_a_card(demo, card, page, tmp_path, monkeypatch):
    """Corpora built before the card statistics existed: no section, another version, or no stats
    JSON at all; and a corpus with sections in some shards only. Each gets the same card."""
    variants = {
        "none": lambda tar: None,
        "old-version": lambda tar: {"version": CARD_STATS_VERSION + 1, "samples": {}},
        "some": lambda tar: shard_card_stats(_shard_samples(tar)) if tar.name.startswith("train") else None,
    }
    for name, section in variants.items():
        (tmp_path / name).mkdir()
        _copy_build(demo, tmp_path / name, section)
        assert _card_of(tmp_path / name) == (card, page), name
    (tmp_path / "no-json").mkdir()
    shards = _copy_build(demo, tmp_path / "no-json", lambda tar: None)
    for s in shards:
        (tmp_path / "no-json" / "shards" / s).with_suffix(".json").unlink()
    res = write_datacard(tmp_path / "no-json", quiet=True)
    assert json.loads(res.json_path.read_text()) == card and res.html_path.read_text(encoding="utf-8") == page


def test_card_statistics_of_a_sample_list():
    """Only meta.json and report members count; payloads are never looked at; merging is exact."""
    meta = {
        "split": "train",
        "modalities": ["image", "report"],
        "conventions": {"dates": "shifted"},
        "items": [
            {"modality": "image", "member_prefix": "image_0", "record_id": "r1", "rows": 4, "columns": 6},
            {"modality": "report", "member_prefix": "report_0", "record_id": "r2", "language": "en"},
        ],
    }
    findings = {"findings": [{"label": "effusion", "assertion": "negated", "evidence": "no effusion"}]}
    members = {
        "meta.json": json.dumps(meta).encode(),
        "image_0.png": b"\x89PNG not a real image",
        "report_0.txt": b"No effusion. Heart normal.",
        "report_0.json": json.dumps(findings).encode(),
    }
    stats = shard_card_stats(
        [("k1", members), ("k2", {"report_0.txt": b"no meta: not a sample"})], keep_chars=5
    )
    assert stats["n_samples"] == 1
    assert stats["samples"] == {
        "k1": {
            "split": "train",
            "modalities": ["image", "report"],
            "prefixes": ["image_0", "report_0"],
            "reports": {"report_0": [26, 4, 1, "No eff"]},
        }
    }
    assert stats["gallery"] == {
        "ecg": [],
        "volume": [],
        "image": ["k1"],
        "report": ["k1"],
        "report_findings": ["k1"],
    }
    assert stats["records"] == {
        "record_id": ["r1", "r2"],
        "key": ["k1", "k1"],
        "prefix": ["image_0", "report_0"],
        "report": [None, [26, 4, 1, "No eff"]],
    }
    c = stats["counts"]
    assert c["items"] == {"image": 1, "report": 1} and c["conventions"] == {"dates": {"shifted": 1}}
    assert (c["image"]["rows"], c["image"]["columns"]) == ([4], [6])
    assert (c["report"]["chars"], c["report"]["words"]) == ([26], [4])
    assert c["report"]["entities"] == {"effusion": {"negated": 1}} and c["report"]["languages"] == {"en": 1}
    assert json.loads(json.dumps(stats)) == stats


# ------------------------------------------------------------------------------------------
# the merged statistics are bounded: nothing per sample
# ------------------------------------------------------------------------------------------


def _synthetic_sample(i: int) -> tuple[str, dict[str, bytes]]:
    """Sample ``i`` of a synthetic corpus: mixes of image/ECG/report items over three splits."""
    key = f"{(i * 2654435761) % 2**32:08x}{i:06d}"  # keyed-hash-like: key order is not i order
    mods = [m for j, m in enumerate(("image", "ecg", "report")) if (i >> j) & 1 or j == i % 3]
    items, members = [], {}
    for m in mods:
        it = {"modality": m, "member_prefix": f"{m}_0", "record_id": f"r{i}-{m}"}
        if m == "image":
            it.update(rows=100 + i % 7, columns=200 + i % 5)
        elif m == "ecg":
            it["meta"] = {"source_duration_s": 10.0 + i % 3}
        else:
            text = f"report {i}: " + "no acute findings. " * (1 + i % 4)
            members["report_0.txt"] = text.encode()
            found = (
                [{"label": "effusion", "assertion": "negated", "evidence": "no acute"}] if i % 5 == 0 else []
            )
            members["report_0.json"] = json.dumps({"findings": found}).encode()
        items.append(it)
    meta = {"split": ("train", "val", "test")[i % 3], "modalities": mods, "items": items}
    return key, {"meta.json": json.dumps(meta).encode(), **members}


def _scan_of(samples: list, n_shards: int, records: frozenset[str] = frozenset()):
    from pipelines.datacard.shard_stats import Scan

    scan = Scan(wanted_records=records)
    size = -(-len(samples) // n_shards)
    for j in range(n_shards):
        part = json.loads(json.dumps(shard_card_stats(samples[j * size : (j + 1) * size])))
        scan.add(f"train/train-{j:06d}.tar", part)
    return scan.finish()


def _full_gallery(samples: list, cfg: DatacardConfig) -> list[str]:
    """The gallery picks over every sample (the selection before candidate lists existed)."""
    from pipelines.datacard.gallery import _pick

    info, has = {}, defaultdict(list)
    for key, members in samples:
        meta = json.loads(members["meta.json"])
        prefixes = [it["member_prefix"] for it in meta["items"]]
        info[key] = {"split": meta["split"], "modalities": meta["modalities"]}
        for m in ("ecg", "volume", "image", "report"):
            if any(p.startswith(m + "_") for p in prefixes):
                has[m].append(key)
        if "report_0.json" in members and json.loads(members["report_0.json"])["findings"]:
            has["findings"].append(key)
    chosen: list[str] = []
    for m, n in (("ecg", cfg.gallery_ecgs), ("volume", cfg.gallery_volumes), ("image", cfg.gallery_images)):
        chosen += _pick(has[m], info, n, chosen)
    already = sum(1 for k in chosen if k in set(has["report"]))
    return chosen + _pick(
        has["findings"] or has["report"], info, max(0, cfg.gallery_reports - already), chosen
    )


def test_merged_statistics_do_not_grow_with_the_samples():
    """Many samples over many shards: the merged Scan holds counters, one number per item in
    numpy arrays, at most GALLERY_CANDIDATES candidates per list and split and only the wanted
    records; the gallery is the one a scan of every sample picks, whatever the shard count."""
    from pipelines.datacard.collect import distributions
    from pipelines.datacard.gallery import select_gallery
    from pipelines.datacard.shard_stats import GALLERY_CANDIDATES, GALLERY_LISTS

    samples = [_synthetic_sample(i) for i in range(3000)]
    wanted = frozenset({"r7-image", "r5-report", "r2999-report", "no-such-record"})
    cfg = DatacardConfig()
    scans = {n: _scan_of(samples, n, wanted) for n in (1, 7, 40)}
    bound = len(GALLERY_LISTS) * 3 * GALLERY_CANDIDATES  # lists x splits x candidates
    for scan in scans.values():
        assert scan.n_samples == len(samples)
        assert len(scan.samples) <= bound < len(samples) / 5
        assert all(len(v) <= 3 * GALLERY_CANDIDATES for v in scan.gallery.values())
        assert set(scan.record_index) == wanted - {"no-such-record"}
        assert len(scan.previews) == 2
        n_reports = sum(1 for _, m in samples if "report_0.txt" in m)
        assert isinstance(scan.counts["report"]["chars"], np.ndarray)
        assert scan.counts["report"]["chars"].shape == (n_reports,)
        assert select_gallery(scan, cfg) == _full_gallery(samples, cfg)
    one = scans[1]
    for scan in scans.values():
        assert distributions(scan, cfg)[0] == distributions(one, cfg)[0]
        assert scan.gallery == one.gallery and scan.previews == one.previews
        assert {k: v[:2] for k, v in scan.record_index.items()} == {
            k: v[:2] for k, v in one.record_index.items()
        }
    # 10x the samples: the candidates, the index and the counters stay the same size
    big = _scan_of([_synthetic_sample(i) for i in range(30000)], 20, wanted)
    assert len(big.samples) <= bound and len(big.record_index) == 3
    assert big.counts["image"]["rows"].nbytes == 8 * big.counts["items"]["image"]
