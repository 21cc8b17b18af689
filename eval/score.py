#!/usr/bin/env python3
"""Scores `warden backtest` alerts against a generator's labels.

    score.py --labels DIR/labels.json --traffic DIR/traffic.jsonl --alerts ALERTS.jsonl \
             [--markdown OUT.md] [--json OUT.json] [--strict]
    score.py --summary NAME=DIR/score.json [NAME=DIR/score.json ...]   (one summary table)

Alerts are JSON lines as printed by the backtest:
    {"id", "account_ids": [...], "kind", "severity", "score", "status", "created_at",
     "updated_at", "action": "observe"|"alert"|"strip"|"throttle"|"block", "enforced", "evidence"}
The same id may be printed again when the alert is updated (more members, a higher action).
Lines are read in file order. An account is *alerted* at the first line whose `account_ids`
contains it; the flag time is that line's `created_at`, or, for a repeated id (an update),
its `updated_at` when present (the time the account was added). An account is *acted upon*
at the first line naming it whose `action` is strip/throttle/block and whose `enforced` is
true; that time is the line's `updated_at` (else `created_at`). Lines that are not JSON
objects are skipped with a warning on stderr.

Profiles are read from labels.json (known names in a preferred order, unknown ones appended
sorted; benign first, then harvest). Per profile: accounts, alerted, acted upon; FPR
(alerted / accounts) for benign profiles, recall for harvesting ones; the median number of
the account's own requests (records with ts <= flag time) and tokens (prompt + completion)
served before its first flag, and before its first action; the median time to flag; the
share of the profile's tokens served before detection (missed accounts in full).

Targets (PASS/FAIL per row):
  harvest, per class:  recall >= 0.95 and median requests before the first flag <= 200
                       (<= 50 per account for classes whose labels carry "cluster");
  benign, per profile: acted upon = 0 (alerted is shown);
  benign, overall:     acted upon = 0 and alerted <= 0.5 % of benign accounts.

Also used as a library by lofo.py and robustness.py (SplitData, score_alerts, run_backtest,
edit_config). Python 3.11, standard library only. Exit status 0 (with --strict: 1 if any
row FAILs), 2 on missing or unreadable input.
"""
from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from collections import Counter, defaultdict
from datetime import datetime, timezone

# Preferred display order for profile names we know; anything else in labels.json is
# appended, sorted, after these (benign first, then harvest).
BENIGN_ORDER = ["chat_user", "heavy_chat_user", "product_integration", "batch_summarizer",
                "batch_job", "nightly_batch", "student", "developer", "translation_product",
                "classification_product", "extraction_product", "rag_product", "coding_agent",
                "company_nat"]
HARVEST_ORDER = ["instruction_harvester", "reasoning_harvester", "logprob_harvester",
                 "templated_harvester", "human_paced_harvester", "system_prompt_reasoning",
                 "responses_harvester", "completions_harvester", "soft_label_human", "model_switch",
                 "hydra", "hydra_shared", "hydra_paraphrased", "round_robin", "evasive"]
RECALL_TARGET = 0.95
BENIGN_ALERTED_TARGET = 0.005       # overall share of benign accounts alerted
BENIGN_ACTED_TARGET = 0             # benign accounts acted upon, per profile and overall
MEDIAN_REQ_SINGLE = 200             # requests before the first flag, single-account classes
MEDIAN_REQ_CLUSTER = 50             # per account, classes whose labels carry "cluster"
ENFORCING_ACTIONS = {"strip", "throttle", "block"}


class InputError(Exception):
    """A missing or unreadable input file (exit status 2)."""


# The detector's default `min_requests` (eval/detector.toml): an account with fewer
# requests is never scored, so a miss among them says so.
MIN_REQUESTS = 20


def warn(msg):
    print(f"score.py: warning: {msg}", file=sys.stderr)


def parse_time(v):
    """RFC3339 string (Z or offset, any fraction) or epoch number -> epoch ms; None if unusable."""
    if v is None or isinstance(v, bool):
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


def need_file(path, what):
    if not path or not os.path.isfile(path):
        raise InputError(f"{what} {path!r} not found")


# ----------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------

def load_labels(path):
    need_file(path, "labels file")
    try:
        with open(path, encoding="utf-8") as f:
            labels = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: {e}") from e
    if not isinstance(labels, dict) or not labels:
        raise InputError(f"{path}: expected a non-empty JSON object {{account: {{profile, label}}}}")
    for acct, lab in labels.items():
        if not isinstance(lab, dict) or "profile" not in lab or lab.get("label") not in ("benign", "harvest"):
            raise InputError(f"{path}: account {acct!r}: needs \"profile\" and \"label\" benign|harvest")
    return labels


