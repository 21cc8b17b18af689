#!/usr/bin/env python3
"""Robustness matrix: what each family of signals is worth, one switched off at a time.

    robustness.py --out-dir eval/out [--bin target/release/warden] [--config eval/detector.toml]
                  [--splits A-fresh,B-fresh] [--families reasoning,templates,...] [--jobs 2]
                  [--reuse-baseline] [--markdown OUT.md] [--json OUT.json]

For each split (default: the fresh splits of both families that exist under OUT_DIR) and each
family in FAMILIES, runs `warden backtest` with a copy of the config that has
`disable_families = ["<family>"]` inserted right after the `[detection]` header, and reports
recall per harvest class (rows) for "all on" (the unmodified config) and each family off
(columns), plus benign alerted / acted upon per column. --reuse-baseline takes the "all on"
column from OUT_DIR/<split>/alerts.jsonl (run.sh writes it with the same binary and config).
Backtests run at most --jobs (<= 2) at a time. A backtest that fails (e.g. a binary that
does not know `disable_families` yet) is reported in its column and makes the exit status 1.

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

# The detector's families of signals, as `[detection] disable_families` names them.
FAMILIES = ["reasoning", "soft_labels", "templates", "breadth", "day_scale", "automation",
            "content", "infrastructure_links", "behaviour_links"]
DEFAULT_SPLITS = ["A-fresh", "B-fresh"]
MAX_JOBS = 2


def log(msg):
    print(f"robustness: {msg}", file=sys.stderr, flush=True)


def matrix_markdown(split, columns, results):
    """columns: ["all on", fam, ...]; results: column -> score result or {"error": str}."""
    heads = ["harvest class"] + ["all on" if c == "all on" else f"{c} off" for c in columns]
    out = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    ok = [c for c in columns if "error" not in results[c]]
    classes = []
    for c in ok:
        for r in results[c]["rows"]:
            if r["label"] == "harvest" and r["profile"] not in classes:
                classes.append(r["profile"])

    def rec(c, prof):
        res = results[c]
        if "error" in res:
            return "failed"
        r = next((r for r in res["rows"] if r["profile"] == prof), None)
        if r is None:
            return "–"
        v = f"{r['recall']:.2f}"
        return f"**{v}**" if r["recall"] < sc.RECALL_TARGET else v

    for prof in classes:
        out.append("| " + " | ".join([prof] + [rec(c, prof) for c in columns]) + " |")

    def total(c, f):
        res = results[c]
        return "failed" if "error" in res else f(res["summary"])
    out.append("| " + " | ".join(["*macro recall*"] + [total(c, lambda s: f"{s['harvest_recall_macro']:.3f}")
                                                       for c in columns]) + " |")
    out.append("| " + " | ".join(["*benign alerted*"] + [total(c, lambda s: f"{s['benign_alerted']} / {s['benign_n']}")
                                                         for c in columns]) + " |")
    out.append("| " + " | ".join(["*benign acted upon*"] + [total(c, lambda s: str(s["benign_acted"]))
                                                            for c in columns]) + " |")
    out.append("| " + " | ".join(["*rows PASS / FAIL*"] + [total(c, lambda s: f"{s['rows_pass']} / {s['rows_fail']}")
                                                           for c in columns]) + " |")
    errs = [(c, results[c]["error"]) for c in columns if "error" in results[c]]
    notes = ""
    if errs:
        notes = "\n" + "\n".join(f"- {c}: {e}" for c, e in errs) + "\n"
    return f"### {split}\n\n" + "\n".join(out) + "\n" + notes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", default=os.environ.get("OUT_DIR", "eval/out"))
    ap.add_argument("--bin", default=os.environ.get("WARDEN_BIN", "target/release/warden"))
    ap.add_argument("--config", default=os.environ.get("DETECTOR_CONFIG", "eval/detector.toml"))
    ap.add_argument("--splits", help="comma-separated split names under --out-dir "
                                     f"(default: those of {','.join(DEFAULT_SPLITS)} that exist)")
    ap.add_argument("--families", help=f"comma-separated (default: all {len(FAMILIES)})")
    ap.add_argument("--jobs", type=int, default=MAX_JOBS)
    ap.add_argument("--reuse-baseline", action="store_true",
                    help="use OUT_DIR/<split>/alerts.jsonl as the 'all on' column")
    ap.add_argument("--markdown")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    jobs = max(1, min(args.jobs, MAX_JOBS))
    families = [f for f in (args.families.split(",") if args.families else FAMILIES) if f]
    try:
        sc.check_bin(args.bin)
        base = sc.read_config(args.config)
        if args.splits:
            splits = [s for s in args.splits.split(",") if s]
        else:
            splits = [s for s in DEFAULT_SPLITS if os.path.isdir(os.path.join(args.out_dir, s))]
            if not splits:
                raise sc.InputError(f"none of {', '.join(DEFAULT_SPLITS)} under {args.out_dir} "
                                    "(run eval/run.sh first, or pass --splits)")
        for s in splits:
            for f in ("traffic.jsonl", "labels.json"):
                sc.need_file(os.path.join(args.out_dir, s, f), f"{s} split's")
        for fam in families:
            sc.edit_config(base, disable_families=[fam])
    except (sc.InputError, ValueError) as e:
        print(f"robustness.py: error: {e}", file=sys.stderr)
        return 2
    try:
        pre = sc.tomllib.loads(base).get("detection", {}).get("disable_families")
    except sc.tomllib.TOMLDecodeError:
        pre = None
    if pre:
        log(f"warning: {args.config} already disables {pre}; each column replaces that list")

    bin_path = os.path.abspath(args.bin)
    work = os.path.join(args.out_dir, "robustness")
    shutil.rmtree(work, ignore_errors=True)  # configs and alerts of an earlier run
    columns = ["all on"] + families

    def job(split, col):
        d = os.path.join(work, split)
        os.makedirs(d, exist_ok=True)
        traffic = os.path.join(args.out_dir, split, "traffic.jsonl")
        if col == "all on":
            reused = os.path.join(args.out_dir, split, "alerts.jsonl")
            if args.reuse_baseline and os.path.isfile(reused):
                return reused
            cfg = os.path.abspath(args.config)
        else:
            cfg = os.path.join(d, f"no_{col}.toml")
            with open(cfg, "w", encoding="utf-8") as f:
                f.write(sc.edit_config(base, disable_families=[col]))
        alerts = os.path.join(d, ("all_on" if col == "all on" else f"no_{col}") + ".alerts.jsonl")
        sc.run_backtest(bin_path, cfg, traffic, alerts)
        return alerts

    results = {}
    failed = 0
    md = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futs = {(s, c): pool.submit(job, s, c) for s in splits for c in columns}
        for s in splits:
            log(f"{s}: loading traffic")
            data = sc.SplitData(os.path.join(args.out_dir, s))
            results[s] = {}
            for c in columns:
                try:
                    alerts = futs[(s, c)].result()
                except (sc.BacktestError, OSError, ValueError) as e:
                    results[s][c] = {"error": str(e)}
                    failed += 1
                    log(f"{s} / {c}: {e}")
                    continue
                res = data.score(alerts)
                results[s][c] = {"rows": res["rows"], "summary": res["summary"], "alerts": alerts}
                sm = res["summary"]
                log(f"{s} / {c}: macro recall {sm['harvest_recall_macro']:.3f}, min {sm['harvest_recall_min']:.2f} "
                    f"({sm['harvest_recall_min_class']}), benign alerted {sm['benign_alerted']}, acted {sm['benign_acted']}")
            del data
            md.append(matrix_markdown(s, columns, results[s]))

    intro = ("Recall per harvest class with every family of signals on, then with one family switched off "
             "(`disable_families = [\"<family>\"]` in a copy of `" + args.config + "`); bold: below "
             f"{sc.RECALL_TARGET}. Benign alerted / acted upon per column below the classes. Configs and alerts: "
             f"`{work}/`.\n")
    text = intro + "\n" + "\n".join(md)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"config": args.config, "families": families, "splits": results}, f, indent=1)
    if failed:
        log(f"{failed} backtest(s) failed (see the report)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
