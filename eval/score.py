#!/usr/bin/env python3
"""Scores `warden backtest` alerts against the generator's labels.

    score.py --labels DIR/labels.json --traffic DIR/traffic.jsonl --alerts ALERTS.jsonl \
             [--markdown OUT.md] [--json OUT.json] [--strict]

Alerts are JSON lines as printed by the backtest:
    {"id": ..., "account_ids": [...], "kind": ..., "severity": ..., "score": ...,
     "status": ..., "created_at": "<ts of the record that raised it>", "evidence": {...}}
The same id may be printed again when the alert is updated. An account counts as flagged at
the first line (in file order) whose `account_ids` contains it; the flag time is that
line's `created_at`, or, for a repeated id (an update), its `updated_at` when present
(the time the account was added), else its `created_at`. Lines that are not JSON objects
are skipped with a warning on stderr.

Per profile: accounts flagged / total; for benign profiles the false-positive rate per
account; for harvesting profiles the recall, the median number of the account's own
requests (records with ts <= flag time) and tokens (prompt + completion) served before its
first flag, computed per account (also for hydra), and the share of the profile's tokens
served before detection (unflagged accounts count in full). Targets: harvest recall >= 0.95;
benign FPR <= 1% per profile and overall; median <= 200 requests before detection for
single-account harvesters, <= 50 per account for hydra.

Python 3.11, standard library only. Exit status 0 (with --strict: 1 if any row FAILs),
2 on unreadable input.
"""
from __future__ import annotations

import argparse
import bisect
import json
import sys
from collections import Counter, defaultdict
from datetime import datetime, timezone

BENIGN_ORDER = ["chat_user", "product_integration", "batch_summarizer", "student", "developer"]
HARVEST_ORDER = ["instruction_harvester", "reasoning_harvester", "logprob_harvester",
                 "templated_harvester", "hydra", "evasive"]
RECALL_TARGET = 0.95
FPR_TARGET = 0.01
MEDIAN_REQ_TARGET = {"hydra": 50}
MEDIAN_REQ_DEFAULT = 200


def warn(msg):
    print(f"score.py: warning: {msg}", file=sys.stderr)