def load_traffic(path):
    """account -> (sorted ts list, cumulative tokens list aligned with it)."""
    need_file(path, "traffic file")
    per = defaultdict(list)
    bad = 0
    try:
        f = open(path, "rb")
    except OSError as e:
        raise InputError(f"{path}: {e}") from e
    with f:
        for line in f:
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
    """Returns dict with
    first:  acct -> (flag ms|None, kind, alert id)       first line naming the account
    acted:  acct -> (ms|None, action)                    first enforced strip/throttle/block line
    kinds:  acct -> set of alert kinds
    info:   Counter(lines, skipped, alerts)
    """
    need_file(path, "alerts file")
    first, acted = {}, {}
    kinds = defaultdict(set)
    seen_ids = set()
    info = Counter()
    try:
        f = open(path, "r", encoding="utf-8", errors="replace")
    except OSError as e:
        raise InputError(f"{path}: {e}") from e
    with f:
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
            upd = a.get("updated_at")
            when = parse_time(upd if repeat and upd is not None else a.get("created_at"))
            if when is None:
                warn(f"{path}:{lineno}: alert {aid!r} has no usable created_at; its new accounts "
                     "count as flagged after all their traffic")
            action = str(a.get("action", "")).lower()
            enforcing = action in ENFORCING_ACTIONS and a.get("enforced") is True
            act_when = parse_time(upd if upd is not None else a.get("created_at")) if enforcing else None
            for acct in accts:
                acct = str(acct)
                kinds[acct].add(kind)
                if acct not in first:
                    first[acct] = (when, kind, aid)
                if enforcing and acct not in acted:
                    acted[acct] = (act_when, action)
    info["alerts"] = len(seen_ids)
    return {"first": first, "acted": acted, "kinds": kinds, "info": info}


def profile_order(labels):
    """(ordered profile names, profile -> label, profile -> sorted accounts, profile -> is cluster class)."""
    by_profile = defaultdict(list)
    for acct, lab in labels.items():
        by_profile[lab["profile"]].append(acct)
    label_of, clustered = {}, {}
    for prof, accts in by_profile.items():
        labs = {labels[a]["label"] for a in accts}
        if len(labs) > 1:
            warn(f"profile {prof!r} mixes labels {sorted(labs)}; scored as harvest")
        label_of[prof] = "harvest" if "harvest" in labs else "benign"
        clustered[prof] = any(labels[a].get("cluster") is not None for a in accts)
    order = []
    for label, known in (("benign", BENIGN_ORDER), ("harvest", HARVEST_ORDER)):
        mine = [p for p in by_profile if label_of[p] == label]
        order += [p for p in known if p in mine]
        order += sorted(p for p in mine if p not in known)
    return order, label_of, {p: sorted(a) for p, a in by_profile.items()}, clustered


# ----------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------

def requests_before(traffic, acct, when):
    """(own requests with ts <= when, tokens served in them); when None = all traffic."""
    ts, cum = traffic.get(acct, ([], []))
    i = len(ts) if when is None else bisect.bisect_right(ts, when)
    return i, (cum[i - 1] if i else 0)


