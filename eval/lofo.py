#!/usr/bin/env python3
"""Leave-one-family-out check of the detector's global knobs.

    lofo.py --out-dir eval/out [--bin target/release/warden] [--config eval/detector.toml]
            [--jobs 2] [--reuse-baseline] [--markdown OUT.md] [--json OUT.json]

For each direction (choose on A-tune, score on B-fresh; choose on B-tune, score on A-fresh):
run `warden backtest` on the training split over a small grid of global knobs only, the
alert band's `min_score` (ALERT_GRID) x `cluster_min_score` (CLUSTER_GRID), each a copy of
the config with the [[detection.actions]] alert entry's min_score replaced and
cluster_min_score set; pick the point with the highest harvest recall (macro over classes)
subject to benign acted upon = 0 and benign alerted <= 0.5 % (ties: the higher alert
threshold, then the higher cluster threshold); backtest the other family's fresh split with
it and report the per-class table there next to the shipped defaults (the unmodified
config) on the same split.

Splits are read from OUT_DIR/<split>/{traffic.jsonl,labels.json} (written by eval/run.sh);
configs and alerts go to OUT_DIR/lofo/. --reuse-baseline takes the shipped-defaults result on
the fresh split from OUT_DIR/<split>/alerts.jsonl (run.sh writes it with the same binary and
config) instead of running it again. Backtests run at most --jobs (<= 2) at a time.

Python 3.11, standard library only. Exit status 0; 1 if a backtest failed; 2 on missing input.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import score as sc  # noqa: E402

ALERT_GRID = [0.40, 0.45, 0.50, 0.55, 0.60, 0.65]
CLUSTER_GRID = [0.45, 0.5, 0.6]
DIRECTIONS = [("A-tune", "B-fresh"), ("B-tune", "A-fresh")]
MAX_JOBS = 2


def log(msg):
    print(f"lofo: {msg}", file=sys.stderr, flush=True)


def feasible(s):
    return (s["benign_acted"] <= sc.BENIGN_ACTED_TARGET and s["benign_alerted_rate"] is not None
            and s["benign_alerted_rate"] <= sc.BENIGN_ALERTED_TARGET)


def pick(points):
    """points: [{"alert", "cluster", "summary"}] (successful runs). Returns (point, reason)."""
    ok = [p for p in points if feasible(p["summary"])]
    key = lambda p: (round(p["summary"]["harvest_recall_macro"] or 0.0, 9), p["alert"], p["cluster"])
    if ok:
        best = max(ok, key=key)
        s = best["summary"]
        same = [p for p in ok if round(p["summary"]["harvest_recall_macro"] or 0, 9)
                == round(s["harvest_recall_macro"] or 0, 9)]
        reason = (f"highest macro harvest recall ({s['harvest_recall_macro']:.3f}) among the "
                  f"{len(ok)} of {len(points)} grid points with benign acted upon = 0 and benign alerted "
                  f"≤ {sc.BENIGN_ALERTED_TARGET:.1%}")
        if len(same) > 1:
            reason += f"; {len(same)} points tie on recall, the one with the highest thresholds was taken"
        return best, reason
    # Nothing meets the benign constraints: take the least harmful point and say so.
    best = min(points, key=lambda p: (p["summary"]["benign_acted"], p["summary"]["benign_alerted"],
                                      -(p["summary"]["harvest_recall_macro"] or 0), -p["alert"], -p["cluster"]))
    return best, ("NO grid point meets benign acted upon = 0 and benign alerted ≤ "
                  f"{sc.BENIGN_ALERTED_TARGET:.1%}; took the one with the fewest benign accounts acted "
                  "upon, then alerted, then the highest recall")


def split_dir(out_dir, name):
    d = os.path.join(out_dir, name)
    for f in ("traffic.jsonl", "labels.json"):
        sc.need_file(os.path.join(d, f), f"{name} split's")
    return d


def cell(r):
    if r["label"] == "benign":
        return [f"{r['alerted']} / {r['n']}", str(r["acted"]), f"{r['fpr']:.1%}", "–",
                "PASS" if r["pass"] else "**FAIL**"]
    return [f"{r['alerted']} / {r['n']}", str(r["acted"]), f"{r['recall']:.2f}", sc.fmt_num(r["median_req"]),
            "PASS" if r["pass"] else "**FAIL**"]


def compare_table(picked, default):
    cols = ["profile", "label"] + [f"{w}: {c}" for w in ("picked", "defaults")
                                   for c in ("alerted / n", "acted", "FPR / recall", "median req", "result")]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    drows = {r["profile"]: r for r in default["rows"]} if default else {}

    def tot(t, name):
        if t is None:
            return ["–"] * 5
        rate = f"{t['fpr']:.1%}" if name == "benign" else f"{t['recall']:.2f} (macro {t['recall_macro']:.2f})"
        return [f"{t['alerted']} / {t['n']}", str(t["acted"]), rate, "–", "**PASS**" if t["pass"] else "**FAIL**"]

    for name in ("benign", "harvest"):
        for r in picked["rows"]:
            if r["label"] != name:
                continue
            d = drows.get(r["profile"])
            out.append("| " + " | ".join([r["profile"], r["label"]] + cell(r) + (cell(d) if d else ["–"] * 5)) + " |")
        p = picked["totals"].get(name)
        if p:
            d = default["totals"].get(name) if default else None
            out.append("| " + " | ".join([f"**{name} total**", name] + tot(p, name) + tot(d, name)) + " |")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", default=os.environ.get("OUT_DIR", "eval/out"))
    ap.add_argument("--bin", default=os.environ.get("WARDEN_BIN", "target/release/warden"))
    ap.add_argument("--config", default=os.environ.get("DETECTOR_CONFIG", "eval/detector.toml"))
    ap.add_argument("--jobs", type=int, default=MAX_JOBS)
    ap.add_argument("--reuse-baseline", action="store_true",
                    help="use OUT_DIR/<fresh split>/alerts.jsonl as the shipped-defaults result")
    ap.add_argument("--markdown")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    jobs = max(1, min(args.jobs, MAX_JOBS))
    try:
        sc.check_bin(args.bin)
        base = sc.read_config(args.config)
        dirs = {n: split_dir(args.out_dir, n) for d in DIRECTIONS for n in d}
        # Validate every edit before spending time on backtests.
        for a in ALERT_GRID:
            for c in CLUSTER_GRID:
                sc.edit_config(base, alert_min_score=a, cluster_min_score=c)
    except (sc.InputError, ValueError) as e:
        print(f"lofo.py: error: {e}", file=sys.stderr)
        return 2
    bin_path = os.path.abspath(args.bin)
    work = os.path.join(args.out_dir, "lofo")
    shutil.rmtree(work, ignore_errors=True)  # configs and alerts of an earlier run
    os.makedirs(work, exist_ok=True)
    failures = []
    results = {"grid": {"alert_min_score": ALERT_GRID, "cluster_min_score": CLUSTER_GRID},
               "config": args.config, "directions": []}
    md = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for train, test in DIRECTIONS:
            log(f"{train} -> {test}: loading {train}")
            tdata = sc.SplitData(dirs[train])
            tdir = os.path.join(work, train)
            os.makedirs(tdir, exist_ok=True)

            def grid_run(a, c, tdir=tdir, train=train):
                tag = f"alert{a:.2f}_cluster{c:.2f}"
                cfg = os.path.join(tdir, tag + ".toml")
                with open(cfg, "w", encoding="utf-8") as f:
                    f.write(sc.edit_config(base, alert_min_score=a, cluster_min_score=c))
                alerts = os.path.join(tdir, tag + ".alerts.jsonl")
                secs = sc.run_backtest(bin_path, cfg, os.path.join(dirs[train], "traffic.jsonl"), alerts)
                return cfg, alerts, secs

            futs = {(a, c): pool.submit(grid_run, a, c) for a in ALERT_GRID for c in CLUSTER_GRID}
            points, errors = [], []
            for (a, c), fut in futs.items():
                try:
                    cfg, alerts, secs = fut.result()
                except (sc.BacktestError, OSError) as e:
                    errors.append({"alert": a, "cluster": c, "error": str(e)})
                    log(f"{train} alert={a} cluster={c}: {e}")
                    continue
                res = tdata.score(alerts)
                points.append({"alert": a, "cluster": c, "config": cfg, "alerts": alerts,
                               "backtest_s": round(secs, 2), "summary": res["summary"],
                               "recall": {r["profile"]: r["recall"] for r in res["rows"] if r["label"] == "harvest"}})
                s = res["summary"]
                log(f"{train} alert={a:.2f} cluster={c:.2f}: macro recall {s['harvest_recall_macro']:.3f}, "
                    f"benign alerted {s['benign_alerted']}/{s['benign_n']}, acted {s['benign_acted']} ({secs:.1f} s)")
            del tdata
            entry = {"train": train, "test": test, "points": points, "errors": errors}
            results["directions"].append(entry)
            md.append(f"### Choose on {train}, score on {test}\n")
            if errors:
                failures += errors
            if not points:
                md.append(f"Every backtest on {train} failed; first error: `{errors[0]['error']}`\n")
                continue
            best, reason = pick(points)
            entry.update({"picked": {"alert": best["alert"], "cluster": best["cluster"]}, "reason": reason})
            msg = (f"picked alert min_score = {best['alert']:.2f}, cluster_min_score = {best['cluster']:.2f} "
                   f"on {train}: {reason}")
            print(f"lofo: {msg}", flush=True)
            md.append(f"Picked on {train}: alert band `min_score = {best['alert']:.2f}`, "
                      f"`cluster_min_score = {best['cluster']:.2f}`. Why: {reason}.\n")

            # Score the other family's fresh split with the picked point, and with the shipped defaults.
            log(f"{train} -> {test}: backtests on {test}")
            tedir = os.path.join(work, f"{train}_to_{test}")
            os.makedirs(tedir, exist_ok=True)
            traffic = os.path.join(dirs[test], "traffic.jsonl")
            pcfg = os.path.join(tedir, "picked.toml")
            with open(pcfg, "w", encoding="utf-8") as f:
                f.write(sc.edit_config(base, alert_min_score=best["alert"], cluster_min_score=best["cluster"]))
            palerts = os.path.join(tedir, "picked.alerts.jsonl")
            fut_p = pool.submit(sc.run_backtest, bin_path, pcfg, traffic, palerts)
            reused = os.path.join(dirs[test], "alerts.jsonl")
            if args.reuse_baseline and os.path.isfile(reused):
                dalerts, fut_d = reused, None
            else:
                dalerts = os.path.join(tedir, "defaults.alerts.jsonl")
                fut_d = pool.submit(sc.run_backtest, bin_path, os.path.abspath(args.config), traffic, dalerts)
            picked_res = default_res = None
            tedata = sc.SplitData(dirs[test])
            for what, fut, path in (("picked point", fut_p, palerts), ("shipped defaults", fut_d, dalerts)):
                try:
                    if fut is not None:
                        fut.result()
                except (sc.BacktestError, OSError) as e:
                    failures.append({"test": test, "what": what, "error": str(e)})
                    md.append(f"Backtest of {test} with the {what} failed: `{e}`\n")
                    continue
                res = tedata.score(path)
                if what == "picked point":
                    picked_res = res
                else:
                    default_res = res
            del tedata
            entry["test_picked"] = picked_res and {"summary": picked_res["summary"], "rows": picked_res["rows"]}
            entry["test_defaults"] = default_res and {"summary": default_res["summary"], "rows": default_res["rows"],
                                                      "alerts": dalerts}
            if picked_res:
                ps = picked_res["summary"]
                md.append(f"On {test} (never looked at while choosing): picked point "
                          f"{ps['rows_pass']} PASS / {ps['rows_fail']} FAIL, macro recall "
                          f"{ps['harvest_recall_macro']:.3f}, benign alerted {ps['benign_alerted']}/{ps['benign_n']}, "
                          f"acted {ps['benign_acted']}"
                          + (f"; shipped defaults {default_res['summary']['rows_pass']} PASS / "
                             f"{default_res['summary']['rows_fail']} FAIL, macro recall "
                             f"{default_res['summary']['harvest_recall_macro']:.3f}" if default_res else "")
                          + ".\n")
                md.append(compare_table(picked_res, default_res))
            # The grid itself.
            md.append(f"<details><summary>Grid on {train} ({len(points)} points)</summary>\n")
            cols = ["alert min_score", "cluster_min_score", "macro recall", "min recall (class)",
                    "benign alerted", "benign acted", "meets benign constraints", ""]
            md.append("| " + " | ".join(cols) + " |")
            md.append("|" + "---|" * len(cols))
            for p in sorted(points, key=lambda p: (p["alert"], p["cluster"])):
                s = p["summary"]
                md.append(f"| {p['alert']:.2f} | {p['cluster']:.2f} | {s['harvest_recall_macro']:.3f} | "
                          f"{s['harvest_recall_min']:.2f} ({s['harvest_recall_min_class']}) | "
                          f"{s['benign_alerted']} / {s['benign_n']} | {s['benign_acted']} | "
                          f"{'yes' if feasible(s) else 'no'} | {'**picked**' if p is best else ''} |")
            for e in errors:
                md.append(f"| {e['alert']:.2f} | {e['cluster']:.2f} | backtest failed: `{e['error'][:200]}` |||||")
            md.append("\n</details>\n")

    intro = (f"Global knobs only: the alert band's `min_score` ∈ {{{', '.join(f'{x:.2f}' for x in ALERT_GRID)}}} × "
             f"`cluster_min_score` ∈ {{{', '.join(f'{x:.2f}' for x in CLUSTER_GRID)}}}, each a copy of "
             f"`{args.config}` with just those two values changed. Choose on one family's tune split (highest "
             f"macro harvest recall with benign acted upon = 0 and benign alerted ≤ {sc.BENIGN_ALERTED_TARGET:.1%}; "
             "ties → higher thresholds), then score the *other* family's fresh split, next to the shipped defaults "
             "on that split. Configs and alerts: `" + work + "/`.\n")
    text = intro + "\n" + "\n".join(md)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    if failures:
        log(f"{len(failures)} backtest(s) failed (see the report)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
