#!/usr/bin/env python3
"""Greedy random local search over the ensemble's parameters, scored with NAB.

    scripts/nab_search.py [--start CONFIG.json] [--iters N] [--seed S] [--objective sum|margin]
                          [--data NAB_DATA] [--folds DIR,DIR] [--log FILE] [--min-gain G]

How the defaults in `EnsembleConfig::default()` were tuned (docs/research/nab.md, "The re-tune").
The search starts from the built-in defaults (`vigil detect --model ensemble
--print-config`) or from --start, a *full* ensemble config such as a LOG.best.json (a
partial sub-object would reset that object's other fields to the stand-alone defaults,
not the ensemble's). Each iteration picks
one or two parameters, moves each by a random factor (x0.75 .. x1.25, integers rounded),
runs `scripts/nab.sh --model-config` with the candidate and keeps it when the objective
gains at least --min-gain:
  sum     standard + low FP + low FN (vigil's own scores);
  margin  the smallest lead over the best published detector on any profile (the issue's
          goal), the sum breaking ties. Needs the published rows, so all 44 files.
--data points at another NAB data dir (e.g. half the files, for a hold-out check).
--folds makes the search conservative: each fold (a NAB data dir holding part of the
files) is scored on its own, and a step that lowers any fold is refused. The
best config so far is rewritten to LOG.best.json after every gain. Deterministic for a
seed, apart from NAB ties. Needs VIGIL_BIN or builds vigil once (release).
"""
import argparse
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")

# (path, kind, low, high): every numeric knob the search may move, with the range it may
# move in. Integers are point counts; shares, weights and levels are floats.
KNOBS = [
    ("robust.window", int, 100, 5000), ("robust.spread_share", float, 0, 1),
    ("robust.resolution_share", float, 0.1, 10), ("robust.z_half", float, 0.5, 100),
    ("seasonal.min_acf", float, 0.05, 0.95), ("seasonal.spread_share", float, 0, 1),
    ("seasonal.resolution_share", float, 0.1, 10), ("seasonal.z_half", float, 0.5, 100),
    ("seasonal.residual_window", int, 30, 4096),
    ("spike.window", int, 30, 5000), ("spike.spread_share", float, 0, 1),
    ("spike.resolution_share", float, 0.1, 10), ("spike.z_half", float, 0.5, 100),
    ("context.rest_threshold", float, 0.3, 0.99), ("context.rest_period", int, 10, 1000),
    ("smooth.window", int, 100, 5000), ("smooth.resolution_share", float, 0.1, 10),
    ("smooth.z_half", float, 0.5, 100), ("smooth_points", int, 2, 500),
    ("weights.robust", float, 0, 1), ("weights.seasonal", float, 0, 1),
    ("weights.spike", float, 0, 1), ("weights.smooth", float, 0, 1),
    ("weights.context", float, 0, 1), ("season_gate", float, 0.05, 0.95),
    ("memory", float, 50, 50000), ("alarm_level", float, 0.05, 0.95),
    ("refractory", int, 0, 5000), ("suppressed_factor", float, 0, 1),
    ("combined_alarm_level", float, 0.05, 0.95), ("combined_refractory", int, 0, 5000),
]
FACTORS = (0.75, 0.8, 0.9, 0.95, 1.05, 1.1, 1.2, 1.25)


def get(cfg, path):
    for key in path.split("."):
        cfg = cfg[key]
    return cfg


def put(cfg, path, value):
    *parents, last = path.split(".")
    for key in parents:
        cfg = cfg[key]
    cfg[last] = value


def quantise(kind, value):
    """Integers are point counts; floats keep 4 decimals (the logs stay readable)."""
    return int(round(value)) if kind is int else round(value, 4)


def vigil_bin():
    if os.environ.get("VIGIL_BIN"):
        return os.environ["VIGIL_BIN"]
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "vigil"], cwd=REPO, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    return os.path.join(target, "release", "vigil")


class Invalid(Exception):
    """vigil refused the configuration (e.g. min_points above a window that shrank)."""