def score(labels, traffic, alerts):
    first, acted, kinds = alerts["first"], alerts["acted"], alerts["kinds"]
    order, label_of, accts_of, clustered = profile_order(labels)
    rows = []
    btot = {"n": 0, "alerted": 0, "acted": 0, "kinds": Counter()}
    htot = {"n": 0, "alerted": 0, "acted": 0, "kinds": Counter(), "tok_before": 0, "tok_all": 0}
    for prof in order:
        accts = accts_of[prof]
        label = label_of[prof]
        alerted = [a for a in accts if a in first]
        acted_on = [a for a in accts if a in acted]
        kc = Counter()
        for a in accts:
            for k in kinds.get(a, ()):
                kc[k] += 1
        row = {"profile": prof, "label": label, "n": len(accts), "alerted": len(alerted),
               "acted": len(acted_on), "alerted_rate": len(alerted) / len(accts),
               "acted_rate": len(acted_on) / len(accts), "kinds": dict(kc.most_common())}
        tot = btot if label == "benign" else htot
        tot["n"] += len(accts)
        tot["alerted"] += len(alerted)
        tot["acted"] += len(acted_on)
        tot["kinds"].update(kc)
        if label == "benign":
            row.update({
                "fpr": row["alerted_rate"],
                "target": "acted = 0",
                "pass": len(acted_on) <= BENIGN_ACTED_TARGET,
                "alerted_accounts": alerted,
                "acted_accounts": acted_on,
            })
        else:
            reqs, toks, delays, act_reqs = [], [], [], []
            tok_before = tok_all = 0
            for a in accts:
                ts, cum = traffic.get(a, ([], []))
                total = cum[-1] if cum else 0
                tok_all += total
                if a in first:
                    when = first[a][0]
                    i, before = requests_before(traffic, a, when)
                    reqs.append(i)
                    toks.append(before)
                    tok_before += before
                    if ts and when is not None:
                        delays.append(max(0, when - ts[0]))
                else:
                    tok_before += total
                if a in acted:
                    act_reqs.append(requests_before(traffic, a, acted[a][0])[0])
            recall = row["alerted_rate"]
            limit = MEDIAN_REQ_CLUSTER if clustered[prof] else MEDIAN_REQ_SINGLE
            med_req = median(reqs)
            row.update({
                "recall": recall,
                "cluster": clustered[prof],
                "median_req": med_req,
                "median_req_limit": limit,
                "median_tokens": median(toks),
                "median_time_to_flag_ms": median(delays),
                "median_req_before_action": median(act_reqs),
                "tokens_before_detection_share": (tok_before / tok_all) if tok_all else None,
                "missed_accounts": [a for a in accts if a not in first],
                "missed_below_min": [a for a in accts if a not in first
                                     and len(traffic.get(a, ([], []))[0]) < MIN_REQUESTS],
                "target": f"recall ≥ {RECALL_TARGET}, median ≤ {limit} req"
                          + (" per account" if clustered[prof] else ""),
                "pass": recall >= RECALL_TARGET and med_req is not None and med_req <= limit,
            })
            htot["tok_before"] += tok_before
            htot["tok_all"] += tok_all
        rows.append(row)

    totals = {}
    if btot["n"]:
        rate = btot["alerted"] / btot["n"]
        totals["benign"] = {
            "profile": "benign total", "label": "benign", "n": btot["n"], "alerted": btot["alerted"],
            "acted": btot["acted"], "alerted_rate": rate, "fpr": rate,
            "kinds": dict(btot["kinds"].most_common()),
            "target": f"acted = 0, alerted ≤ {BENIGN_ALERTED_TARGET:.1%}",
            "pass": btot["acted"] <= BENIGN_ACTED_TARGET and rate <= BENIGN_ALERTED_TARGET,
        }
    harvest_rows = [r for r in rows if r["label"] == "harvest"]
    if htot["n"]:
        rec = htot["alerted"] / htot["n"]
        totals["harvest"] = {
            "profile": "harvest total", "label": "harvest", "n": htot["n"], "alerted": htot["alerted"],
            "acted": htot["acted"], "alerted_rate": rec, "recall": rec,
            "recall_macro": sum(r["recall"] for r in harvest_rows) / len(harvest_rows),
            "tokens_before_detection_share": (htot["tok_before"] / htot["tok_all"]) if htot["tok_all"] else None,
            "kinds": dict(htot["kinds"].most_common()),
            "target": "every class passes",
            "pass": all(r["pass"] for r in harvest_rows),
        }
    checked = rows + ([totals["benign"]] if "benign" in totals else [])
    worst = min(harvest_rows, key=lambda r: r["recall"]) if harvest_rows else None
    summary = {
        "benign_n": btot["n"], "benign_alerted": btot["alerted"], "benign_acted": btot["acted"],
        "benign_alerted_rate": (btot["alerted"] / btot["n"]) if btot["n"] else None,
        "harvest_n": htot["n"], "harvest_alerted": htot["alerted"],
        "harvest_recall_macro": totals["harvest"]["recall_macro"] if harvest_rows else None,
        "harvest_recall_min": worst["recall"] if worst else None,
        "harvest_recall_min_class": worst["profile"] if worst else None,
        "rows_pass": sum(1 for r in checked if r["pass"]),
        "rows_fail": sum(1 for r in checked if not r["pass"]),
        "benign_ok": ("benign" in totals and totals["benign"]["pass"]),
    }
    summary["pass"] = summary["rows_fail"] == 0
    return rows, totals, summary


