"""Peer de-identifiers for ``bench/bench_text_deid.py``; runs INSIDE the benchmark environment
``.venv-peers`` (``bench/deid_peers_env.sh``), never in the project's environment.

Reads a JSON list of texts on stdin, writes ``{"spans": [[[start, end], ...], ...],
"reports_per_s": float, "note": str}`` on stdout.

- ``presidio``: presidio-analyzer with every default recognizer. Its NER needs a spaCy model
  (``en_core_web_lg``) that is not on the package registry; when none is installed, a blank
  English spaCy pipeline is used, i.e. Presidio's pattern and context recognizers only.
- ``philter``: philter-lite with its shipped default configuration (``philter_delta.toml``);
  everything outside its include map is redacted, as its own asterisk writer does. It needs
  NLTK's POS tagger data; without it the peer cannot run.

Usage::

    .venv-peers/bin/python bench/deid_peers.py presidio < texts.json > spans.json
"""

from __future__ import annotations

import json
import sys
import tempfile
import time


def _presidio():
    import spacy
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    note = "presidio-analyzer, spaCy en_core_web_lg NER"
    try:
        spacy.load("en_core_web_lg")
        model = "en_core_web_lg"
    except OSError:
        model = tempfile.mkdtemp(prefix="blank-en-")
        spacy.blank("en").to_disk(model)
        note = "presidio-analyzer, pattern/context recognizers only (no spaCy NER model installable offline)"
    conf = {"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}]}
    engine = AnalyzerEngine(nlp_engine=NlpEngineProvider(nlp_configuration=conf).create_engine())

    def detect(text: str) -> list[tuple[int, int]]:
        return [(r.start, r.end) for r in engine.analyze(text=text, language="en")]

    return detect, note


def _philter():
    import importlib.resources as res

    from philter_lite import detect_phi, load_filters
    from philter_lite.coordinate_map import PUNCTUATION_MATCHER

    cfg = res.files("philter_lite") / "configs" / "philter_delta.toml"
    filters = load_filters(str(cfg))

    def detect(text: str) -> list[tuple[int, int]]:
        include_map, _exclude, _tracker = detect_phi(text, filters)
        spans: list[tuple[int, int]] = []
        i = 0
        while i < len(text):
            if include_map.does_exist(i):
                _s, stop = include_map.get_coords(i)
                i = stop
                continue
            if PUNCTUATION_MATCHER.match(text[i]) or text[i].isspace():
                i += 1
                continue
            j = i
            while j < len(text) and not include_map.does_exist(j) and not text[j].isspace():
                j += 1
            spans.append((i, j))
            i = j
        return spans

    detect("warm up")  # fails early without the NLTK tagger data
    return detect, "philter-lite 0.6, philter_delta.toml"


def main() -> int:
    peer = sys.argv[1]
    texts = json.load(sys.stdin)
    detect, note = {"presidio": _presidio, "philter": _philter}[peer]()
    t0 = time.process_time()
    spans = [detect(t) for t in texts]
    rate = len(texts) / max(time.process_time() - t0, 1e-9)
    json.dump({"spans": spans, "reports_per_s": rate, "note": note}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
