#!/usr/bin/env bash
# Score `vigil detect` on the shared NAB data with NAB's scoring rule.
#   scripts/nab.sh [--model-config JSON] [--keep DIR] [--published DIR] [CATEGORY...]
# Builds vigil (release), runs `vigil detect --output nab` over every data file into NAB's
# results layout (RESULTS/vigil/<category>/vigil_<file>.csv) in a temp dir, and runs the
# shared scorer, which prints vigil's standard / reward-low-FP / reward-low-FN scores next
# to the published detectors. One configuration for all files: no per-file tuning.
# The NAB data stays in ../shared (a sibling of the repository); nothing is copied in.
# The whole benchmark (58 files, 14 of them outside the shared subset): point NAB_DATA at
# a NAB checkout (github.com/numenta/NAB) and pass --published CHECKOUT/results, so the
# published detectors are scored live on the same files (docs/research/nab.md, "The whole benchmark").
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
shared=${VIGIL_SHARED:-$repo/../shared}
data=${NAB_DATA:-$shared/data/nab}
scorer=$shared/nab/score.sh
[ -d "$data/data" ] || { echo "nab.sh: no NAB data at $data/data (set NAB_DATA or VIGIL_SHARED)" >&2; exit 2; }
[ -x "$scorer" ] || [ -f "$scorer" ] || { echo "nab.sh: no scorer at $scorer" >&2; exit 2; }

# Passed to each `vigil detect` through the environment, so any JSON (newlines, quotes)
# arrives intact.
export NAB_MODEL_FLAG=--model NAB_MODEL_VALUE=${VIGIL_MODEL:-ensemble}
keep=""
published=()
cats=()
while [ $# -gt 0 ]; do
  case "$1" in
    --model-config) NAB_MODEL_FLAG=--model-config NAB_MODEL_VALUE=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    --published) published=(--published "$2"); shift 2 ;;
    *) cats+=("$1"); shift ;;
  esac
done

if [ -z "${VIGIL_BIN:-}" ]; then
  (cd "$repo" && cargo build --release --quiet --bin vigil)
  VIGIL_BIN=${CARGO_TARGET_DIR:-$repo/target}/release/vigil
fi

out=${keep:-$(mktemp -d)}
[ -n "$keep" ] || trap 'rm -rf "$out"' EXIT
categories=("${cats[@]}")
[ ${#categories[@]} -gt 0 ] || categories=($(cd "$data/data" && ls -d */ | tr -d /))
jobs=$(nproc 2>/dev/null || echo 2)
for cat in "${categories[@]}"; do
  mkdir -p "$out/vigil/$cat"
  for f in "$data/data/$cat"/*.csv; do
    name=$(basename "$f")
    echo "$f $out/vigil/$cat/vigil_$name"
  done
done | xargs -P "$jobs" -n 2 sh -c '"$0" detect --input "$1" --output nab "$NAB_MODEL_FLAG" "$NAB_MODEL_VALUE" > "$2"' "$VIGIL_BIN"

# Every category scored is named: the scorer's default is the five shared ones.
bash "$scorer" "$out" "${categories[@]}" --data "$data" "${published[@]}"
