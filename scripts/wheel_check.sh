#!/usr/bin/env bash
# CI step (issue 18): the package installs from its own metadata and builds the demo.
# Builds the wheel, installs it into a clean venv WITHOUT requirements/lock.txt (the ranges of
# pyproject.toml, with torch pinned to the CPU build; pip's cache and the machine's local wheels
# make a rerun quick), plus what the
# README says a metadata install needs on Python 3.11 (medspaCy with --no-deps), then runs the
# installed console script from outside the source tree, so nothing is imported from the checkout:
#   medcorpus build examples --config examples/demo.yaml --out <tmp>; medcorpus validate <tmp>
# Usage: scripts/wheel_check.sh [WORK_DIR]   (default build/wheel-check; PY picks the interpreter)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mkdir -p "${1:-$repo/build/wheel-check}" && cd "${1:-$repo/build/wheel-check}" && pwd)"
py="${PY:-python3}"
start=$(date +%s)
rm -rf "$work/venv" "$work/dist" "$work/out"
"$py" -m venv "$work/venv"
pip=("$work/venv/bin/pip" --disable-pip-version-check -q)
"${pip[@]}" wheel --no-deps -w "$work/dist" "$repo" 2>&1 | grep -v "is ignored: it is neither" || true
wheel=$(ls "$work"/dist/medcorpus-*.whl)
# torch: the CPU build (2.13.0+cpu lies in the machine's local wheels); left to the ranges, pip
# takes the newest CUDA build (~6 GB of nvidia-* wheels) that a CPU machine never uses
"${pip[@]}" install "${wheel}[dedup]" "torch==${TORCH_VERSION:-2.13.0}" 2>&1 | grep -v "is ignored: it is neither" || true
"${pip[@]}" install --no-deps -r "$repo/requirements/nodeps.txt" 2>&1 | grep -v "is ignored: it is neither" || true
installed=$(date +%s)
cd "$work"  # not the checkout: pipelines/, workers/ and schemas/ must come from the wheel
"$work/venv/bin/python" - <<'PY'
import pipelines, pathlib, sys
where = pathlib.Path(pipelines.__file__).resolve()
sys.exit(0 if "site-packages" in where.parts else f"pipelines imported from {where}, not from the wheel")
PY
export LOGURU_LEVEL=WARNING HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
"$work/venv/bin/medcorpus" build "$repo/examples" --config "$repo/examples/demo.yaml" --out "$work/out" --quiet
"$work/venv/bin/medcorpus" validate "$work/out"
test -s "$work/out/datacard.html"
end=$(date +%s)
echo "wheel-check: $(basename "$wheel") installed without the lock file in $((installed - start)) s; demo built and validated in $((end - installed)) s"