class SplitData:
    """A split's labels and traffic, loaded once, scored against many alert files."""

    def __init__(self, split_dir, name=None):
        self.dir = split_dir
        self.name = name or os.path.basename(os.path.normpath(split_dir))
        self.labels_path = os.path.join(split_dir, "labels.json")
        self.traffic_path = os.path.join(split_dir, "traffic.jsonl")
        self.labels = load_labels(self.labels_path)
        self.traffic = load_traffic(self.traffic_path)

    def score(self, alerts_path):
        alerts = load_alerts(alerts_path)
        rows, totals, summary = score(self.labels, self.traffic, alerts)
        return {"rows": rows, "totals": totals, "summary": summary, "alerts": dict(alerts["info"]),
                "unknown_accounts": sorted(a for a in alerts["first"] if a not in self.labels)}


def score_files(labels_path, traffic_path, alerts_path):
    labels = load_labels(labels_path)
    traffic = load_traffic(traffic_path)
    alerts = load_alerts(alerts_path)
    rows, totals, summary = score(labels, traffic, alerts)
    return {"rows": rows, "totals": totals, "summary": summary, "alerts": dict(alerts["info"]),
            "unknown_accounts": sorted(a for a in alerts["first"] if a not in labels)}


# ----------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------

def fmt_num(x):
    if x is None:
        return "–"
    return f"{x:,.0f}" if x >= 1000 else (f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}")


def fmt_hours(ms):
    if ms is None:
        return "–"
    h = ms / 3_600_000
    return f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h"


def fmt_rate(r):
    return f"FPR {r['fpr']:.1%}" if r["label"] == "benign" else f"recall {r['recall']:.2f}"


def markdown(res):
    rows, totals, info, unknown = res["rows"], res["totals"], res["alerts"], res["unknown_accounts"]
    cols = ["profile", "label", "accounts", "alerted", "acted upon", "FPR / recall",
            "median req before flag", "median tokens before flag", "median time to flag",
            "median req before action", "tokens served before detection", "alert kinds (accounts)",
            "target", "result"]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]

    def line(r, bold=False):
        b = "**" if bold else ""
        share = r.get("tokens_before_detection_share")
        kinds = ", ".join(f"{k}×{n}" for k, n in r.get("kinds", {}).items()) or "–"
        rate = fmt_rate(r)
        if r["profile"] == "harvest total":
            rate += f" (macro {r['recall_macro']:.2f})"
        cells = [
            f"{b}{r['profile']}{b}", r["label"], str(r["n"]), str(r["alerted"]), str(r["acted"]), rate,
            fmt_num(r.get("median_req")), fmt_num(r.get("median_tokens")),
            fmt_hours(r.get("median_time_to_flag_ms")), fmt_num(r.get("median_req_before_action")),
            "–" if share is None else f"{share:.1%}", kinds, r["target"],
            f"{b}{'PASS' if r['pass'] else 'FAIL'}{b}",
        ]
        return "| " + " | ".join(cells) + " |"

    for label in ("benign", "harvest"):
        out += [line(r) for r in rows if r["label"] == label]
        if label in totals:
            out.append(line(totals[label], bold=True))
    s = res["summary"]
    notes = [
        "",
        f"Rows: {s['rows_pass']} PASS, {s['rows_fail']} FAIL. "
        f"Alert lines scored: {info.get('lines', 0)} ({info.get('alerts', 0)} distinct ids), "
        f"skipped: {info.get('skipped', 0)}; accounts in alerts but not in labels: {len(unknown)}.",
        "Alerted: named in any alert line. Acted upon: named in a line whose action is "
        "strip/throttle/block with `enforced: true`. Requests/tokens before flag: the account's own "
        "records with ts ≤ its first flag time (medians over alerted accounts); before action: the same "
        "up to the first enforced action. Tokens served before detection: share of the profile's "
        "prompt+completion tokens served before each account's first flag (missed accounts in full).",
    ]
    fps = [a for r in rows if r["label"] == "benign" for a in r.get("alerted_accounts", [])]
    if fps:
        notes.append(f"Benign accounts alerted ({len(fps)}): " + ", ".join(fps[:40])
                     + (" …" if len(fps) > 40 else "") + ".")
    acted = [a for r in rows if r["label"] == "benign" for a in r.get("acted_accounts", [])]
    if acted:
        notes.append(f"Benign accounts acted upon ({len(acted)}): " + ", ".join(acted[:40])
                     + (" …" if len(acted) > 40 else "") + ".")
    missed = [a for r in rows if r["label"] != "benign" for a in r.get("missed_accounts", [])]
    if missed:
        notes.append(f"Missed harvesting accounts ({len(missed)}): " + ", ".join(missed[:40])
                     + (" …" if len(missed) > 40 else "") + ".")
        few = [a for r in rows if r["label"] != "benign" for a in r.get("missed_below_min", [])]
        if few:
            notes.append(f"Of these, sent fewer than {MIN_REQUESTS} requests in the whole split "
                         f"(the detector's `min_requests`, below which no account is scored) "
                         f"({len(few)}): " + ", ".join(few[:40]) + (" …" if len(few) > 40 else "") + ".")
    return "\n".join(out) + "\n" + "\n".join(notes) + "\n"