def table(text):
    """{detector: (standard, low FP, low FN)} from the scorer's printout."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^(\S+)(?: \*)?\s+(-?[\d.]+)\s+(-?[\d.]+)\s+(-?[\d.]+)\s*$", line)
        if m:
            rows[m.group(1)] = tuple(float(m.group(i)) for i in (2, 3, 4))
    return rows


def score(cfg, data, binary, folds, keep):
    """vigil's three scores, the best published detector's per profile, and the sum of
    vigil's three on each fold (a subset of the data, normalised on its own)."""
    env = dict(os.environ, VIGIL_BIN=binary)
    if data:
        env["NAB_DATA"] = data
    shutil.rmtree(keep, ignore_errors=True)
    out = subprocess.run([os.path.join(REPO, "scripts", "nab.sh"), "--model-config", json.dumps(cfg),
                          "--keep", keep], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        refusal = re.search(r"error: ((?:--model-config: )?invalid parameter .*)", out.stderr)
        if refusal:
            raise Invalid(refusal.group(1))
        sys.exit(f"nab.sh failed:\n{out.stderr}")
    rows = table(out.stdout)
    ours = rows.pop("vigil")
    best = tuple(max((r[i] for d, r in rows.items() if d != "null"), default=float("nan")) for i in range(3))
    scorer = os.path.join(os.environ.get("VIGIL_SHARED", os.path.join(REPO, "..", "shared")), "nab", "score.sh")
    per_fold = []
    for fold in folds:
        out = subprocess.run(["bash", scorer, keep, "--data", fold], capture_output=True, text=True, check=True)
        per_fold.append(sum(table(out.stdout)["vigil"]))
    return ours, best, per_fold


def objective(kind, ours, best):
    total = sum(ours)
    if kind == "sum":
        return (total,)
    return (min(o - b for o, b in zip(ours, best)), total)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", help="full ensemble config JSON (default: the built-in defaults)")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--objective", choices=("sum", "margin"), default="sum")
    ap.add_argument("--data", help="NAB data dir (default: nab.sh's)")
    ap.add_argument("--log", default="nab_search.log")
    ap.add_argument("--min-gain", type=float, default=0.05)
    ap.add_argument("--folds", help="comma-separated NAB data dirs, subsets of --data: a step is "
                    "kept only if no fold's score (sum of profiles) drops")
    a = ap.parse_args()
    folds = a.folds.split(",") if a.folds else []
    keep = tempfile.mkdtemp(prefix="nab_search.")

    rng = random.Random(a.seed)
    binary = vigil_bin()
    if a.start:
        with open(a.start) as f:
            best_cfg = json.load(f)
    else:
        printed = subprocess.run([binary, "detect", "--model", "ensemble", "--print-config"],
                                 capture_output=True, text=True, check=True).stdout
        best_cfg = json.loads(printed)
    ours, published, best_folds = score(best_cfg, a.data, binary, folds, keep)
    best = objective(a.objective, ours, published)
    log = open(a.log, "a")

    def say(text):
        print(text, flush=True)
        log.write(text + "\n")
        log.flush()

    say(f"start {ours} published best {published} objective {best} folds {best_folds}")
    for it in range(a.iters):
        cfg = json.loads(json.dumps(best_cfg))
        moves = []
        for path, kind, low, high in rng.sample(KNOBS, rng.choice((1, 1, 2))):
            old = get(cfg, path)
            new = quantise(kind, min(high, max(low, old * rng.choice(FACTORS))))
            if new == old and kind is int:
                new = min(high, max(low, old + rng.choice((-1, 1))))
            if new == old:  # at a bound: step back inside instead
                new = quantise(kind, old * 0.95 if old >= high else old * 1.05)
            put(cfg, path, new)
            moves.append(f"{path} {old} -> {new}")
        try:
            cand, _, cand_folds = score(cfg, a.data, binary, folds, keep)
        except Invalid as e:
            say(f"{it:4} refused ({e}): {'; '.join(moves)}")
            continue
        obj = objective(a.objective, cand, published)
        kept = obj[0] >= best[0] + a.min_gain or (obj[0] == best[0] and len(obj) > 1 and obj[1] >= best[1] + a.min_gain)
        kept = kept and all(c >= b for c, b in zip(cand_folds, best_folds))
        folds_said = f" folds {[round(c, 2) for c in cand_folds]}" if folds else ""
        say(f"{it:4} {'KEEP' if kept else '    '} {cand}{folds_said} {'; '.join(moves)}")
        if kept:
            best, best_cfg, best_folds = obj, cfg, cand_folds
            with open(a.log + ".best.json", "w") as f:
                json.dump(best_cfg, f, indent=1)
    shutil.rmtree(keep, ignore_errors=True)
    say(f"best {best}\n{json.dumps(best_cfg)}")


if __name__ == "__main__":
    main()
