#!/usr/bin/env bash
# Create the benchmark-only environment .venv-peers (gitignored) with the peer de-identifiers that
# bench/bench_text_deid.py --peers compares against. Never a runtime dependency of medcorpus.
#   presidio-analyzer / presidio-anonymizer (MIT), philter-lite (BSD-3-Clause)
# Offline limits: Presidio's spaCy NER model (en_core_web_lg) and philter-lite's NLTK tagger data
# are not on the package registry; the benchmark notes what ran and skips what cannot.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
test -x .venv-peers/bin/python || "$PY" -m venv .venv-peers
.venv-peers/bin/pip install -q "presidio-analyzer==2.2.366" "presidio-anonymizer==2.2.366" "philter-lite==0.6.0"
echo "peers installed in .venv-peers"
