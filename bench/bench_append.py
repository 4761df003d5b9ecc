"""Appends with cross-set dedup (issue 19): cost of an append, index size, re-exports caught.

Figures:

1. **append vs alone**: the time to build a partition of 1% of the corpus into a corpus root
   of ``--corpus`` samples (deduplicated against the whole index), over the time to build the
   same partition alone (a plain ``medcorpus build``). Goal: <= 1.2x.
2. **index bytes per sample**: ``index.parquet`` of a real published set, bytes per row (and
   the vectors' share).
3. **re-exports caught**: the partition re-exports 10% of the previous day's studies (the
   same ECG files and report rows); caught = re-exported studies absent from the new set's
   manifest (removed as duplicates) / re-exported studies. Goal: all of them.

Inputs: ``bench/scale_inputs.py`` (PTB-XL ECGs and reports, chest X-rays from the shared data,
perturbed). Day 1 is a real build published into a corpus root; day 2 is a new partition plus
the re-exported 10%. The corpus of ``--corpus`` samples: day 1's real index segment plus
synthetic segments of ``--partition`` rows each, made from day 1's real rows with new ids and
content hashes and vectors moved to cosine ~0.8 of the original (real dimensions, real band
codes; not near-duplicates of anything) — a 10^5-sample corpus cannot be built on this machine
in a benchmark's time, and the append reads only the index, never the earlier sets' shards.

Usage::

    MEDCORPUS_SECRET=... python bench/bench_append.py WORKDIR [--quick] [--corpus 100000]
        [--partition 1000] [--rounds 2] [--json OUT.json]

``--quick``: corpus 10^4, partition 100, one round (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from bench import scale_inputs as si  # noqa: E402


def _cfg(max_samples: int):
    from pipelines.config import config_from_dict

    return config_from_dict(si.build_config(max_samples=max_samples) | {"workers": 2})


def _build(src: Path, out: Path, prior=None, max_samples: int = 1000) -> float:
    from pipelines.build import run_build

    if out.exists():
        shutil.rmtree(out)
    t = time.perf_counter()
    run_build(src, out, _cfg(max_samples), quiet=True, prior=prior)
    return time.perf_counter() - t


def _reexport(day1: Path, day2: Path, fraction: float, seed: int) -> list[str]:
    """Copy ``fraction`` of day 1's ECG studies (record files and report rows) into day 2."""
    with open(day1 / si.REPORT_TABLE, newline="") as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(rows), max(1, round(fraction * len(rows))), replace=False).tolist())
    chosen = [rows[i] for i in pick]
    with open(day2 / si.REPORT_TABLE, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows2 = list(reader.fieldnames or []), list(reader)
    with open(day2 / si.REPORT_TABLE, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows2 + chosen)
    for r in chosen:
        rel = Path("ecg") / r["filename_hr"]
        for suffix in (".hea", ".dat"):
            src = (day1 / rel).with_suffix(suffix)
            dst = (day2 / rel).with_suffix(suffix)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    return [r["ecg_id"] for r in chosen]


def synthetic_segments(
    real: Path, out_dir: Path, n_rows: int, seg_rows: int, seed: int
) -> list[tuple[str, str]]:
    """Index segments of ``n_rows`` rows in files of ``seg_rows``, made from ``real``'s rows."""
    from pipelines.config import DedupConfig
    from pipelines.corpus_index import INDEX_SCHEMA, index_codes_matrix, write_segment

    t = pq.read_table(real).to_pylist()
    t = [r for r in t if r["vector"] is not None]
    dcfg = DedupConfig()
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    segs = []
    for s, lo in enumerate(range(0, n_rows, seg_rows)):
        rows = []
        for i in range(lo, min(n_rows, lo + seg_rows)):
            rows.append(dict(t[i % len(t)]) | {"_i": i})
        by_mod: dict[str, list[dict]] = {}
        for r in rows:
            by_mod.setdefault(r["modality"], []).append(r)
        out = []
        for mod, rs in by_mod.items():
            v = np.stack([np.frombuffer(r["vector"], dtype=np.float16).astype(np.float32) for r in rs])
            noise = rng.standard_normal(v.shape).astype(np.float32)
            noise /= np.linalg.norm(noise, axis=1, keepdims=True)
            v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
            w = 0.8 * v + 0.6 * noise  # cosine ~0.8 with the original: a different content
            w /= np.linalg.norm(w, axis=1, keepdims=True)
            w16 = w.astype(np.float16)
            codes = index_codes_matrix(
                mod, w16.astype(np.float32), getattr(dcfg, f"{mod}_threshold")
            ).tolist()
            for r, vec, c in zip(rs, w16, codes, strict=True):
                h = hashlib.sha256(f"synthetic/{r['_i']}".encode()).hexdigest()
                out.append(
                    {
                        "modality": mod,
                        "ckey": h,
                        "record_id": h[:16],
                        "patient": "p" + h[16:32],
                        "study": "s" + h[32:48],
                        "acquired_at": r["acquired_at"],
                        "key": h[48:],
                        "vector": vec.tobytes(),
                        "bands": c,
                    }
                )
        out.sort(key=lambda r: (r["modality"], r["ckey"]))
        path = out_dir / f"synthetic-{s:05d}.parquet"
        write_segment(path, pa.Table.from_pylist(out, schema=INDEX_SCHEMA))
        segs.append((f"0000-synthetic-{s:05d}", str(path)))
    return segs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--corpus", type=int, default=100_000, help="samples in the corpus index")
    ap.add_argument("--partition", type=int, default=1000, help="ECG studies in the appended partition")
    ap.add_argument("--reexport", type=float, default=0.10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.quick:
        args.corpus, args.partition, args.rounds = 10_000, 100, 1
    if len(os.environ.get("MEDCORPUS_SECRET", "")) < 16:
        os.environ["MEDCORPUS_SECRET"] = "bench-append-" + hashlib.sha256(b"bench").hexdigest()[:16]
    from pipelines.corpus_index import CROSSSET, INDEX, PriorIndex, prior_index
    from pipelines.publish import CorpusRoot, publish_set
    from workers.deid.pseudonym import Pseudonymizer
    from workers.ids import normalise_id

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    day1, day2 = work / "day1-inputs", work / "day2-inputs"
    for d, seed in ((day1, 1), (day2, 2)):
        if d.exists():
            shutil.rmtree(d)
        si.generate(d, args.partition, seed, cxr_per=50, ct_per=10**9)
    reexported = _reexport(day1, day2, args.reexport, seed=3)
    root = work / "corpus"
    if root.exists():
        shutil.rmtree(root)
    corpus = CorpusRoot(root)
    t_day1 = _build(day1, corpus.build_dir("2026-01-01"), prior=prior_index(root))
    publish_set(root, "2026-01-01", max_quarantine_fraction=1.0)
    seg1 = corpus.set_dir("2026-01-01") / INDEX
    real = pq.read_table(seg1)
    index_bytes = seg1.stat().st_size
    vec_bytes = sum(len(v) for v in real["vector"].to_pylist() if v)
    t = time.perf_counter()
    synth = synthetic_segments(
        seg1, work / "synthetic-index", max(0, args.corpus - real.num_rows), max(1, real.num_rows), seed=4
    )
    t_synth = time.perf_counter() - t
    prior = PriorIndex(tuple(synth) + prior_index(root).segments)
    alone, append = [], []
    for r in range(args.rounds):  # alternate: the machine's load drifts
        alone.append(_build(day2, work / "alone"))
        append.append(_build(day2, work / "append", prior=prior))
        print(f"round {r}: alone {alone[-1]:.1f}s, append {append[-1]:.1f}s", flush=True)
    xs = json.loads((work / "append" / CROSSSET).read_text())
    pseudo = Pseudonymizer(os.environ["MEDCORPUS_SECRET"], "env:MEDCORPUS_SECRET")
    studies = {pseudo.study(normalise_id(s)) for s in reexported}
    m1 = set(
        pq.read_table(corpus.set_dir("2026-01-01") / "manifest.parquet", columns=["study"])[
            "study"
        ].to_pylist()
    )
    m2 = set(pq.read_table(work / "append" / "manifest.parquet", columns=["study"])["study"].to_pylist())
    m_alone = set(pq.read_table(work / "alone" / "manifest.parquet", columns=["study"])["study"].to_pylist())
    in_day1 = studies & m1
    m1_keys = pq.read_table(corpus.set_dir("2026-01-01") / "manifest.parquet", columns=["key"])["key"]
    vecs, mods = real["vector"].to_pylist(), real["modality"].to_pylist()
    result = {
        "corpus_index_rows": int(real.num_rows + sum(pq.read_metadata(p).num_rows for _, p in synth)),
        "index_segments": len(prior.segments),
        "partition_ecg_studies": args.partition,
        "day1_build_s": round(t_day1, 2),
        "synthetic_index_s": round(t_synth, 2),
        "alone_s": [round(x, 2) for x in alone],
        "append_s": [round(x, 2) for x in append],
        "append_over_alone": round(min(append) / min(alone), 3),
        "index_bytes": index_bytes,
        "index_bytes_per_record": round(index_bytes / max(1, real.num_rows), 1),
        "index_bytes_per_sample": round(index_bytes / max(1, len(m1_keys)), 1),
        "vector_bytes_by_modality": {
            m: len(next(v for v, mm in zip(vecs, mods, strict=True) if mm == m and v))
            for m in sorted(set(mods))
        },
        "index_vector_share": round(vec_bytes / max(1, index_bytes), 3),
        "index_rows_by_modality": dict(sorted(Counter(real["modality"].to_pylist()).items())),
        "reexported_studies": len(studies),
        "reexported_in_day1": len(in_day1),
        "reexported_written_alone": len(in_day1 & m_alone),
        "reexported_caught": len(in_day1 - m2),
        "reexport_caught_rate": round(len(in_day1 - m2) / max(1, len(in_day1)), 4),
        "against_published": xs["against_published"],
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