def parse_time(v):
    """RFC3339 string (Z or offset, any fraction) or epoch number -> epoch ms; None if unusable."""
    if v is None:
        return None
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return int(v if v > 1e11 else v * 1000)
    if isinstance(v, str):
        s = v.strip()
        if s.endswith(("Z", "z")):
            s = s[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return int(round(dt.timestamp() * 1000))
    return None


def median(xs):
    xs = sorted(xs)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def load_traffic(path):
    """account -> (sorted ts list, cumulative tokens list aligned with it)."""
    per = defaultdict(list)
    bad = 0
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                acct = r.get("account_id")
                ts = parse_time(r.get("ts"))
            except (ValueError, AttributeError):
                bad += 1
                continue
            if acct is None or ts is None:
                bad += 1
                continue
            u = r.get("usage") or {}
            toks = (u.get("prompt_tokens") or 0) + (u.get("completion_tokens") or 0)
            per[acct].append((ts, toks))
    if bad:
        warn(f"{path}: {bad} traffic lines without a usable account_id/ts were ignored")
    out = {}
    for acct, rows in per.items():
        rows.sort(key=lambda x: x[0])
        ts = [t for t, _ in rows]
        cum, s = [], 0
        for _, k in rows:
            s += k
            cum.append(s)
        out[acct] = (ts, cum)
    return out


def load_alerts(path):
    """Returns (first_flag: acct -> (ms|None, kind, alert_id), kinds: acct -> set, info)."""
    first = {}
    kinds = defaultdict(set)
    seen_ids = set()
    info = Counter()
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                a = json.loads(line)
            except ValueError:
                warn(f"{path}:{lineno}: not JSON, skipped: {line.strip()[:80]!r}")
                info["skipped"] += 1
                continue
            if not isinstance(a, dict):
                warn(f"{path}:{lineno}: not a JSON object, skipped")
                info["skipped"] += 1
                continue
            accts = a.get("account_ids")
            if isinstance(accts, str):
                accts = [accts]
            if not isinstance(accts, list):
                warn(f"{path}:{lineno}: no account_ids list, skipped")
                info["skipped"] += 1
                continue
            info["lines"] += 1
            aid = a.get("id")
            kind = str(a.get("kind", "?"))
            repeat = aid is not None and aid in seen_ids
            if aid is not None:
                seen_ids.add(aid)
            when_raw = a.get("updated_at") if repeat and a.get("updated_at") is not None else a.get("created_at")
            when = parse_time(when_raw)
            if when is None:
                warn(f"{path}:{lineno}: alert {aid!r} has no usable created_at; its new accounts "
                     "count as flagged after all their traffic")
            for acct in accts:
                acct = str(acct)
                kinds[acct].add(kind)
                if acct not in first:
                    first[acct] = (when, kind, aid)
    info["alerts"] = len(seen_ids)
    return first, kinds, info


def fmt_int(x):
    if x is None:
        return "–"
    return f"{x:,.0f}" if x >= 1000 else (f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}")


def fmt_hours(ms):
    if ms is None:
        return "–"
    h = ms / 3_600_000
    return f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h"


def score(labels, traffic, first, kinds):
    by_profile = defaultdict(list)
    for acct, lab in labels.items():
        by_profile[lab.get("profile", "?")].append(acct)
    order = [p for p in BENIGN_ORDER + HARVEST_ORDER if p in by_profile]
    order += sorted(p for p in by_profile if p not in order)
    rows = []
    benign_total = [0, 0, Counter()]
    harvest_total = [0, 0, 0, 0, Counter()]  # flagged, total, tokens before, tokens total
    for prof in order:
        accts = sorted(by_profile[prof])
        label = labels[accts[0]].get("label", "?")
        flagged = [a for a in accts if a in first]
        kc = Counter()
        for a in accts:
            for k in kinds.get(a, ()):
                kc[k] += 1
        row = {"profile": prof, "label": label, "accounts": len(accts), "flagged": len(flagged),
               "kinds": dict(kc.most_common())}
        if label == "benign":
            fpr = len(flagged) / len(accts)
            row["fpr"] = fpr
            row["target"] = f"FPR ≤ {FPR_TARGET:.0%}"
            row["pass"] = fpr <= FPR_TARGET
            row["flagged_accounts"] = flagged
            benign_total[0] += len(flagged)
            benign_total[1] += len(accts)
            benign_total[2].update(kc)
        else:
            reqs, toks, delays = [], [], []
            tok_before = tok_all = 0
            for a in accts:
                ts, cum = traffic.get(a, ([], []))
                total = cum[-1] if cum else 0
                tok_all += total
                if a in first:
                    when = first[a][0]
                    i = len(ts) if when is None else bisect.bisect_right(ts, when)
                    reqs.append(i)
                    before = cum[i - 1] if i else 0
                    toks.append(before)
                    tok_before += before
                    if ts and when is not None:
                        delays.append(max(0, when - ts[0]))
                else:
                    tok_before += total
            recall = len(flagged) / len(accts)
            limit = MEDIAN_REQ_TARGET.get(prof, MEDIAN_REQ_DEFAULT)
            med_req = median(reqs)
            row.update({
                "recall": recall,
                "median_requests_before_flag": med_req,
                "median_tokens_before_flag": median(toks),
                "median_time_to_flag_ms": median(delays),
                "tokens_served_before_detection_share": (tok_before / tok_all) if tok_all else None,
                "missed_accounts": [a for a in accts if a not in first],
                "target": f"recall ≥ {RECALL_TARGET}, median ≤ {limit} req",
                "pass": recall >= RECALL_TARGET and med_req is not None and med_req <= limit,
            })
            harvest_total[0] += len(flagged)
            harvest_total[1] += len(accts)
            harvest_total[2] += tok_before
            harvest_total[3] += tok_all
            harvest_total[4].update(kc)
        rows.append(row)
    totals = {}
    if benign_total[1]:
        fpr = benign_total[0] / benign_total[1]
        totals["benign"] = {"profile": "benign total", "label": "benign", "accounts": benign_total[1],
                            "flagged": benign_total[0], "fpr": fpr, "kinds": dict(benign_total[2].most_common()),
                            "target": f"FPR ≤ {FPR_TARGET:.0%}", "pass": fpr <= FPR_TARGET}
    if harvest_total[1]:
        rec = harvest_total[0] / harvest_total[1]
        totals["harvest"] = {"profile": "harvest total", "label": "harvest", "accounts": harvest_total[1],
                             "flagged": harvest_total[0], "recall": rec,
                             "tokens_served_before_detection_share":
                                 (harvest_total[2] / harvest_total[3]) if harvest_total[3] else None,
                             "kinds": dict(harvest_total[4].most_common()),
                             "target": f"recall ≥ {RECALL_TARGET}", "pass": rec >= RECALL_TARGET}
    return rows, totals


def markdown(rows, totals, info, unknown):
    cols = ["profile", "label", "flagged / total", "FPR / recall", "median req before flag",
            "median tokens before flag", "median time to flag", "tokens served before detection",
            "alert kinds (accounts)", "target", "result"]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]

    def line(r, bold=False):
        b = "**" if bold else ""
        rate = (f"FPR {r['fpr']:.1%}" if "fpr" in r else f"recall {r['recall']:.2f}")
        share = r.get("tokens_served_before_detection_share")
        kinds = ", ".join(f"{k}×{n}" for k, n in r.get("kinds", {}).items()) or "–"
        cells = [
            f"{b}{r['profile']}{b}", r["label"], f"{r['flagged']} / {r['accounts']}", rate,
            fmt_int(r.get("median_requests_before_flag")), fmt_int(r.get("median_tokens_before_flag")),
            fmt_hours(r.get("median_time_to_flag_ms")),
            "–" if share is None else f"{share:.1%}", kinds, r["target"],
            f"{b}{'PASS' if r['pass'] else 'FAIL'}{b}",
        ]
        return "| " + " | ".join(cells) + " |"

    for r in rows:
        if r["label"] == "benign":
            out.append(line(r))
    if "benign" in totals:
        out.append(line(totals["benign"], bold=True))
    for r in rows:
        if r["label"] != "benign":
            out.append(line(r))
    if "harvest" in totals:
        out.append(line(totals["harvest"], bold=True))
    notes = [
        "",
        f"Alert lines scored: {info.get('lines', 0)} ({info.get('alerts', 0)} distinct ids), "
        f"skipped: {info.get('skipped', 0)}; accounts in alerts but not in labels: {len(unknown)}.",
        "Requests/tokens before flag: the account's own records with ts ≤ its first flag time "
        "(medians over flagged accounts). Tokens served before detection: share of the profile's "
        "prompt+completion tokens served before each account's first flag (missed accounts in full).",
    ]
    fps = [a for r in rows if r["label"] == "benign" for a in r.get("flagged_accounts", [])]
    if fps:
        notes.append("False positives: " + ", ".join(fps[:40]) + (" …" if len(fps) > 40 else "") + ".")
    missed = [a for r in rows if r["label"] != "benign" for a in r.get("missed_accounts", [])]
    if missed:
        notes.append(f"Missed harvesting accounts ({len(missed)}): " + ", ".join(missed[:40])
                     + (" …" if len(missed) > 40 else "") + ".")
    return "\n".join(out) + "\n" + "\n".join(notes) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description="Score backtest alerts against labels.")
    ap.add_argument("--labels", required=True)
    ap.add_argument("--traffic", required=True)
    ap.add_argument("--alerts", required=True)
    ap.add_argument("--markdown", help="also write the table to this file")
    ap.add_argument("--json", help="also write machine-readable results to this file")
    ap.add_argument("--strict", action="store_true", help="exit 1 if any row fails its target")
    args = ap.parse_args(argv)
    try:
        with open(args.labels, encoding="utf-8") as f:
            labels = json.load(f)
        traffic = load_traffic(args.traffic)
        first, kinds, info = load_alerts(args.alerts)
    except (OSError, ValueError) as e:
        print(f"score.py: error: {e}", file=sys.stderr)
        return 2
    unknown = sorted(a for a in first if a not in labels)
    if unknown:
        warn(f"{len(unknown)} account(s) in alerts are not in labels: {', '.join(unknown[:10])}")
    rows, totals = score(labels, traffic, first, kinds)
    md = markdown(rows, totals, info, unknown)
    sys.stdout.write(md)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(md)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"rows": rows, "totals": totals, "alerts": dict(info), "unknown_accounts": unknown},
                      f, indent=1)
    failed = any(not r["pass"] for r in rows) or any(not t["pass"] for t in totals.values())
    return 1 if (args.strict and failed) else 0


if __name__ == "__main__":
    sys.exit(main())