def summary_markdown(named):
    """named: [(name, score-json dict)] -> one table, a row per split."""
    cols = ["split", "benign alerted", "benign acted upon", "harvest recall (macro)",
            "harvest recall min (class)", "rows PASS / FAIL", "result"]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, res in named:
        s = res["summary"]
        rate = s["benign_alerted_rate"]
        ben = "–" if rate is None else f"{s['benign_alerted']} / {s['benign_n']} ({rate:.1%})"
        macro = "–" if s["harvest_recall_macro"] is None else f"{s['harvest_recall_macro']:.3f}"
        mn = ("–" if s["harvest_recall_min"] is None
              else f"{s['harvest_recall_min']:.2f} ({s['harvest_recall_min_class']})")
        out.append(f"| {name} | {ben} | {s['benign_acted']} | {macro} | {mn} | "
                   f"{s['rows_pass']} / {s['rows_fail']} | {'**PASS**' if s['pass'] else '**FAIL**'} |")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------
# Helpers for lofo.py and robustness.py: modified configs and backtest runs
# ----------------------------------------------------------------------------------------

DEFAULT_BANDS = [(0.5, "alert"), (0.7, "throttle"), (0.85, "block")]  # warden's, when none configured
_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?\s*(#.*)?$")


def _header_name(line):
    m = _HEADER.match(line)
    if not m:
        return None
    return ("[[" if line.lstrip().startswith("[[") else "[") + m.group(1).replace(" ", "")


def _table_end(lines, start):
    for j in range(start + 1, len(lines)):
        if _header_name(lines[j]) is not None:
            return j
    return len(lines)


def _drop_key(lines, start, end, key):
    """Removes `key = ...` (single- or multi-line array) from lines[start:end]; returns new end."""
    pat = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
    j = start
    while j < end:
        if pat.match(lines[j]):
            k = j
            if "[" in lines[j] and lines[j].count("[") > lines[j].count("]"):
                while k + 1 < end and "]" not in lines[k]:
                    k += 1
            del lines[j:k + 1]
            end -= k + 1 - j
        else:
            j += 1
    return end


def edit_config(text, *, disable_families=None, alert_min_score=None, cluster_min_score=None):
    """A copy of a detector config (TOML text) with the given knobs set.

    disable_families / cluster_min_score: inserted right after the `[detection]` header line
    (an existing line for the same key in [detection] is removed). alert_min_score: replaces the
    `min_score` of the `[[detection.actions]]` entry whose action is "alert" (if the config has no
    `[[detection.actions]]`, warden's default bands are written out with that alert threshold).
    The result is parsed back and checked; ValueError if the config cannot be edited that way.
    """
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    hdr = next((i for i, l in enumerate(lines) if _header_name(l) == "[detection"), None)
    if hdr is None:
        raise ValueError("config has no `[detection]` header line")
    end = _table_end(lines, hdr)
    insert = []
    if disable_families is not None:
        end = _drop_key(lines, hdr + 1, end, "disable_families")
        insert.append(f"disable_families = {json.dumps(list(disable_families))}\n")
    if cluster_min_score is not None:
        end = _drop_key(lines, hdr + 1, end, "cluster_min_score")
        insert.append(f"cluster_min_score = {cluster_min_score!r}\n")
    if alert_min_score is not None:
        blocks = [i for i, l in enumerate(lines) if _header_name(l) == "[[detection.actions"]
        done = False
        for b in blocks:
            bend = _table_end(lines, b)
            body = "".join(lines[b + 1:bend])
            if not re.search(r"^\s*action\s*=\s*[\"']alert[\"']", body, re.M):
                continue
            for j in range(b + 1, bend):
                m = re.match(r"^(\s*min_score\s*=\s*)([^#\n]*?)(\s*(#.*)?\n)$", lines[j])
                if m:
                    lines[j] = f"{m.group(1)}{alert_min_score!r}{m.group(3)}"
                    done = True
            if not done:
                raise ValueError("the alert band in [[detection.actions]] has no min_score line")
            break
        if not done:
            if blocks:
                raise ValueError("config has [[detection.actions]] but none with action = \"alert\"")
            lines.append("\n# written by the eval harness: warden's default bands, alert threshold changed\n")
            for ms, action in DEFAULT_BANDS:
                ms = alert_min_score if action == "alert" else ms
                lines.append(f"[[detection.actions]]\nmin_score = {ms!r}\naction = \"{action}\"\n")
    lines[hdr + 1:hdr + 1] = insert
    out = "".join(lines)
    try:
        det = tomllib.loads(out).get("detection", {})
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"edited config is not valid TOML: {e}") from e
    if disable_families is not None and det.get("disable_families") != list(disable_families):
        raise ValueError("edited config: disable_families did not come out as written")
    if cluster_min_score is not None and det.get("cluster_min_score") != cluster_min_score:
        raise ValueError("edited config: cluster_min_score did not come out as written")
    if alert_min_score is not None:
        bands = [b for b in det.get("actions", []) if b.get("action") == "alert"]
        if [b.get("min_score") for b in bands] != [alert_min_score]:
            raise ValueError("edited config: the alert band's min_score did not come out as written")
    return out


