#!/usr/bin/env python3
"""Reads criterion's results (target/criterion/**/new/) and prints one table:
each figure next to its target (TARGETS below), and whether it passes. Rows that a
non-criterion bench wrote to target/bench-extra/*.json ({"rows": [{id, what,
figure, target, result}]}, e.g. ingest_vs_alertmanager) are added after them.

Usage: bench_report.py [CRITERION_DIR] [--markdown]
"""
import json
import os
import platform
import sys

# criterion id -> (what, unit, how to turn the mean time (ns) and throughput elements into the unit, target, "min"/"max")
# "max": the figure must be at most the target; "min": at least.
TARGETS = {
    "executor/1000_steps_wide_10x100": ("executor overhead per step, 1,000-step DAG (10 chains)", "µs/step", lambda ns, n: ns / n / 1e3, 10.0, "max"),
    "executor/1000_steps_chain_1x1000": ("executor overhead per step, 1,000-step chain", "µs/step", lambda ns, n: ns / n / 1e3, 10.0, "max"),
    "journal/durable_transitions_64_writers": ("durable journal transitions (group commit)", "/s", lambda ns, n: n / (ns / 1e9), 20_000, "min"),
    "journal/single_durable_transition": ("one durable transition, alone (fsync)", "µs", lambda ns, n: ns / 1e3, None, None),
    "journal/append_without_flush": ("journal append, not yet durable", "µs", lambda ns, n: ns / 1e3, None, None),
    "validate/1000_step_runbook": ("validate a 1,000-step runbook", "ms", lambda ns, n: ns / 1e6, None, None),
    "policy/decide_escalation": ("Rhai policy decisions (bundled escalation policy)", "/s", lambda ns, n: 1e9 / ns, 100_000, "min"),
    "policy/expression_eval": ("one `${{ }}` expression", "µs", lambda ns, n: ns / 1e3, None, None),
    "plugin/call_noop_export": ("plugin call overhead (no-op export, live instance)", "µs", lambda ns, n: ns / 1e3, 2.0, "max"),
    "plugin/instantiate_from_instance_pre": ("plugin instantiation from InstancePre (fresh store)", "µs", lambda ns, n: ns / 1e3, 30.0, "max"),
    "plugin/full_call_fresh_store": ("plugin call as the engine makes it (store + instantiate + call)", "µs", lambda ns, n: ns / 1e3, None, None),
    "plugin/cold_start_to_first_call/warm_cwasm_cache": ("cold process start to first plugin call, warm .cwasm cache", "ms", lambda ns, n: ns / 1e6, 300.0, "max"),
    "plugin/cold_start_to_first_call/no_cache": ("cold process start to first plugin call, no cache", "ms", lambda ns, n: ns / 1e6, None, None),
    "alerts/ingest_dedup_group_in_process": ("alert ingest + dedup + grouping, in process", "alerts/s", lambda ns, n: n / (ns / 1e9), 200_000, "min"),
    "alerts/http_ingest_8_clients_100_per_post": ("alert ingest over HTTP, acknowledged (durable), 8 local clients", "alerts/s", lambda ns, n: n / (ns / 1e9), 20_000, "min"),
    "classifier/train_6000_examples_25_trees": ("failure classifier training (6,000 examples, 25 trees)", "ms", lambda ns, n: ns / 1e6, None, None),
    "classifier/predict_one_window": ("failure prediction, one window", "µs", lambda ns, n: ns / 1e3, None, None),
    "classifier/predict_batch_1000": ("failure prediction, 1,000 windows", "ms", lambda ns, n: ns / 1e6, None, None),
    "classifier/detector_run_100_hosts_4_new_samples": ("classifier detector run: join + window + predict, per host-sample (100 hosts × 4 samples)", "µs", lambda ns, n: ns / 1e3 / 400, None, None),
}

# Anomaly scoring: wall-clock throughput of one method over a 100k-point series
# (the per-CPU-second figures are printed by the bench itself).
for _name in ["robust", "seasonal", "cusum", "spike", "novelty", "context", "ensemble"]:
    TARGETS[f"score/{_name}"] = (
        f"anomaly scoring, {_name}",
        "points/s",
        lambda ns, n: n / (ns / 1e9),
        1_000_000 if _name == "ensemble" else 5_000_000,
        "min",
    )


def load(root):
    rows = []
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            meta = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        elements = (meta.get("throughput") or {}).get("Elements") or 1
        rows.append((meta["full_id"], est["mean"]["point_estimate"], elements))
    return sorted(rows)


def fmt(v):
    if v >= 100_000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:,.1f}"
    return f"{v:.2f}"


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    root = args[0] if args else os.path.join(os.path.dirname(__file__), "..", "target", "criterion")
    rows = load(root)
    if not rows:
        print(f"no criterion results under {root}; run `make bench` first", file=sys.stderr)
        return 1
    out = ["| benchmark | figure | target | result |", "| --- | --- | --- | --- |"]
    short = 0
    for full_id, ns, n in rows:
        what, unit, conv, target, direction = TARGETS.get(full_id, (full_id, "µs", lambda ns, n: ns / 1e3, None, None))
        v = conv(ns, n)
        if target is None:
            tgt, verdict = "—", "measured"
        else:
            ok = v <= target if direction == "max" else v >= target
            tgt = ("≤ " if direction == "max" else "≥ ") + fmt(target) + " " + unit
            verdict = "pass" if ok else "SHORT"
            short += 0 if ok else 1
        out.append(f"| {what} (`{full_id}`) | {fmt(v)} {unit} | {tgt} | {verdict} |")
    extra = os.path.join(os.path.dirname(os.path.abspath(root)), "bench-extra")
    notes = []
    for name in sorted(os.listdir(extra)) if os.path.isdir(extra) else []:
        if not name.endswith(".json"):
            continue
        with open(os.path.join(extra, name)) as f:
            doc = json.load(f)
        if doc.get("note"):
            notes.append(doc["note"])
        for r in doc.get("rows", []):
            out.append(f"| {r['what']} (`{r['id']}`) | {r['figure']} | {r['target']} | {r['result']} |")
            short += 1 if r["result"] == "SHORT" else 0
    print("\n".join(out))
    for n in notes:
        print()
        print(n)
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
