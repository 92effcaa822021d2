#!/usr/bin/env python3
"""Where a NAB result's points go: per file, and the delay / TPR / FPR figures of docs/research/nab.md.

    scripts/nab.sh --keep DIR                      # score, keeping the results
    scripts/nab_breakdown.py DIR [PROFILE] [--files]

At PROFILE's optimised threshold (default: standard), prints the cost of the false
positives and the missed windows in normalised NAB points; the windows detected (TPR),
the false-positive rows among the scored rows outside windows, and the detection time of
each window's first detection against the window's centre (the labelled anomaly); with
--files, one line per file, costliest first. Uses the shared scorer's own code
(the NAB scorer, `nab_score.py`), so the threshold and the counts are NAB's.
"""
import json
import os
import statistics
import sys

repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
shared = os.environ.get("VIGIL_SHARED", os.path.join(repo, "..", "shared"))
sys.path.insert(0, os.path.join(shared, "nab"))
import nab_score as ns  # noqa: E402


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    if not args:
        sys.exit(__doc__)
    results, profile = args[0], (args[1] if len(args) > 1 else "standard")
    if profile not in ns.PROFILES:
        sys.exit(f"unknown profile {profile!r}: one of {', '.join(ns.PROFILE_ORDER)}")
    data = os.environ.get("NAB_DATA", os.path.join(shared, "data", "nab"))
    with open(os.path.join(data, "labels", "combined_windows.json")) as f:
        labels = json.load(f)
    root = os.path.join(data, "data")
    files = [ns.DataFile(f"{c}/{n}", os.path.join(root, c, n), labels[f"{c}/{n}"])
             for c in sorted(os.listdir(root)) if os.path.isdir(os.path.join(root, c))
             for n in sorted(os.listdir(os.path.join(root, c))) if n.endswith(".csv")]
    paths, missing = ns.find_results(results, "vigil", files)
    if paths is None:
        sys.exit(f"no result file {missing}")
    threshold, raw = ns.score_detector(("vigil", paths, files, None, False))[1][profile]
    null = ns.score_detector(("null", None, files, None, False))[1][profile][1]
    cost = ns.PROFILES[profile]
    windows = sum(d.num_windows for d in files)
    point = (windows * cost["tpWeight"] - null) / 100  # one normalised point, in raw units

    rows, delays = [], []
    fp_rows = outside = 0
    for d in files:
        scores = ns.read_scores(paths[d.rel], d, False)
        first, fp_cost, fps = {}, 0.0, 0
        for i, v in enumerate(scores):
            w = d.win[i]
            if w is False:
                continue
            outside += w is None
            if v < threshold:
                continue
            if w is None:
                fps += 1
                fp_cost += d.unweighted[i] * cost["fpWeight"]
            elif w not in first:
                first[w] = i
        ids = set(w for w in d.win if w)
        scored = [(ns.parse_ts(a), ns.parse_ts(b)) for a, b in labels[d.rel]]
        scored = [(a, b) for a, b in scored if f"{d.rel}|{a}" in ids]
        for a, b in scored:
            i = first.get(f"{d.rel}|{a}")
            if i is not None:
                delays.append((d.ts[i] - (a + (b - a) / 2)).total_seconds() / 60)
        missed = len(scored) - sum(1 for a, _ in scored if f"{d.rel}|{a}" in first)
        fp_rows += fps
        rows.append((d.rel, len(scored), missed, fps, -fp_cost, missed * cost["fnWeight"]))

    fp_total = sum(r[4] for r in rows)
    fn_total = sum(r[5] for r in rows)
    detected = len(delays)
    print(f"{profile}: threshold {threshold:.4f}, score {100 * (raw - null) / (windows * cost['tpWeight'] - null):.2f}")
    print(f"false positives cost {fp_total / point:.2f} points, missed windows {fn_total / point:.2f}")
    print(f"windows detected {detected} of {windows} (TPR {100 * detected / windows:.1f}%), "
          f"false-positive rows {fp_rows} of {outside} scored rows outside windows "
          f"({100 * fp_rows / max(outside, 1):.2f}%)")
    if delays:
        print(f"detection time vs the window's centre: median {statistics.median(delays):+.0f} min, "
              f"{sum(1 for t in delays if t <= 0)} at or before it, "
              f"{sum(1 for t in delays if t <= 5)} within 5 min after it")
    if "--files" in argv:
        print(f"{'file':58} windows missed fp_rows  fp_cost  fn_cost (points)")
        for r in sorted(rows, key=lambda r: -(r[4] + r[5])):
            if r[3] or r[2]:
                print(f"{r[0]:58} {r[1]:7} {r[2]:6} {r[3]:7} {r[4] / point:8.2f} {r[5] / point:8.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