def read_config(path):
    need_file(path, "detector config")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: not valid TOML: {e}") from e
    return text


def check_bin(path):
    if not path or not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise InputError(f"warden binary {path!r} not found or not executable (set WARDEN_BIN / --bin)")


class BacktestError(Exception):
    pass


def run_backtest(bin_path, config_path, traffic_path, alerts_path, log_path=None):
    """`warden backtest --config CONFIG TRAFFIC > ALERTS 2> LOG`; returns seconds. BacktestError on failure."""
    log_path = log_path or alerts_path + ".log"
    t0 = time.monotonic()
    with open(alerts_path, "wb") as out, open(log_path, "wb") as err:
        rc = subprocess.run([bin_path, "backtest", "--config", config_path, traffic_path],
                            stdout=out, stderr=err).returncode
    secs = time.monotonic() - t0
    if rc != 0:
        try:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                tail = [l.rstrip() for l in f.readlines()[-6:] if l.strip()]
        except OSError:
            tail = []
        raise BacktestError(f"warden backtest exited {rc} (config {config_path}, log {log_path})"
                            + (": " + " / ".join(tail) if tail else ""))
    return secs


# ----------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description="Score backtest alerts against labels.")
    ap.add_argument("--labels")
    ap.add_argument("--traffic")
    ap.add_argument("--alerts")
    ap.add_argument("--markdown", help="also write the table to this file")
    ap.add_argument("--json", help="also write machine-readable results to this file")
    ap.add_argument("--strict", action="store_true", help="exit 1 if any row fails its target")
    ap.add_argument("--summary", nargs="+", metavar="NAME=SCORE.json",
                    help="print one summary table over score.json files written by --json")
    args = ap.parse_args(argv)
    try:
        if args.summary:
            named = []
            for item in args.summary:
                name, sep, path = item.partition("=")
                if not sep:
                    raise InputError(f"--summary wants NAME=PATH, got {item!r}")
                need_file(path, "score json")
                with open(path, encoding="utf-8") as f:
                    named.append((name, json.load(f)))
            sys.stdout.write(summary_markdown(named))
            return 0
        missing = [n for n in ("labels", "traffic", "alerts") if not getattr(args, n)]
        if missing:
            ap.error("the following arguments are required: " + ", ".join("--" + m for m in missing))
        res = score_files(args.labels, args.traffic, args.alerts)
    except (InputError, ValueError, OSError) as e:
        print(f"score.py: error: {e}", file=sys.stderr)
        return 2
    if res["unknown_accounts"]:
        u = res["unknown_accounts"]
        warn(f"{len(u)} account(s) in alerts are not in labels: {', '.join(u[:10])}")
    md = markdown(res)
    sys.stdout.write(md)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(md)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1)
    return 1 if (args.strict and not res["summary"]["pass"]) else 0


if __name__ == "__main__":
    sys.exit(main())
