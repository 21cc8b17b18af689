#!/usr/bin/env python3
"""Family B: a second, independently designed synthetic-traffic generator for warden's
distillation / extraction detector.

    python3 eval/gen_b.py --seed S --days D --out DIR [--start 2026-11-01T00:00:00Z] [--scale 1.0]

Writes DIR/traffic.jsonl (audit records in warden's backtest format, one file sorted by
ts), DIR/labels.json ({account: {profile, label[, cluster]}}), DIR/stats.md (per-profile
table) and DIR/meta.json. Python 3.11, standard library only, deterministic per --seed
(every account owns a random.Random seeded from the master stream; nothing iterates a set).

Why a second family
-------------------
A detector tuned on one generator learns that generator's accidents (its rates, its
templates, its subnets, its cadence law). Family B shares only the OUTPUT FORMAT with
family A (eval/generate.py); it does not import it and was designed from a different
starting point:

* Arrival models. Human activity is a non-homogeneous Poisson process (Lewis-Shedler
  thinning) whose intensity is a per-account sum of Gaussian bumps over the local hour
  (timezone drawn from a continuous offset range incl. half hours), times a weekday
  factor (weekends, computed from the real calendar date), times a per-day log-normal
  multiplier (some days busier than others, some days off). Conversations are
  sessions: session starts are NHPP, turns within a session are separated by modelled
  reading time (reply length) + typing time (next message length) + log-normal noise.
  Bursty users (developers, evasive harvesters, coding agents) use a Hawkes process in
  its cluster (branching) form: NHPP immigrants, each spawning Poisson(eta) children
  at exponential delays. Per-user daily volumes are heavy-tailed (log-normal/Pareto,
  clipped to the class range).
* Machine cadence is one of six laws, drawn per account: fixed interval with Gaussian
  jitter (0.3-20 %), Poisson, a pool of k concurrent workers (k = 2-16) with log-normal
  cycle times, synchronous batches of B requests, a token bucket (shifted exponential
  gaps), and an on/off Markov-modulated source. On top: an uptime pattern (round the
  clock with random outages, a daily window of 6-20 h, or on/off shifts) and start days.
* Knobs are drawn per account from wide ranges: volume, cadence law, cover-traffic share,
  IP strategy (fixed cloud, rotating cloud pool, home ISP with DHCP churn, residential
  proxy, mobile CGNAT), template / paraphrase count, 1-3 models, max_tokens (none to
  32k), temperature, stream share, stream_options, user agents (generated with version
  numbers in ranges family A does not use).
* Content. Prompts come from all rows of eval/corpora/*.jsonl (mixed, shuffled per
  account) plus text built compositionally from this file's own grammars: broad
  instructions (25 frames x ~1900 subjects x 12 audiences), word problems with fresh numbers,
  coding tasks, cover chat (everyday requests + follow-ups), product texts, support
  tickets, reviews, invoices/e-mails/resumes, help-centre passages, agent tool outputs.
  Reasoning elicitation is a grammar (opener x demand x tail, ~790 English variants)
  plus 16 hand-written non-English phrasings (it, nl, pl, tr, vi, id, ar, hi, zh-Hant,
  sv, es, ja, de, pt, ko, fr), placed as prefix, suffix, both, or a format block.
* Endpoints: /v1/chat/completions, /v1/completions (prompt) and /v1/responses (input as
  string or message list, instructions, reasoning {effort, summary}, max_output_tokens).
* A new model ("gpt-5.1-preview"-like) is released on a day >= 1; it never appears before
  its release. model_switch accounts move onto it; some benign users and developers
  also try it after release (a look-alike).

Classes (labels.json "profile")
-------------------------------
harvest: instruction_harvester, reasoning_harvester, logprob_harvester,
templated_harvester, human_paced_harvester (150-600/day, diurnal NHPP, light wrappers,
new IP per session from one ISP), system_prompt_reasoning (CoT demand in a >= 200-char
fixed system prompt), responses_harvester, completions_harvester, soft_label_human
(logprobs at 30-150/day), model_switch (1-3 normal days, then volume on a new model),
hydra_shared (1-2 campaigns of 30-50 accounts, one shared reasoning template, 4 subnets,
waves every ~8-13 min, ~50 % cover, 20-60/day each), hydra_paraphrased (30-50 accounts,
own word-level paraphrase each, own residential /24 per day, one shared client
fingerprint), round_robin (one orchestrator, ~900/day over ~100 accounts, fresh
residential IP per request, dataset prompts, ~30 % cover, strictly sequential), evasive
(jitter, multi-turn padding, 2-3 rotating IPs).
benign: chat_user, heavy_chat_user, student, developer, translation_product,
classification_product (some with logprobs for confidence), extraction_product,
rag_product, batch_job (nightly, includes a generative "write a product description"
kind), coding_agent (tool-calling conversations), company_nat (20-60 employees behind one
NAT IP with one internal UA and, often, one shared system prompt: not a campaign).
"cluster" is set only for hydra_shared, hydra_paraphrased and round_robin.

Records: prompt_tokens ~ UTF-8 bytes/4 + 4 per message (+ tool schemas), completion
tokens drawn per class and capped by max_tokens (x n), completion_text is filler in a
per-class shape capped at 600 chars (completion_truncated: true beyond), ~0.1-1.5 %
refused (429 rate_limited / 502 upstream_error, usage null, ending "refused").
--scale multiplies the daily volume of machine-paced and product accounts (human-paced
classes keep their defining ranges). Unlike family A, no accounts.json is written.

Typical size at --days 5, --scale 1: 230k-290k records, 450-610 MB, 25-40 s on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import time
from collections import Counter, defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS_DIR = os.path.join(HERE, "corpora")

SEC = 1000
MIN = 60 * SEC
HOUR = 60 * MIN
DAY = 24 * HOUR
P_CHAT = "/v1/chat/completions"
P_LEGACY = "/v1/completions"
P_RESP = "/v1/responses"
TEXT_CAP = 600

BENIGN = ["chat_user", "heavy_chat_user", "student", "developer", "translation_product",
          "classification_product", "extraction_product", "rag_product", "batch_job",
          "coding_agent", "company_nat"]
HARVEST = ["instruction_harvester", "reasoning_harvester", "logprob_harvester",
           "templated_harvester", "human_paced_harvester", "system_prompt_reasoning",
           "responses_harvester", "completions_harvester", "soft_label_human", "model_switch",
           "hydra_shared", "hydra_paraphrased", "round_robin", "evasive"]


# ======================================================================================
# Small numeric helpers
# ======================================================================================

_ISO_SEC = {}


def iso_ms(ms: int) -> str:
    sec, milli = divmod(int(ms), 1000)
    head = _ISO_SEC.get(sec)
    if head is None:
        if len(_ISO_SEC) > 200000:
            _ISO_SEC.clear()
        head = _ISO_SEC[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return head + ".%03dZ" % milli


ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


def parse_start(s: str) -> int:
    from datetime import datetime
    return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() * 1000)


def ntok(text: str) -> int:
    return (len(text.encode("utf-8")) + 3) // 4 if text else 0


def logu(rng, lo, hi):
    """Log-uniform draw in [lo, hi]."""
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def lnorm(rng, median, sigma):
    return median * math.exp(rng.gauss(0.0, sigma))


def clip(x, lo, hi):
    return lo if x < lo else hi if x > hi else x


def pois(rng, lam):
    """Poisson count (Knuth for small means, normal approximation above)."""
    if lam <= 0:
        return 0
    if lam > 40:
        return max(0, int(rng.gauss(lam, math.sqrt(lam)) + 0.5))
    L, k, p = math.exp(-lam), 0, rng.random()
    while p > L:
        k += 1
        p *= rng.random()
    return k


def heavy_daily(rng, lo, hi, median, sigma=0.7):
    """Heavy-tailed per-account daily volume, clipped to the class range."""
    return clip(lnorm(rng, median, sigma), lo, hi)


def hexs(rng, n):
    return f"{rng.getrandbits(4 * n):0{n}x}"


def weekday_of(ms, tz_ms):
    """Mon=0 .. Sun=6 of the local calendar day (1970-01-01 was a Thursday)."""
    return (int(ms + tz_ms) // DAY + 3) % 7


# ======================================================================================
# Arrival models
# ======================================================================================

class Rhythm:
    """Relative activity intensity over local time: a floor plus Gaussian bumps over the
    hour of day, a weekend factor and a per-local-day log-normal multiplier (with days off).
    Mean over an ordinary weekday is 1, so rate = per_day/DAY * value(t)."""

    def __init__(self, rng, tz_hours, bumps, floor=0.02, weekend=1.0, day_sigma=0.3,
                 day_off=0.0):
        self.rng = rng
        self.tz_ms = int(tz_hours * HOUR)
        raw = []
        for q in range(96):
            h = (q + 0.5) / 4.0
            v = floor
            for centre, width, amp in bumps:
                d = abs(h - centre) % 24.0
                d = min(d, 24.0 - d)
                v += amp * math.exp(-0.5 * (d / width) ** 2)
            raw.append(v)
        mean = sum(raw) / len(raw)
        self.table = [v / mean for v in raw]
        self.weekend = weekend
        self.day_sigma = day_sigma
        self.day_off = day_off
        self.daymult = {}
        self.cap_mult = math.exp(2.5 * day_sigma)
        self.peak = max(self.table) * max(1.0, weekend) * self.cap_mult

    def day_factor(self, t):
        local = int(t) + self.tz_ms
        d = local // DAY
        m = self.daymult.get(d)
        if m is None:
            if self.rng.random() < self.day_off:
                m = 0.0
            else:
                m = min(self.cap_mult, math.exp(self.rng.gauss(0, self.day_sigma)))
            if weekday_of(t, self.tz_ms) >= 5:
                m *= self.weekend
            self.daymult[d] = m
        return m

    def value(self, t):
        local = int(t) + self.tz_ms
        return self.table[(local % DAY) // (15 * MIN)] * self.day_factor(t)


def nhpp(rng, t0, t1, per_day, rhythm):
    """Non-homogeneous Poisson arrivals on [t0, t1) by Lewis-Shedler thinning."""
    out = []
    if per_day <= 0 or t1 <= t0:
        return out
    base = per_day / DAY
    lam_max = base * rhythm.peak
    t = float(t0)
    while True:
        t += rng.expovariate(lam_max)
        if t >= t1:
            return out
        if rng.random() * lam_max <= base * rhythm.value(t):
            out.append(int(t))


def hawkes(rng, immigrants, t1, eta, mean_delay_ms, max_events=100000):
    """Self-exciting (Hawkes) process in branching form: every event begets Poisson(eta)
    offspring at exponential delays (eta < 1 keeps it finite)."""
    events = list(immigrants)
    stack = list(immigrants)
    while stack and len(events) < max_events:
        parent = stack.pop()
        for _ in range(pois(rng, eta)):
            c = parent + int(rng.expovariate(1.0 / mean_delay_ms)) + 200
            if c < t1:
                events.append(c)
                stack.append(c)
    events.sort()
    return events


CADENCE_LAWS = ["fixed", "poisson", "workers", "batch", "bucket", "onoff"]


class Cadence:
    """A machine's request clock. Drawn per account; `times(runs, per_hour)` fills the
    uptime intervals with request times following the law."""

    def __init__(self, rng, law=None):
        self.rng = rng
        self.law = law or rng.choice(CADENCE_LAWS)
        self.jitter = logu(rng, 0.003, 0.2)
        self.workers = rng.randint(2, 16)
        self.worker_sigma = rng.uniform(0.15, 0.7)
        self.batch = rng.randint(3, 24)
        self.bucket_floor = rng.uniform(0.3, 0.85)
        self.on_med = logu(rng, 15 * MIN, 3 * HOUR)
        self.off_med = logu(rng, 3 * MIN, 90 * MIN)

    def times(self, runs, per_hour):
        rng, out = self.rng, []
        if per_hour <= 0:
            return out
        gap = HOUR / per_hour
        for s, e in runs:
            law = self.law
            if law == "fixed":
                t = s + rng.random() * gap
                while t < e:
                    out.append(int(t))
                    t += gap * max(0.05, 1.0 + rng.gauss(0, self.jitter))
            elif law == "poisson":
                t = s + rng.expovariate(1 / gap)
                while t < e:
                    out.append(int(t))
                    t += rng.expovariate(1 / gap)
            elif law == "workers":
                cyc = gap * self.workers
                for _ in range(self.workers):
                    t = s + rng.random() * cyc
                    while t < e:
                        out.append(int(t))
                        t += cyc * math.exp(rng.gauss(-0.5 * self.worker_sigma ** 2, self.worker_sigma))
            elif law == "batch":
                period = gap * self.batch
                t = s + rng.random() * period
                while t < e:
                    for _ in range(self.batch):
                        u = t + rng.random() * min(4000, period * 0.3)
                        if u < e:
                            out.append(int(u))
                    t += period * max(0.1, 1 + rng.gauss(0, 0.05))
            elif law == "bucket":
                floor = gap * self.bucket_floor
                t = s + rng.random() * gap
                while t < e:
                    out.append(int(t))
                    t += floor + rng.expovariate(1 / max(1.0, gap - floor))
            else:  # onoff: Markov-modulated Poisson, ON rate raised to keep the mean
                duty = self.on_med / (self.on_med + self.off_med)
                g_on = gap * duty
                t = s
                on = rng.random() < duty
                while t < e:
                    if on:
                        seg_end = min(e, t + lnorm(rng, self.on_med, 0.5))
                        u = t + rng.expovariate(1 / g_on)
                        while u < seg_end:
                            out.append(int(u))
                            u += rng.expovariate(1 / g_on)
                        t = seg_end
                    else:
                        t += lnorm(rng, self.off_med, 0.6)
                    on = not on
        out.sort()
        return out


def uptime_runs(rng, t0, t1, mode=None):
    """Intervals a machine client is running, and its nominal hours per day."""
    mode = mode or rng.choice(["always", "always", "window", "shifts"])
    runs = []
    if mode == "always":
        outages = []
        t = t0
        while t < t1:
            t += rng.expovariate(1 / logu(rng, 4 * HOUR, 40 * HOUR))
            outages.append((t, t + lnorm(rng, 25 * MIN, 1.0)))
        cur = t0
        for a, b in outages:
            if a >= t1:
                break
            if a > cur:
                runs.append((cur, a))
            cur = max(cur, b)
        if cur < t1:
            runs.append((cur, t1))
        return runs, 24.0
    if mode == "window":
        length = rng.uniform(6, 20)
        begin = rng.uniform(0, 24)
        d0 = (t0 // DAY) * DAY
        d = d0 - DAY
        while d < t1:
            s = d + int(begin * HOUR) + int(rng.gauss(0, 10) * MIN)
            e = s + int(length * HOUR * rng.uniform(0.85, 1.1))
            s, e = max(s, t0), min(e, t1)
            if e > s:
                runs.append((s, e))
            d += DAY
        return runs, length
    # shifts: several runs of 1-6 h a day at random times
    d = (t0 // DAY) * DAY
    per = rng.randint(2, 4)
    total = 0.0
    while d < t1:
        for _ in range(per):
            L = rng.uniform(1, 6)
            total += L
            s = d + int(rng.uniform(0, 24 - L) * HOUR)
            e = s + int(L * HOUR)
            s, e = max(s, t0), min(e, t1)
            if e > s:
                runs.append((s, e))
        d += DAY
    runs.sort()
    merged = []
    for s, e in runs:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    ndays = max(1, (t1 - t0) / DAY)
    return merged, min(24.0, total / ndays)


# ======================================================================================
# Networks, clients, models
# ======================================================================================

_NET = random.Random(90210)  # fixed: the internet's address plan does not depend on --seed
RESID_OCTETS = [12, 14, 27, 36, 39, 42, 58, 60, 61, 70, 72, 74, 80, 84, 89, 97, 101, 110,
                112, 113, 114, 115, 117, 119, 122, 124, 180, 182, 183, 184, 191, 197, 203,
                210, 212, 213, 217, 218, 221, 222]
ISPS = []
for _i in range(22):
    ISPS.append([f"{_NET.choice(RESID_OCTETS)}.{_NET.randrange(256)}" for _ in range(_NET.randint(2, 6))])
MOBILE_POOLS = [["172.56", "172.58"], ["107.77", "107.80"], ["166.170", "166.171"], ["39.40", "39.42"]]
CLOUD_PROVIDERS = [
    ["134.209", "146.190", "157.245", "162.243", "170.64", "206.189"],
    ["130.211", "146.{}", "23.{}"],
    ["15.{}", "57.{}"],
    ["78.46", "85.10", "37.59", "46.101"],
    ["102.133", "192.241", "198.199", "209.97", "185.199"],
    ["31.220", "63.141", "128.199", "143.244"],
]
BUSINESS_OCTETS = [62, 81, 93, 141, 145, 150, 193, 194, 195, 212]


def _fill16(p, rng):
    return p.format(rng.randrange(256)) if "{}" in p else p


def cloud_ip(rng, provider=None):
    prov = provider if provider is not None else rng.choice(CLOUD_PROVIDERS)
    p = _fill16(rng.choice(prov), rng)
    return f"{p}.{rng.randrange(256)}.{rng.randrange(2, 254)}"


def cloud_subnet(rng):
    prov = rng.choice(CLOUD_PROVIDERS)
    return f"{_fill16(rng.choice(prov), rng)}.{rng.randrange(256)}"


def isp_subnet(rng, isp=None):
    isp = isp if isp is not None else rng.choice(ISPS)
    return f"{rng.choice(isp)}.{rng.randrange(256)}"


def resid_ip(rng):
    """A random address in a random residential /24 (proxy-pool style)."""
    return f"{isp_subnet(rng)}.{rng.randrange(2, 254)}"


def mobile_ip(rng, pool=None):
    pool = pool or rng.choice(MOBILE_POOLS)
    # carriers' CGNAT egress: few /24s shared by many subscribers
    return f"{rng.choice(pool)}.{rng.randrange(8)}.{rng.randrange(2, 254)}"


class HomeNet:
    """A person's addresses: a home line on one ISP (DHCP lease churn), optionally a phone
    on a mobile carrier and a workplace."""

    def __init__(self, rng, n_places=None):
        self.rng = rng
        self.isp = rng.choice(ISPS)
        self.home = f"{isp_subnet(rng, self.isp)}.{rng.randrange(2, 254)}"
        self.churn = rng.uniform(0.0, 0.3)
        self.places = n_places if n_places is not None else rng.choices([1, 2, 3, 4], [4, 4, 2, 1])[0]
        self.mobile_pool = rng.choice(MOBILE_POOLS)
        self.work = f"{rng.choice(BUSINESS_OCTETS)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(2, 254)}"
        self.extra = resid_ip(rng)
        self.mobile = mobile_ip(rng, self.mobile_pool)
        self.day = None
        self.last_t, self.last_ip = -10 ** 15, self.home

    def ip(self, t):
        """The address for a request at t: the place is kept for ~30-minute stretches."""
        rng = self.rng
        d = int(t) // DAY
        if d != self.day:
            self.day = d
            if rng.random() < self.churn:
                self.home = f"{isp_subnet(rng, self.isp)}.{rng.randrange(2, 254)}"
            if rng.random() < 0.4:
                self.mobile = mobile_ip(rng, self.mobile_pool)
        if self.places == 1:
            return self.home
        if t - self.last_t < 30 * MIN:
            self.last_t = t
            return self.last_ip
        r = rng.random()
        ip = self.home
        if r < 0.65:
            ip = self.home
        elif r < 0.85:
            ip = self.mobile
        elif self.places >= 3 and r < 0.95:
            ip = self.work
        elif self.places >= 4:
            ip = self.extra
        self.last_t, self.last_ip = t, ip
        return ip


def ua_sdk(rng):
    k = rng.random()
    if k < 0.45:
        return f"OpenAI/Python 1.{rng.randint(61, 109)}.{rng.randint(0, 6)}"
    if k < 0.65:
        return f"OpenAI/JS 4.{rng.randint(79, 104)}.{rng.randint(0, 4)}"
    if k < 0.8:
        return f"OpenAI/NodeJS/5.{rng.randint(0, 12)}.{rng.randint(0, 3)}"
    if k < 0.9:
        return f"litellm/1.{rng.randint(48, 74)}.{rng.randint(0, 12)}"
    return f"openai-dotnet/2.{rng.randint(0, 2)}.{rng.randint(0, 3)}"


def ua_server(rng):
    return rng.choice([
        lambda: f"python-requests/2.{rng.randint(25, 29)}.{rng.randint(0, 3)}",
        lambda: f"aiohttp/3.{rng.randint(8, 9)}.{rng.randint(1, 5)}",
        lambda: f"python-httpx/0.2{rng.randint(3, 6)}.{rng.randint(0, 3)}",
        lambda: f"axios/1.{rng.randint(6, 8)}.{rng.randint(0, 9)}",
        lambda: f"node-fetch/3.3.{rng.randint(0, 2)}",
        lambda: f"okhttp/4.{rng.choice([9, 10, 11])}.{rng.randint(0, 3)}",
        lambda: f"Java-http-client/{rng.choice([17, 21, 23])}.0.{rng.randint(1, 6)}",
        lambda: f"reqwest/0.12.{rng.randint(2, 12)}",
        lambda: f"Apache-HttpClient/5.{rng.randint(2, 4)}.{rng.randint(1, 3)} (Java/17.0.{rng.randint(8, 13)})",
        lambda: f"Faraday v2.{rng.randint(7, 12)}.{rng.randint(0, 3)}",
        lambda: f"GuzzleHttp/7.{rng.randint(7, 9)}",
        lambda: ua_sdk(rng),
    ])()


def ua_dev(rng):
    return rng.choice([
        lambda: f"curl/7.{rng.randint(74, 88)}.{rng.randint(0, 1)}",
        lambda: f"curl/8.{rng.randint(6, 10)}.{rng.randint(0, 1)}",
        lambda: f"HTTPie/3.2.{rng.randint(1, 4)}",
        lambda: f"PostmanRuntime/7.3{rng.randint(2, 9)}.{rng.randint(0, 3)}",
        lambda: ua_sdk(rng),
        lambda: ua_sdk(rng),
    ])()


def ua_app(rng):
    """Desktop / mobile chat apps people point at their own key."""
    return rng.choice([
        lambda: (f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
                 f"chatbox/1.{rng.randint(6, 11)}.{rng.randint(0, 9)} Chrome/1{rng.randint(24, 33)}.0.0.0 "
                 f"Electron/3{rng.randint(0, 4)}.0.{rng.randint(0, 9)} Safari/537.36"),
        lambda: f"Dart/3.{rng.randint(3, 6)} (dart:io)",
        lambda: f"BoltAI/1.{rng.randint(28, 35)}.{rng.randint(0, 6)} (Darwin)",
        lambda: f"TypingMindApp/{rng.randint(5, 9)}.{rng.randint(0, 9)}",
        lambda: f"Raycast/1.{rng.randint(80, 92)}.{rng.randint(0, 3)}",
        lambda: f"MindMac/1.9.{rng.randint(10, 25)} CFNetwork/1568.{rng.randint(100, 300)}.1 Darwin/24.0.0",
        lambda: ua_sdk(rng),
        lambda: ua_sdk(rng),
    ])()


CHAT_MODELS = ["gpt-4o-mini-2024-07-18", "gpt-4o-2024-11-20", "gpt-4.1-mini-2025-04-14", "gpt-5-mini",
               "gpt-5", "chatgpt-4o-latest", "gpt-4.1-nano-2025-04-14", "gpt-5-nano"]
STRONG_MODELS = ["gpt-4o-2024-11-20", "gpt-4.1-2025-04-14", "gpt-5", "chatgpt-4o-latest", "gpt-5-mini"]
REASONING_MODELS = ["o1", "o3-2025-04-16", "o4-mini-2025-04-16", "gpt-5", "o3-mini-2025-01-31", "gpt-5-mini"]
CHEAP_MODELS = ["gpt-4o-mini-2024-07-18", "gpt-4.1-nano-2025-04-14", "gpt-5-nano", "gpt-4.1-mini-2025-04-14"]
LEGACY_MODELS = ["gpt-3.5-turbo-instruct-0914", "davinci-002", "babbage-002"]
NEW_MODEL_NAMES = ["gpt-5.1-preview", "o5-mini-preview", "gpt-5.1-chat-preview", "gpt-5.2-preview-1120"]
MS_PER_TOKEN = {"nano": 5, "mini": 8, "o1": 30, "o3": 22, "o4": 12, "babbage": 4, "davinci": 9}


def is_reasoning_model(m):
    return m.startswith("o") or m.startswith("gpt-5")


def ms_per_token(model):
    for k, v in MS_PER_TOKEN.items():
        if k in model:
            return v
    return 14


# ======================================================================================
# Content: corpora + this file's own grammars
# ======================================================================================

def _load(name):
    with open(os.path.join(CORPUS_DIR, name), encoding="utf-8") as f:
        return [json.loads(x) for x in f if x.strip()]


class Stream:
    """Endless shuffled walk over a list; `epoch` counts completed passes."""

    def __init__(self, rng, items):
        self.rng, self.items = rng, list(items)
        self.pos, self.epoch = len(self.items), -1
        self.perm = []

    def next(self):
        if self.pos >= len(self.items):
            self.perm = list(range(len(self.items)))
            self.rng.shuffle(self.perm)
            self.pos, self.epoch = 0, self.epoch + 1
        self.pos += 1
        return self.items[self.perm[self.pos - 1]]


SCIENCE = ["plate tectonics", "the immune system", "black holes", "CRISPR gene editing", "photosynthesis",
           "quantum entanglement", "the water cycle", "antibiotic resistance", "natural selection",
           "nuclear fusion", "ocean acidification", "the human gut microbiome", "superconductivity",
           "the Doppler effect", "protein folding", "volcanic eruptions", "the carbon cycle", "dark matter",
           "mRNA vaccines", "sleep and memory consolidation", "neuroplasticity", "exoplanet detection",
           "the greenhouse effect", "entropy", "the periodic table", "plasma physics", "coral bleaching",
           "stem cells", "radioactive decay", "the origin of the Moon", "bird migration", "prions"]
HISTORY = ["the fall of the Western Roman Empire", "the Meiji Restoration", "the Silk Road", "the printing press",
           "the Haitian Revolution", "the Cold War", "the decline of the Ottoman Empire",
           "the Industrial Revolution in Britain", "the Mali Empire", "the Marshall Plan", "the Byzantine Empire",
           "the Peace of Westphalia", "the Apollo program", "the partition of India", "the Hanseatic League",
           "the Black Death", "the Reformation", "the Mongol conquests", "the abolition of slavery in Brazil",
           "the Weimar Republic", "the Inca road system", "the Congress of Vienna", "the Taiping Rebellion",
           "decolonisation in Africa", "the Spanish flu of 1918", "the Harlem Renaissance"]
TECH = ["public-key cryptography", "transformer neural networks", "garbage collection", "TCP congestion control",
        "B-tree indexes", "container orchestration", "compiler intermediate representations",
        "the Raft consensus algorithm", "GPU architecture", "content delivery networks", "OAuth 2.0",
        "vector databases", "event sourcing", "memory-safe systems programming", "zero-knowledge proofs",
        "DNS", "just-in-time compilation", "CRDTs", "the CAP theorem", "reinforcement learning from feedback",
        "error-correcting codes", "lithium-ion batteries", "RISC-V", "WebAssembly", "differential privacy",
        "satellite navigation", "bloom filters", "load balancing", "blockchain consensus", "speech recognition"]
SOCIETY = ["inflation targeting", "comparative advantage", "universal basic income", "the tragedy of the commons",
           "behavioral economics", "supply chain resilience", "microfinance", "carbon pricing",
           "housing affordability", "the gig economy", "auction design", "urbanisation", "minimum wage policy",
           "central bank independence", "the welfare state", "proportional representation", "antitrust law",
           "remote work", "demographic ageing", "public health campaigns", "open-source communities",
           "participatory budgeting", "trade tariffs", "the attention economy"]
HUMANITIES = ["Impressionist painting", "the hero's journey", "Stoic philosophy", "Kant's categorical imperative",
              "jazz improvisation", "Gothic architecture", "haiku", "the Bauhaus", "Shakespeare's tragedies",
              "utilitarianism", "existentialism", "film noir", "magical realism", "the sonnet form",
              "Confucian ethics", "minimalist music", "Byzantine icons", "the epistemology of testimony",
              "free will", "the philosophy of mathematics", "opera seria", "street photography"]
PRACTICAL = ["sourdough baking", "personal budgeting", "marathon training", "composting", "salary negotiation",
             "time management in remote teams", "learning a language as an adult", "home solar panels",
             "first aid for burns", "public speaking", "beekeeping", "container gardening", "touch typing",
             "job interviews", "home networking", "indoor climbing", "meal prepping", "knife sharpening"]
COUNTRIES = ["Japan", "Brazil", "Nigeria", "Norway", "Indonesia", "Peru", "Morocco", "Vietnam", "Poland",
             "Kenya", "Chile", "New Zealand", "Iran", "Portugal", "Mongolia", "Ghana", "Canada", "Georgia",
             "Bangladesh", "Iceland", "Mexico", "Egypt", "Finland", "the Philippines", "Ethiopia", "Uruguay"]
COUNTRY_FACETS = ["the economy of {c}", "the political system of {c}", "the cuisine of {c}",
                  "the geography of {c}", "the modern history of {c}", "education in {c}",
                  "the literature of {c}", "energy policy in {c}", "the languages of {c}", "tourism in {c}"]
ANIMALS = ["octopuses", "honeybees", "wolves", "tardigrades", "elephants", "crows", "sharks", "bats",
           "axolotls", "penguins", "ants", "whales", "chameleons", "salmon", "owls", "lichens"]
ANIMAL_FACETS = ["the behaviour of {a}", "how {a} communicate", "the evolution of {a}",
                 "the ecology of {a}", "threats facing {a}"]
ASPECTS = ["the history of {s}", "the future of {s}", "common misconceptions about {s}",
           "the mathematics behind {s}", "ethical debates around {s}", "the economics of {s}",
           "key experiments in {s}", "how {s} is taught", "recent advances in {s}", "{s}"]
AUDIENCES = ["a curious high-school student", "a busy executive", "a first-year university student",
             "a retiree with no technical background", "an experienced software engineer", "a ten-year-old",
             "a policy adviser", "a graduate seminar", "a journalist on a deadline", "a nurse",
             "someone learning English", "a small-business owner"]

BASE_SUBJECTS = SCIENCE + HISTORY + TECH + SOCIETY + HUMANITIES + PRACTICAL
SUBJECTS = sorted(set(
    [a.format(s=s) for s in BASE_SUBJECTS for a in ASPECTS]
    + [f.format(c=c) for c in COUNTRIES for f in COUNTRY_FACETS]
    + [f.format(a=a) for a in ANIMALS for f in ANIMAL_FACETS]))

BROAD_FRAMES = [
    "Write a comprehensive, well-structured explainer on {s} for {aud}.",
    "Explain {s} from first principles. Cover the key mechanisms, typical misconceptions and open questions.",
    "Give me an in-depth overview of {s}: where it came from, how it works today, and where it is heading.",
    "Create a detailed study guide on {s} with definitions, worked examples and {n} practice questions.",
    "Write a {n}-paragraph essay about {s}.",
    "Describe {s} to {aud}, using analogies and concrete examples.",
    "Draft a lecture on {s} for a {len} session, with full talking points for each section.",
    "List {n} important facts about {s} and explain why each one matters.",
    "Compare {s} with {s2}. Where do they overlap and where do they differ?",
    "Write an FAQ with {n} questions and thorough answers about {s}.",
    "Summarize what experts currently understand about {s}, including where they disagree.",
    "Write a podcast script of about {w} words that tells the story of {s}.",
    "Design a one-week curriculum that teaches {s} to {aud}.",
    "What does a beginner need to know about {s}? Write a complete primer.",
    "Produce a glossary of {n} key terms related to {s}, with a short paragraph for each.",
    "Write a detailed case study that illustrates {s}.",
    "What are the causes and consequences of {s}? Be thorough.",
    "Generate {n} thoughtful discussion questions about {s}, each with a model answer.",
    "Critically evaluate the usual claims made about {s}.",
    "Teach me {s}. Assume I know nothing and go deep.",
    "I'm preparing for an exam. Explain everything important about {s}.",
    "Write a long-form article on {s} with headings, examples and a conclusion.",
    "How would you explain {s} to {aud}? Give the full explanation, not an outline.",
    "Tell me about {s}.",
    "Give a thorough answer: what is {s} and why does it matter?",
]
CODE_LANGS = ["Python", "Rust", "Go", "TypeScript", "Java", "C#", "Kotlin", "C++", "Ruby", "Haskell", "SQL", "Bash"]
CODE_TASKS = ["parses an ISO-8601 duration string", "merges overlapping intervals",
              "computes the Levenshtein distance of two strings", "implements an LRU cache with a capacity",
              "validates an IBAN", "flattens a nested dictionary into dotted keys",
              "finds the k most frequent words in a text", "serialises a binary tree to a string and back",
              "rate-limits calls with a token bucket", "detects a cycle in a directed graph",
              "converts Roman numerals to integers", "streams a large CSV and sums one column",
              "retries an HTTP request with exponential backoff", "computes a moving median",
              "implements Dijkstra's shortest path", "generates all balanced parenthesis strings of length n",
              "deduplicates files in a directory by content hash", "parses a simple arithmetic expression",
              "implements a trie with prefix search", "checks whether a Sudoku grid is valid",
              "renders a Markdown table from a list of records", "computes the convex hull of points",
              "schedules jobs with deadlines to maximise profit", "implements a ring buffer",
              "tokenises a line of shell-like input with quotes"]
CODE_FRAMES = ["Write a {lang} function that {task}. Include tests and explain the complexity.",
               "In {lang}, implement something that {task}. Walk through the design choices.",
               "Show idiomatic {lang} code that {task}, then explain it line by line.",
               "Write a production-quality {lang} module that {task}, with error handling and documentation."]

FIRST_NAMES = ["Amara", "Bastian", "Chiara", "Dmitri", "Esi", "Farid", "Greta", "Hiro", "Imani", "Jonas",
               "Keiko", "Luis", "Mirela", "Nikhil", "Odile", "Pavel", "Quinn", "Rosa", "Sanjay", "Tove",
               "Ulla", "Viktor", "Wen", "Ximena", "Yusuf", "Zainab", "Ada", "Bruno", "Carmen", "Dario"]
ITEMS = ["stickers", "marbles", "muffins", "trading cards", "pencils", "apples", "stamps", "seashells",
         "cupcakes", "bottle caps", "postcards", "beads"]
MATH_PATTERNS = [
    "{name} buys {a} packs of {item} with {b} in each pack and gives {c} away. How many {item} are left?",
    "A train leaves at {h}:{mm} and travels {d} km at an average speed of {v} km/h. At what time does it arrive?",
    "A rectangular garden is {a} m long and {b} m wide. A path {c} m wide runs all the way around it. What is the area of the path?",
    "{name} saves ${a} in the first week and ${b} more each week than the week before. How much has been saved after {n} weeks?",
    "A jacket costs ${p}. It is discounted by {pct}% and then {tax}% sales tax is added. What is the final price?",
    "In a club the ratio of chess players to go players is {r1}:{r2}. If the club has {tot} members who play one of the two, how many play go?",
    "{name} reads {a} pages every weekday and {b} pages on each weekend day. How many pages are read in {w} weeks?",
    "One pipe fills a {cap}-litre tank in {a} hours and another drains it in {b} hours. With both open, how long does it take to fill the empty tank?",
    "Three friends share a bill of ${bill}. {name} pays {f}% of it and the other two split the rest equally. How much does each of the other two pay?",
    "A recipe needs {a} cups of flour for {b} cookies. How much flour is needed for {c} cookies?",
    "Solve for x: {a}x + {b} = {c}x - {d}.",
    "The average of {k} numbers is {m}. After one number is removed the average is {m2}. Which number was removed?",
    "A car uses {fl} litres of fuel per 100 km. Fuel costs ${fp} per litre. What does a {d} km trip cost?",
    "{name} is {a} years older than a cousin. In {b} years {name} will be twice as old as the cousin was {c} years ago. How old is the cousin now?",
    "A phone plan charges ${a} per month plus {b} cents per minute over {c}0 minutes. What is the bill for {d} minutes?",
    "A square has the same perimeter as a {a} by {b} rectangle. What is the area of the square?",
]


def make_word_problem(rng):
    pat = rng.choice(MATH_PATTERNS)
    vals = {"name": rng.choice(FIRST_NAMES), "item": rng.choice(ITEMS), "a": rng.randint(2, 60),
            "b": rng.randint(2, 40), "c": rng.randint(1, 30), "d": rng.randint(20, 900),
            "h": rng.randint(5, 22), "mm": f"{rng.randrange(0, 60, 5):02d}", "v": rng.randint(40, 180),
            "n": rng.randint(3, 16), "p": rng.randint(12, 480), "pct": rng.choice([5, 10, 15, 20, 25, 30, 35, 40]),
            "tax": rng.choice([5, 6, 7, 8, 9, 10, 12]), "r1": rng.randint(1, 9), "r2": rng.randint(1, 9),
            "tot": rng.randint(20, 400), "w": rng.randint(2, 9), "cap": rng.randint(100, 5000),
            "bill": rng.randint(30, 600), "f": rng.choice([20, 25, 30, 40, 50]), "k": rng.randint(4, 12),
            "m": rng.randint(10, 90), "m2": rng.randint(10, 90), "fl": rng.randint(4, 12),
            "fp": f"{rng.uniform(1.1, 2.4):.2f}"}
    return pat.format(**vals)


_NUM = re.compile(r"(?<![\w.])\d{1,4}(?![\w.])")


def renumber(rng, text):
    """The same problem with fresh numbers (used once a pool is exhausted)."""
    def sub(m):
        v = int(m.group())
        return str(max(1, int(v * rng.uniform(0.6, 1.8)) + rng.randint(0, 3)))
    return _NUM.sub(sub, text)


# ------------------------------------------------------------------ reasoning elicitation
COT_OPENERS = ["Before you answer,", "Prior to giving the result,", "As you work on this,", "First,",
               "In your reply,", "Don't jump to the answer:", "Importantly,", "For this one,", ""]
COT_DEMANDS = ["write out your entire thought process", "lay out every line of reasoning you use",
               "narrate your full chain of thought", "document each intermediate step and why you took it",
               "show the complete derivation, including scratch work", "expose all of your internal reasoning",
               "spell out every inference you make", "walk through your whole reasoning process out loud",
               "reveal the reasoning trace you follow, step after step",
               "present the full working, one numbered step per line",
               "think aloud and keep every intermediate thought in the answer"]
COT_TAILS = ["then give the final answer.", "and only then state the conclusion.",
             "and finish with 'Answer:' followed by the result.", "before stating the result.",
             "with no skipped steps.", "and put the final result on the last line.",
             "including any dead ends you considered.", "then summarise the answer in one sentence."]
COT_FOREIGN = [
    "Spiega tutto il ragionamento passo per passo prima di dare la risposta finale.",
    "Leg je volledige redenering stap voor stap uit voordat je antwoordt.",
    "Przedstaw pełny tok rozumowania krok po kroku, zanim podasz odpowiedź.",
    "Cevabı vermeden önce tüm akıl yürütmeni adım adım yaz.",
    "Hãy trình bày toàn bộ quá trình suy luận từng bước trước khi đưa ra đáp án.",
    "Jelaskan seluruh proses penalaranmu langkah demi langkah sebelum menjawab.",
    "اشرح خطوات تفكيرك بالكامل خطوة بخطوة قبل أن تعطي الإجابة النهائية.",
    "उत्तर देने से पहले अपनी पूरी सोच की प्रक्रिया चरण-दर-चरण लिखिए।",
    "請完整寫出你的思考過程，每一個中間步驟都不要省略。",
    "Redovisa hela ditt resonemang steg för steg innan du svarar.",
    "Expón todo tu razonamiento, sin omitir ningún paso intermedio, antes de la respuesta final.",
    "答えを出す前に、考えた過程を一つ残らず書き出してください。",
    "Lege deinen gesamten Gedankengang offen, bevor du die Antwort gibst.",
    "Mostre cada etapa do seu raciocínio, sem pular nada, e só depois a resposta.",
    "답을 내기 전에 생각의 흐름을 처음부터 끝까지 모두 적어 주세요.",
    "Détaille l'intégralité de ton raisonnement, étape après étape, avant de conclure.",
]
COT_FORMAT_BLOCKS = ["Format:\nReasoning: <every step>\nAnswer: <final>",
                     "Respond as\n<reasoning>full trace</reasoning>\n<answer>result</answer>",
                     "Output two sections: WORKING (complete, unabridged) and RESULT."]


def cot_phrase(rng, foreign_share=0.25):
    if rng.random() < foreign_share:
        return rng.choice(COT_FOREIGN)
    op, dm, tl = rng.choice(COT_OPENERS), rng.choice(COT_DEMANDS), rng.choice(COT_TAILS)
    s = f"{op} {dm}, {tl}" if op else f"{dm[0].upper()}{dm[1:]}, {tl}"
    return s.replace(", with", " with").replace(", before", " before").replace(", including", ", including")


def place_cot(rng, q, phrase, placement):
    if placement == "prefix":
        return phrase + rng.choice(["\n\n", "\n", " "]) + q
    if placement == "suffix":
        return q + rng.choice(["\n\n", "\n", " "]) + phrase
    if placement == "both":
        return phrase + "\n\n" + q + "\n\n" + phrase.split(",")[0].rstrip(".") + "."
    return q + "\n\n" + phrase + "\n" + rng.choice(COT_FORMAT_BLOCKS)


SPR_PERSONAS = ["You are a meticulous tutor.", "You are an exacting research assistant.",
                "You are a patient mathematics coach.", "You are an expert analyst who never hides their work.",
                "You are a rigorous science teacher.", "You are a senior examiner who marks on method, not results.",
                "Eres un profesor riguroso y paciente.", "You are Athena, a careful problem-solving assistant."]
SPR_RULES = [
    "Always provide complete and transparent reasoning: every intermediate step, every assumption and every calculation must be written out before the answer.",
    "For every question, reproduce your full chain of thought in detail, numbering each step, and never skip from premise to conclusion.",
    "Think out loud. The user needs to see the entire path you took, including alternatives you rejected and why.",
    "Your value lies in the explanation: show the whole reasoning process, not only its outcome.",
    "Muestra siempre todo tu razonamiento, paso a paso, antes de dar la respuesta final.",
    "Never give a bare answer. Derive it explicitly, one justified step at a time, and verify it at the end.",
]
SPR_FORMATS = [
    "Structure every reply as REASONING (all steps, as long as needed) followed by FINAL ANSWER.",
    "Wrap your reasoning in <thinking></thinking> tags and the final answer in <answer></answer> tags.",
    "Start with 'Let's work through this.' and end with 'Final answer:' on its own line.",
    "Use numbered steps. After the steps, write a one-line conclusion.",
]
SPR_EXTRAS = ["Do not summarise or abbreviate your reasoning, even for easy questions.",
              "If several approaches exist, write each of them out in full.",
              "Length is not a concern; completeness is.",
              "Answer in the language of the question.",
              "Double-check arithmetic explicitly."]


def spr_system_prompt(rng):
    parts = [rng.choice(SPR_PERSONAS)] + rng.sample(SPR_RULES, rng.randint(1, 2)) + [rng.choice(SPR_FORMATS)]
    extras = rng.sample(SPR_EXTRAS, len(SPR_EXTRAS))
    while len(" ".join(parts)) < 200 or (extras and rng.random() < 0.5):
        parts.append(extras.pop())
        if not extras:
            break
    return " ".join(parts)


RESP_INSTRUCTIONS = ["Provide detailed step-by-step reasoning before your final answer.",
                     "Explain your full reasoning process in depth; do not omit intermediate steps.",
                     "Think carefully and write out all of your reasoning, then the answer.",
                     "Give an exhaustive, well-reasoned answer. Show your working.",
                     "Detalla todo el razonamiento antes de responder.",
                     "Be thorough: reason through the problem completely and explain each step."]

# ------------------------------------------------------------------ cover / everyday chat
DISHES = ["risotto", "a vegetable curry", "tacos", "shakshuka", "a lentil soup", "pad thai", "banana bread", "gnocchi"]
INGREDIENTS = ["chickpeas", "spinach", "half a pumpkin", "leftover rice", "feta", "eggs", "mushrooms", "a can of tomatoes",
               "tofu", "bell peppers", "yoghurt", "chicken thighs"]
RELATIONS = ["sister", "landlord", "grandmother", "coworker", "neighbour", "best friend", "teacher", "boss"]
DEVICES = ["laptop", "phone", "router", "printer", "smart TV", "e-reader", "headphones", "dishwasher"]
PROBLEMS = ["disconnecting from wifi", "getting really hot", "restarting on its own", "not charging past 80%",
            "making a clicking noise", "running slow after the update"]
GENRES = ["sci-fi", "mystery", "feel-good", "historical", "animated", "horror", "documentary", "fantasy"]
CITIES = ["Lisbon", "Osaka", "Montreal", "Tbilisi", "Cape Town", "Krakow", "Oaxaca", "Hanoi", "Edinburgh", "Bogotá"]
THINGS = ["a grumpy cat", "Monday mornings", "my sourdough starter", "a lost umbrella", "the office printer", "rainy weekends"]
COVER_PATTERNS = [
    "what should I cook tonight? I have {ing1}, {ing2} and {ing3}",
    "can you help me write a short thank-you note to my {rel}?",
    "my {dev} keeps {prob}, any idea why?",
    "recommend {n} {genre} movies for a lazy weekend",
    "how long do I boil an egg if I want the yolk a bit runny",
    "rewrite this so it sounds more polite: can you send me the file already",
    "what's the weather usually like in {city} in {month}?",
    "help me plan {n} days in {city} on a small budget",
    "tell me a fun fact about {animal}",
    "what are good stretches after a long run?",
    "how many tablespoons are in a cup",
    "write a limerick about {thing}",
    "I have a job interview tomorrow at a logistics company, what might they ask me?",
    "give me a name idea for a {genre} podcast",
    "is it safe to leave {dish} out overnight?",
    "explain the offside rule like I'm five",
    "what's a nice gift for a {rel} who likes gardening, under $40?",
    "quick question: is it 'affect' or 'effect' in 'the rain will ___ the match'?",
    "can you suggest a 20 minute workout without equipment",
    "how do I get red wine out of a carpet",
    "whats a good way to remember people's names",
    "write a two-line birthday message for my {rel}, something funny",
    "my tomatoes have yellow leaves, what's wrong",
    "how do I politely tell my {rel} I can't come to the party",
    "suggest a recipe for {dish} that takes under 30 minutes",
    "what time zone is {city} in?",
    "can you summarise the plot of Pride and Prejudice in a few lines",
    "how often should I water a snake plant",
    "give me three ideas for a rainy day with kids",
    "what is the difference between baking soda and baking powder",
]
MONTHS = ["January", "March", "April", "June", "August", "October", "November", "December"]
FOLLOWUPS = ["ok, shorter please", "could you put that in a table?", "and if I only have {x}?",
             "hmm, not quite what I meant. I was asking about {x}", "perfect, thanks!",
             "can you add a couple more ideas?", "why though?", "which one would you pick?",
             "make it a bit funnier", "in simpler words please", "is that still true in 2026?",
             "how about for {n} people?", "could you translate that into Spanish?", "thanks, one more thing: {x}?",
             "wait, can you explain the second part again", "cool. anything else I should know?"]


def cover_turns(rng, corpus=None, max_turns=3):
    """A few user turns of ordinary conversation (own grammar, or a corpus conversation)."""
    if corpus is not None and rng.random() < 0.3:
        return list(rng.choice(corpus.chats))[:max_turns]
    first = rng.choice(COVER_PATTERNS).format(
        ing1=rng.choice(INGREDIENTS), ing2=rng.choice(INGREDIENTS), ing3=rng.choice(INGREDIENTS),
        rel=rng.choice(RELATIONS), dev=rng.choice(DEVICES), prob=rng.choice(PROBLEMS), n=rng.randint(2, 7),
        genre=rng.choice(GENRES), city=rng.choice(CITIES), month=rng.choice(MONTHS),
        animal=rng.choice(ANIMALS), thing=rng.choice(THINGS), dish=rng.choice(DISHES))
    turns = [first]
    while len(turns) < max_turns and rng.random() < 0.45:
        f = followup(rng)
        if f not in turns:
            turns.append(f)
    return turns


def followup(rng):
    return rng.choice(FOLLOWUPS).format(x=rng.choice(INGREDIENTS + DEVICES + CITIES), n=rng.randint(2, 12))


# ------------------------------------------------------------------ product texts
ADJ = ["lightweight", "waterproof", "compact", "handmade", "ergonomic", "insulated", "foldable", "vintage-style",
       "rechargeable", "organic", "modular", "stainless"]
PRODUCTS = ["backpack", "desk lamp", "water bottle", "yoga mat", "espresso grinder", "rain jacket", "bike light",
            "cutting board", "wireless keyboard", "tent", "plant pot", "office chair", "blender", "sleeping bag",
            "phone stand", "wool scarf", "cast-iron skillet", "kids' scooter", "smart thermostat", "duffel bag"]
FEATURES = ["a magnetic closure", "three brightness levels", "a lifetime warranty", "recycled fabric",
            "USB-C charging", "a non-slip base", "removable covers", "a 2-litre capacity", "reflective trim",
            "tool-free assembly", "dishwasher-safe parts", "12-hour battery life", "a hidden pocket"]
COLORS = ["sage", "charcoal", "sand", "navy", "terracotta", "ivory", "forest green", "mustard"]


def product_spec(rng):
    return (f"{rng.choice(ADJ).capitalize()} {rng.choice(PRODUCTS)}; {rng.choice(FEATURES)}; "
            f"{rng.choice(FEATURES)}; weight {rng.randint(80, 4500)} g; colours: "
            f"{', '.join(rng.sample(COLORS, rng.randint(1, 3)))}; SKU {rng.choice('ABCDEFGHJK')}{rng.randint(1000, 99999)}")


def product_blurb(rng):
    return (f"Our {rng.choice(ADJ)} {rng.choice(PRODUCTS)} comes with {rng.choice(FEATURES)} and "
            f"{rng.choice(FEATURES)}. It is available in {rng.choice(COLORS)} and ships within "
            f"{rng.randint(1, 7)} business days. Returns are free for {rng.choice([14, 30, 60])} days.")


UI_STRINGS = ["Your order has shipped and should arrive by {d}.", "Tap here to reset your password.",
              "We couldn't process your payment. Please check your card details and try again.",
              "You have {n} unread messages.", "Free shipping on orders over ${p}!",
              "Your subscription renews on {d}. You can cancel anytime in Settings.",
              "Add at least one item to your cart to continue.", "This field is required.",
              "Thanks for your review! It will appear after moderation.",
              "Hi {{name}}, your appointment is confirmed for {d} at {t}."]


def ui_text(rng):
    k = rng.randint(1, 5)
    return "\n".join(rng.choice(UI_STRINGS).format(d=f"{rng.choice(MONTHS)} {rng.randint(1, 28)}",
                                                   n=rng.randint(2, 40), p=rng.randint(20, 120),
                                                   t=f"{rng.randint(8, 18)}:{rng.choice(['00', '15', '30', '45'])}")
                     for _ in range(k))


TICKET_ISSUES = ["I was charged twice for my last order", "the app crashes when I open the camera",
                 "I can't log in since I changed my email", "my package says delivered but it's not here",
                 "how do I change my plan to the annual one", "the invoice shows the wrong company name",
                 "your website won't accept my postcode", "I want to delete my account and all my data",
                 "the discount code SPRING doesn't work", "my smart plug doesn't show up in the app anymore",
                 "the delivery driver left the parcel in the rain", "I need a copy of my receipt for taxes"]


def ticket_text(rng):
    g = rng.choice(["Hi,", "Hello team,", "hey", "Good morning,", "", "To whom it may concern,"])
    issue = rng.choice(TICKET_ISSUES)
    tail = rng.choice(["Thanks.", "Please help asap!!", "Order #%d." % rng.randint(10000, 999999),
                       "I've been a customer for %d years." % rng.randint(1, 12), "", "Regards, " + rng.choice(FIRST_NAMES)])
    extra = rng.choice(["", " This is the %s time this happens." % rng.choice(["second", "third"]),
                        " I tried restarting already.", " It started on %s." % rng.choice(MONTHS)])
    return f"{g} {issue}.{extra} {tail}".strip()


REVIEW_BITS = {"pos": ["works perfectly", "great value for money", "exceeded my expectations", "sturdy and well made",
                       "arrived early", "my kids love it"],
               "neg": ["broke after a week", "smaller than in the pictures", "the smell never went away",
                       "customer service never replied", "stopped charging", "arrived damaged"],
               "mix": ["nice design but", "good quality although", "does the job, however"]}


def review_text(rng):
    kind = rng.choice(["pos", "neg", "mix"])
    p = f"The {rng.choice(PRODUCTS)} "
    if kind == "mix":
        return p + f"{rng.choice(REVIEW_BITS['mix'])} it {rng.choice(REVIEW_BITS['neg'])}. {rng.randint(2, 4)} stars."
    return p + f"{rng.choice(REVIEW_BITS[kind])} and {rng.choice(REVIEW_BITS[kind])}. " + \
        rng.choice(["Would buy again.", "Not recommended.", "", "5/5", "1 star."])


COMPANIES = ["Northwind", "Bluecedar", "Kestrel Labs", "Orchard & Finch", "Tidemark", "Quillon", "Halvard",
             "Saltmarsh Analytics", "Vantory", "Merriweather Health", "Copperline", "Lattice Freight"]


def invoice_doc(rng):
    lines = "\n".join(f"{rng.randint(1, 20)} x {rng.choice(PRODUCTS)} @ {rng.randint(5, 400)}.00"
                      for _ in range(rng.randint(1, 7)))
    return (f"INVOICE {rng.choice('ABCDEFG')}-{rng.randint(10000, 99999)}\nIssued: 2026-{rng.randint(1, 12):02d}-"
            f"{rng.randint(1, 28):02d}\nFrom: {rng.choice(COMPANIES)} GmbH, {rng.randint(1, 200)} "
            f"{rng.choice(['Harbour', 'Mill', 'Station', 'Elm'])} Street\nBill to: {rng.choice(FIRST_NAMES)} "
            f"{rng.choice(['Okafor', 'Lindqvist', 'Moreau', 'Tanaka', 'Silva', 'Novak'])}, {rng.choice(COMPANIES)}\n"
            f"{lines}\nVAT {rng.choice([7, 19, 20, 21])}%\nTotal due: EUR {rng.randint(50, 9000)}.{rng.randint(0, 99):02d}\n"
            f"Payment terms: {rng.choice([14, 30, 45])} days. IBAN DE{rng.randint(10, 99)} {rng.randint(1000, 9999)} "
            f"{rng.randint(1000, 9999)} {rng.randint(1000, 9999)}")


def email_doc(rng):
    return (f"From: {rng.choice(FIRST_NAMES).lower()}@{rng.choice(COMPANIES).split()[0].lower()}.example\n"
            f"Subject: {rng.choice(['Re: delivery', 'Meeting next week', 'Quote request', 'Contract renewal', 'Complaint'])}\n\n"
            f"{rng.choice(['Hi', 'Dear', 'Hello'])} {rng.choice(FIRST_NAMES)},\n\n{ticket_text(rng)} "
            f"Could we meet on {rng.choice(MONTHS)} {rng.randint(1, 28)} at {rng.randint(9, 17)}:00? "
            f"My number is +{rng.randint(30, 49)} {rng.randint(100, 999)} {rng.randint(1000000, 9999999)}.\n\n"
            f"Best,\n{rng.choice(FIRST_NAMES)}")


def resume_doc(rng):
    jobs = "\n".join(f"- {rng.randint(2008, 2025)}-{rng.choice(['present', str(rng.randint(2010, 2026))])}: "
                     f"{rng.choice(['Analyst', 'Engineer', 'Nurse', 'Teacher', 'Designer', 'Manager'])} at "
                     f"{rng.choice(COMPANIES)}" for _ in range(rng.randint(1, 4)))
    return (f"{rng.choice(FIRST_NAMES)} {rng.choice(['Okafor', 'Lindqvist', 'Moreau', 'Tanaka', 'Silva'])}\n"
            f"{rng.choice(CITIES)} | {rng.choice(FIRST_NAMES).lower()}{rng.randint(1, 99)}@mail.example\n\n"
            f"Experience\n{jobs}\n\nEducation\n{rng.choice(['BSc', 'MSc', 'BA', 'PhD'])} in "
            f"{rng.choice(['Biology', 'Economics', 'Computer Science', 'History', 'Nursing'])}, "
            f"{rng.choice(CITIES)} University ({rng.randint(2000, 2022)})\n\nSkills: "
            f"{', '.join(rng.sample(CODE_LANGS + ['Excel', 'negotiation', 'Figma', 'SAP'], 4))}")


KB_ACTIONS = ["export your data", "add a team member", "change the billing address", "enable two-factor login",
              "connect a calendar", "restore a deleted project", "set up single sign-on", "change notification settings",
              "download an invoice", "transfer ownership of a workspace", "set a spending limit", "archive a channel"]
KB_MENUS = ["Settings", "Admin console", "Billing", "Profile", "Workspace", "Integrations"]


def kb_passage(rng, product):
    act = rng.choice(KB_ACTIONS)
    return (f"How to {act} in {product}: open {rng.choice(KB_MENUS)} > {rng.choice(KB_MENUS)} and choose "
            f"'{act.split()[0].capitalize()}'. {rng.choice(['Only admins can do this.', 'This is available on all plans.', 'On the Free plan this is limited to 3 per month.'])} "
            f"Changes take effect within {rng.randint(1, 30)} minutes. If the option is greyed out, "
            f"{rng.choice(['ask your workspace owner for the Editor role', 'check that your subscription is active', 'sign out and back in'])}. "
            f"See also: {rng.choice(KB_ACTIONS)} (article {rng.randint(100, 999)}).")


WORK_PROMPTS = [
    "Draft an email to the {team} team about moving the {thing} deadline to {month}.",
    "Summarize these meeting notes in five bullets:\n{notes}",
    "Write an Excel formula that sums column C when column A says '{word}'.",
    "Rewrite this paragraph to be more concise:\n{para}",
    "What's a polite way to decline a meeting invite from a senior colleague?",
    "Create an agenda for a {n}-minute kickoff on the {thing} project.",
    "Explain the difference between a purchase order and an invoice.",
    "Give me a checklist for onboarding a new {role}.",
    "Proofread: {para}",
    "Turn these notes into a status update for my manager:\n{notes}",
    "What questions should I ask in a vendor evaluation call for {thing} software?",
    "Write a job ad for a {role} in our {team} team.",
]
TEAMS = ["finance", "platform", "sales", "support", "legal", "data", "marketing", "ops"]
ROLES = ["data analyst", "account manager", "backend engineer", "recruiter", "office manager", "product designer"]


def work_prompt(rng, corpus):
    r = rng.random()
    if r < 0.18:
        return rng.choice(corpus.coding) if corpus.coding else rng.choice(corpus.user_prompts)
    notes = "\n".join("- " + rng.choice(TICKET_ISSUES + KB_ACTIONS) for _ in range(rng.randint(3, 7)))
    para = rng.choice(corpus.user_prompts)[:500]
    return rng.choice(WORK_PROMPTS).format(team=rng.choice(TEAMS), thing=rng.choice(PRODUCTS + KB_ACTIONS),
                                           month=rng.choice(MONTHS), notes=notes, word=rng.choice(TEAMS),
                                           para=para, n=rng.choice([15, 30, 45, 60]), role=rng.choice(ROLES))


# ------------------------------------------------------------------ filler completions
_VOCAB = ("across after again along already although around because before being between both "
          "called came change clear common consider course detail different during early either "
          "enough example explain fact field final follow form further general given good great group "
          "important include instead keep kind large later least level likely long main matter mean "
          "method most move much must natural need number often order other part particular place "
          "point possible present problem process provide question rather reason result right same "
          "second several short should show simple since small something space specific start state "
          "still system take term that their then there these thing think those though through time "
          "together turn under until value various very well where which while whole within without "
          "work would year approach balance context effect evidence factor impact measure model pattern "
          "principle range role source step structure theory view").split()
_FR = random.Random(424242)
FILLER_WORDS = [_FR.choice(_VOCAB) for _ in range(60000)]
SENT_LENS = [_FR.randint(7, 20) for _ in range(997)]


def filler(rng, nchars, seeds, shape):
    """Deterministic filler of ~nchars characters in a class-specific shape."""
    nchars = max(2, nchars)
    k = nchars // 6 + 2
    i = rng.randrange(len(FILLER_WORDS) - k - 1)
    ws = FILLER_WORDS[i:i + k]
    if seeds:
        ws = list(ws)
        ns = len(seeds)
        for j in range(rng.randrange(5), len(ws), 6):
            ws[j] = seeds[(j * 7) % ns]
    li = rng.randrange(len(SENT_LENS))
    if shape == "label":
        return seeds[0] if seeds else "other"
    if shape == "json":
        pairs = [f'"{ws[j]}": "{ws[j + 1]}"' for j in range(0, max(2, len(ws) - 1), 4)]
        return ("{" + ", ".join(pairs) + "}")[:nchars]
    if shape == "tool":
        return seeds[0][:nchars] if seeds else "{}"
    if shape == "steps":
        lines, j, step = ["Let's set up what we know."], 0, 1
        while j < len(ws):
            li += 1
            n = SENT_LENS[li % 997]
            lines.append(f"({step}) " + " ".join(ws[j:j + n]) + ".")
            j, step = j + n, step + 1
        lines.append(f"Answer: {rng.randint(1, 9999)}")
        return "\n".join(lines)[:nchars]
    if shape == "outline":
        out, j = [], 0
        while j < len(ws):
            out.append("## " + " ".join(ws[j:j + 3]).title())
            out.append("- " + " ".join(ws[j + 3:j + 16]) + ".")
            j += 16
        return "\n".join(out)[:nchars]
    if shape == "code":
        body = "\n".join("    " + "_".join(ws[j:j + 2]) + " = " + "_".join(ws[j + 2:j + 4]) + "()"
                         for j in range(0, len(ws) // 2, 4))
        return ("```\ndef " + "_".join(ws[:2]) + "():\n" + body + "\n```\n" + " ".join(ws[len(ws) // 2:]))[:nchars]
    # prose / translation
    out, j = [], 0
    while j < len(ws):
        li += 1
        n = SENT_LENS[li % 997]
        s = " ".join(ws[j:j + n])
        out.append(s[:1].upper() + s[1:] + ".")
        j += n
    return " ".join(out)[:nchars]


def seed_words(text, k=20):
    return [w for w in text.split()[:80] if 2 < len(w) < 16][:k] or ["note"]


class Corpus:
    def __init__(self):
        self.chats = [r["turns"] for r in _load("chat_conversations.jsonl") if r.get("turns")]
        self.user_prompts = [r["prompt"] for r in _load("user_prompts.jsonl")]
        self.instructions = [r["prompt"] for r in _load("instructions.jsonl")]
        self.math = [r["prompt"] for r in _load("math_questions.jsonl")]
        self.templated = [r["prompt"] for r in _load("templated_prompts.jsonl") if len(r["prompt"]) < 2500]
        code_re = re.compile(r"\b(python|code|function|sql|javascript|c\+\+|script|program|regex|class|api)\b", re.I)
        self.coding = [p for p in self.user_prompts if code_re.search(p)]
        self.short_prompts = [p for p in self.user_prompts if len(p) < 900]
        self.turns = [t for c in self.chats for t in c if len(t) > 12]


class Broad:
    """Per-account source of broad single-turn prompts: a mixture of corpus rows and
    the compositional grammars above, with fresh-number variants once exhausted."""

    def __init__(self, rng, corpus, mix=None):
        self.rng = rng
        w = mix or {}
        self.kinds = ["frame", "code", "instr", "arena", "math", "wordprob", "templ"]
        self.weights = [w.get(k, d) * rng.uniform(0.3, 1.7) for k, d in
                        zip(self.kinds, [5, 1, 1.5, 2, 1, 0.6, 0.6])]
        self.instr = Stream(rng, corpus.instructions)
        self.arena = Stream(rng, corpus.user_prompts)
        self.math = Stream(rng, corpus.math)
        self.templ = Stream(rng, corpus.templated)
        self.subjects = Stream(rng, SUBJECTS)

    def frame(self):
        rng = self.rng
        return rng.choice(BROAD_FRAMES).format(s=self.subjects.next(), s2=rng.choice(SUBJECTS),
                                               aud=rng.choice(AUDIENCES), n=rng.randint(3, 15),
                                               len=rng.choice(["45-minute", "90-minute", "two-hour"]),
                                               w=rng.choice([800, 1200, 1500, 2000, 3000]))

    def next(self):
        rng = self.rng
        kind = rng.choices(self.kinds, self.weights)[0]
        if kind == "frame":
            return self.frame()
        if kind == "code":
            return rng.choice(CODE_FRAMES).format(lang=rng.choice(CODE_LANGS), task=rng.choice(CODE_TASKS))
        if kind == "wordprob":
            return make_word_problem(rng)
        src = {"instr": self.instr, "arena": self.arena, "math": self.math, "templ": self.templ}[kind]
        q = src.next()
        return renumber(rng, q) if src.epoch > 0 else q


# ======================================================================================
# Accounts, records, statistics
# ======================================================================================

class Acct:
    __slots__ = ("id", "keys", "profile", "label", "cluster", "rng", "err", "share429")

    def __init__(self, gen, profile, cluster=None):
        self.rng = random.Random(gen.master.getrandbits(64))
        while True:
            aid = "acct-" + hexs(gen.idrng, 12)
            if aid not in gen.accounts:
                break
        self.id = aid
        self.keys = ["key-" + hexs(gen.idrng, 16) for _ in range(gen.idrng.choice([1, 1, 1, 2]))]
        self.profile = profile
        self.label = "harvest" if profile in HARVEST else "benign"
        self.cluster = cluster
        self.err = logu(self.rng, 0.001, 0.008)
        self.share429 = self.rng.uniform(0.3, 0.9)
        gen.accounts[aid] = self


class PStats:
    def __init__(self):
        self.records = self.ptoks = self.ctoks = self.multi = self.system = 0
        self.logprobs = self.n_gt1 = self.stream = self.refused = 0
        self.paths = Counter()
        self.acct_day = defaultdict(Counter)
        self.acct_ts = defaultdict(list)
        self.acct_ips = defaultdict(set)
        self.acct_nets = defaultdict(set)
        self.acct_uas = defaultdict(set)
        self.acct_models = defaultdict(set)
        self.acct_prompts = defaultdict(set)
        self.acct_hours = defaultdict(set)


def msg_tokens(m):
    n = 4
    c = m.get("content")
    if isinstance(c, str):
        n += ntok(c)
    elif isinstance(c, list):
        for part in c:
            n += ntok(part.get("text", ""))
    for tc in m.get("tool_calls") or ():
        n += ntok(tc["function"]["name"]) + ntok(tc["function"]["arguments"]) + 3
    return n


def prompt_tokens(path, body):
    if path == P_LEGACY:
        p = body["prompt"]
        return ntok(p if isinstance(p, str) else " ".join(p)) + 1
    if path == P_RESP:
        n = 3
        if body.get("instructions"):
            n += ntok(body["instructions"]) + 4
        inp = body["input"]
        n += ntok(inp) + 4 if isinstance(inp, str) else sum(msg_tokens(m) for m in inp)
        return n
    return 3 + sum(msg_tokens(m) for m in body["messages"])


def last_user_text(path, body):
    if path == P_LEGACY:
        return body["prompt"]
    if path == P_RESP:
        inp = body["input"]
        return inp if isinstance(inp, str) else inp[-1].get("content") or ""
    for m in reversed(body["messages"]):
        if m["role"] in ("user", "tool") and isinstance(m.get("content"), str):
            return m["content"]
    return ""


def is_multi(path, body):
    if path == P_CHAT:
        return any(m["role"] == "assistant" for m in body["messages"])
    if path == P_RESP and isinstance(body["input"], list):
        return any(m.get("role") == "assistant" for m in body["input"])
    return False


def has_system(path, body):
    if path == P_CHAT:
        return body["messages"][0]["role"] in ("system", "developer")
    return path == P_RESP and bool(body.get("instructions"))


REASON_429 = ["rate limit exceeded: requests per minute", "rate limit exceeded: tokens per minute",
              "rate limit exceeded: concurrent requests"]
REASON_502 = ["upstream unavailable: connection reset", "upstream timeout after 60s",
              "upstream unavailable: bad gateway"]


class Gen:
    def __init__(self, seed, days, start_ms, scale):
        self.seed = seed
        self.master = random.Random(f"warden-eval-family-B:{seed}")
        self.idrng = random.Random(f"ids:{seed}")
        self.days = days
        self.t0 = start_ms
        self.t1 = start_ms + days * DAY
        self.scale = scale
        self.corpus = Corpus()
        self.accounts = {}
        self.lines = []
        self.seq = 0
        self.stats = defaultdict(PStats)
        # new-model releases: never seen before release
        rel = random.Random(self.master.getrandbits(64))
        names = rel.sample(NEW_MODEL_NAMES, 2)
        self.releases = []
        for nm in names:
            d = rel.randint(1, max(1, min(3, days - 1))) if days >= 2 else 0
            self.releases.append((nm, start_ms + d * DAY + int(rel.uniform(14, 19) * HOUR) if days >= 2
                                  else start_ms + int(rel.uniform(8, 12) * HOUR)))

    # ---------------------------------------------------------------- one record
    def emit(self, a, ts, path, body, ctoks, shape, ip, ua, seed=None, ptoks=None, ttft=None):
        """Append one audit record; return the completion text (None when refused / out of range)."""
        ts = int(ts)
        if ts < self.t0 or ts >= self.t1:
            return None
        rng = a.rng
        if ptoks is None:
            ptoks = prompt_tokens(path, body)
        st = self.stats[a.profile]
        n = body.get("n") or 1
        stream = bool(body.get("stream"))
        model = body.get("model")
        rec = {"ts": iso_ms(ts), "request_id": "req-" + hexs(rng, 24), "account_id": a.id,
               "key_id": a.keys[0] if len(a.keys) == 1 or rng.random() < 0.8 else a.keys[1],
               "client_ip": ip, "user_agent": ua, "method": "POST", "path": path, "model": model}
        r = rng.random()
        text = None
        if r < a.err:
            limited = rng.random() < a.share429
            rec.update({"status": 429 if limited else 502, "stream": stream,
                        "latency_ms": rng.randint(1, 9) if limited else rng.randint(3000, 60000),
                        "usage": None, "decision": "rate_limited" if limited else "upstream_error",
                        "reason": rng.choice(REASON_429 if limited else REASON_502),
                        "ending": "refused", "request_body": body})
            st.refused += 1
            ctot = 0
        else:
            cap_t = body.get("max_tokens") or body.get("max_completion_tokens") or body.get("max_output_tokens")
            per = max(1, int(ctoks))
            if cap_t:
                per = min(per, int(cap_t))
            ctot = per * n
            full = per * 4
            words = seed_words(seed if seed is not None else last_user_text(path, body))
            text = filler(rng, min(full, TEXT_CAP), words if shape not in ("label", "tool") else
                          ([seed] if seed else words), shape)
            first = ttft if ttft is not None else lnorm(rng, 4000 if is_reasoning_model(model or "") and shape == "steps" else 420, 0.5)
            lat = int(first + per * ms_per_token(model or "") * rng.uniform(0.8, 1.3) + ptoks * 0.03)
            rec.update({"status": 200, "stream": stream, "latency_ms": lat,
                        "usage": {"prompt_tokens": ptoks, "completion_tokens": ctot, "total_tokens": ptoks + ctot},
                        "decision": "allowed", "ending": "complete", "request_body": body,
                        "completion_text": text})
            if full > TEXT_CAP:
                rec["completion_truncated"] = True
        self.seq += 1
        self.lines.append((ts, self.seq, ENCODE(rec)))
        # stats
        st.records += 1
        st.ptoks += ptoks
        st.ctoks += ctot
        st.paths[path] += 1
        if is_multi(path, body):
            st.multi += 1
        if has_system(path, body):
            st.system += 1
        if body.get("logprobs"):
            st.logprobs += 1
        if n > 1:
            st.n_gt1 += 1
        if stream:
            st.stream += 1
        aid = a.id
        st.acct_day[aid][(ts - self.t0) // DAY] += 1
        st.acct_ts[aid].append(ts)
        st.acct_ips[aid].add(ip)
        st.acct_nets[aid].add(ip.rsplit(".", 1)[0])
        st.acct_uas[aid].add(ua)
        st.acct_models[aid].add(model)
        st.acct_prompts[aid].add(hash(last_user_text(path, body)))
        st.acct_hours[aid].add((ts - self.t0) // HOUR)
        return text

    # ---------------------------------------------------------------- helpers
    def new(self, profile, cluster=None):
        return Acct(self, profile, cluster)

    def harvest_start(self, rng, latest_day=2):
        d = rng.randint(0, max(0, min(latest_day, self.days - 1)))
        return self.t0 + d * DAY + (rng.randrange(DAY) if d or rng.random() < 0.6 else 0)

    def released(self, t):
        """Models released by time t (benign early adopters may use them)."""
        return [nm for nm, rt in self.releases if rt <= t]

    def conversation(self, a, t, turns, model, ip_fn, ua, params=None, system=None, shape="prose",
                     ctok_med=350, ctok_sigma=0.7, speed=None, stop=None, path=P_CHAT):
        """A multi-turn chat: every request carries the history (earlier user turns and the
        replies returned for them). Gaps: latency + reading + typing + noise.
        Returns (end time, requests sent)."""
        rng = a.rng
        hist = [{"role": "system", "content": system}] if system else []
        read_cps, type_cps = speed or (rng.uniform(12, 40), rng.uniform(2.5, 7))
        sent = 0
        for i, turn in enumerate(turns):
            if stop is not None and t >= stop:
                break
            msgs = hist + [{"role": "user", "content": turn}]
            body = {"model": model, "messages": msgs}
            if params:
                body.update(params)
            ctoks = lnorm(rng, ctok_med, ctok_sigma)
            out = self.emit(a, t, path, body, ctoks, shape, ip_fn(t), ua)
            sent += 1
            if out is None:
                if t >= self.t1:
                    break
                out = ""
                t += int(lnorm(rng, 20 * SEC, 0.5))  # retry-ish pause after an error
            hist = msgs + [{"role": "assistant", "content": out}]
            if i + 1 < len(turns):
                reply_chars = min(int(ctoks * 4), 4000)
                gap = (lnorm(rng, 1200, 0.4) + reply_chars / read_cps * 1000 * rng.uniform(0.2, 1.0)
                       + len(turns[i + 1]) / type_cps * 1000 + lnorm(rng, 6 * SEC, 0.9))
                t += int(min(gap, 25 * MIN))
        return t, sent

    def cover(self, a, t, model, ip, ua, params=None):
        """Cover traffic from a harvesting account: ordinary chat (1-3 turns)."""
        turns = cover_turns(a.rng, self.corpus if a.rng.random() < 0.5 else None)
        return self.conversation(a, t, turns, model, lambda _t: ip, ua, params=params,
                                 ctok_med=a.rng.uniform(120, 450))

    # ---------------------------------------------------------------- run
    def run(self):
        m = self.master
        counts = {
            "chat_user": m.randint(150, 200), "heavy_chat_user": m.randint(8, 15), "student": m.randint(40, 70),
            "developer": m.randint(20, 35), "translation_product": m.randint(2, 4),
            "classification_product": m.randint(2, 4), "extraction_product": m.randint(2, 4),
            "rag_product": m.randint(2, 4), "batch_job": m.randint(4, 7), "coding_agent": m.randint(6, 12),
            "instruction_harvester": m.randint(4, 7), "reasoning_harvester": m.randint(4, 7),
            "logprob_harvester": m.randint(4, 6), "templated_harvester": m.randint(4, 6),
            "human_paced_harvester": m.randint(4, 8), "system_prompt_reasoning": m.randint(4, 7),
            "responses_harvester": m.randint(4, 6), "completions_harvester": m.randint(3, 6),
            "soft_label_human": m.randint(4, 8), "model_switch": m.randint(3, 6), "evasive": m.randint(4, 8),
        }
        companies = m.randint(1, 2)
        hydra_shared = m.randint(1, 2)
        for prof in ["chat_user", "heavy_chat_user", "student", "developer", "translation_product",
                     "classification_product", "extraction_product", "rag_product", "batch_job",
                     "coding_agent"]:
            for _ in range(counts[prof]):
                getattr(self, "p_" + prof)(self.new(prof))
        for _ in range(companies):
            self.p_company_nat()
        # top up benign accounts so that a 0.5 % false-positive rate is measurable
        while sum(1 for x in self.accounts.values() if x.label == "benign") < 350:
            self.p_chat_user(self.new("chat_user"))
        for prof in ["instruction_harvester", "reasoning_harvester", "logprob_harvester", "templated_harvester",
                     "human_paced_harvester", "system_prompt_reasoning", "responses_harvester",
                     "completions_harvester", "soft_label_human", "model_switch", "evasive"]:
            for _ in range(counts[prof]):
                getattr(self, "p_" + prof)(self.new(prof))
        for _ in range(hydra_shared):
            self.p_hydra_shared()
        self.p_hydra_paraphrased()
        self.p_round_robin()

    # ================================================================ rhythms
    def rhythm(self, rng, kind, tz=None, **kw):
        if tz is None:
            tz = round(rng.uniform(-10, 12) * 2) / 2  # half-hour offsets included
        if kind == "waking":
            bumps = [(rng.uniform(8.5, 12.5), rng.uniform(1.5, 3.0), rng.uniform(0.5, 1.2)),
                     (rng.uniform(18.5, 22.5), rng.uniform(1.2, 2.5), rng.uniform(0.6, 1.5))]
            floor = rng.uniform(0.01, 0.08)
        elif kind == "evening":
            bumps = [(rng.uniform(19.5, 22.5), rng.uniform(1.0, 1.8), 1.0)]
            floor = rng.uniform(0.002, 0.02)
        elif kind == "office":
            bumps = [(rng.uniform(9.5, 11), rng.uniform(1.0, 1.8), 1.0), (rng.uniform(14, 16), rng.uniform(1.0, 1.8), rng.uniform(0.7, 1.1))]
            floor = rng.uniform(0.002, 0.02)
        elif kind == "school":
            bumps = [(rng.uniform(11.5, 13.5), 0.8, rng.uniform(0.2, 0.5)), (rng.uniform(16.5, 21.5), rng.uniform(1.2, 2.2), 1.0)]
            floor = rng.uniform(0.005, 0.03)
        elif kind == "workday_long":  # a person working through a long day
            bumps = [(rng.uniform(9.5, 11), rng.uniform(1.0, 1.6), 1.0), (rng.uniform(12.5, 14), rng.uniform(1.0, 1.6), 1.0),
                     (rng.uniform(15.5, 17.5), rng.uniform(1.0, 1.6), 0.9)]
            floor = rng.uniform(0.0005, 0.004)
        else:  # global: product traffic from end users everywhere
            bumps = [(rng.uniform(0, 24), rng.uniform(2, 6), rng.uniform(0.2, 1.0)) for _ in range(rng.randint(1, 3))]
            floor = rng.uniform(0.3, 1.2)
        return Rhythm(rng, tz, bumps, floor, **kw)

    # ================================================================ benign
    def chat_turns(self, rng, mean_turns, broad=None):
        c = self.corpus
        r = rng.random()
        if r < 0.35:
            turns = list(rng.choice(c.chats))
        elif r < 0.65:
            turns = cover_turns(rng, None, max_turns=1)
        elif r < 0.82:
            turns = [rng.choice(c.short_prompts)]
        else:
            turns = [broad.next() if broad else rng.choice(c.instructions)]
        target = max(1, min(25, int(rng.expovariate(1 / mean_turns)) + 1))
        while len(turns) < target:
            turns.append(followup(rng) if rng.random() < 0.7 else rng.choice(c.turns))
        return turns[:max(target, 1)]

    def chat_person(self, a, per_day, rh, net, ua, models, mean_turns, t_from=None, t_to=None,
                    system=None, session_len=(1, 4), adopt_new=0.0, params_fn=None, content=None):
        """Session-structured human chat. Returns the number of requests sent."""
        rng = a.rng
        t_from = self.t0 if t_from is None else t_from
        t_to = self.t1 if t_to is None else t_to
        per_session = mean_turns * sum(session_len) / 2
        starts = nhpp(rng, t_from, t_to, per_day / per_session, rh)
        busy = 0
        sent = 0
        broad = Broad(rng, self.corpus, {"frame": 0.5, "math": 0.2, "templ": 0.1})
        for s in starts:
            if s < busy:
                continue
            t = s
            for _ in range(rng.randint(*session_len)):
                if t >= t_to:
                    break
                turns = content(rng) if content else self.chat_turns(rng, mean_turns, broad)
                pool = models + (self.released(t) if rng.random() < adopt_new else [])
                model = rng.choice(pool)
                params = params_fn(rng) if params_fn else {}
                t, n = self.conversation(a, t, turns, model, net.ip, ua, params=params, system=system,
                                         ctok_med=rng.uniform(150, 600), stop=t_to)
                sent += n
                t += int(lnorm(rng, 4 * MIN, 0.9))
            busy = t
        return sent

    def chat_params(self, rng):
        stream_share = rng.random()
        temp = rng.choice([None, None, None, 0.7, 1.0, 0.3])
        opts = rng.random() < 0.4

        def fn(r):
            p = {}
            if temp is not None:
                p["temperature"] = temp
            if r.random() < stream_share:
                p["stream"] = True
                if opts:
                    p["stream_options"] = {"include_usage": True}
            return p
        return fn

    PERSONAL_SYSTEMS = ["Answer briefly unless I ask for detail.", "You are my friendly assistant. Use British spelling.",
                        "Be concise and casual.", "Always answer in Spanish.", "You are a helpful assistant.",
                        "Explain things simply; I'm not technical.", "Reply in Markdown."]

    def p_chat_user(self, a):
        rng = a.rng
        per_day = heavy_daily(rng, 10, 60, rng.uniform(14, 30), 0.6)
        rh = self.rhythm(rng, rng.choice(["waking", "waking", "evening"]), weekend=rng.uniform(0.6, 1.6),
                         day_sigma=rng.uniform(0.2, 0.6), day_off=rng.uniform(0.05, 0.4))
        net = HomeNet(rng)
        ua = ua_app(rng) if rng.random() < 0.6 else ua_sdk(rng)
        models = rng.sample(CHAT_MODELS, rng.randint(1, 2))
        system = rng.choice(self.PERSONAL_SYSTEMS) if rng.random() < 0.25 else None
        self.chat_person(a, per_day, rh, net, ua, models, rng.uniform(2.0, 6.0), system=system,
                         adopt_new=0.15 if rng.random() < 0.3 else 0.0, params_fn=self.chat_params(rng))

    def p_heavy_chat_user(self, a):
        rng = a.rng
        per_day = rng.uniform(150, 400)
        rh = self.rhythm(rng, rng.choice(["waking", "workday_long"]), weekend=rng.uniform(0.5, 1.2),
                         day_sigma=rng.uniform(0.15, 0.35), day_off=rng.uniform(0.0, 0.1))
        net = HomeNet(rng, n_places=rng.randint(1, 3))
        ua = ua_app(rng) if rng.random() < 0.5 else ua_sdk(rng)
        models = rng.sample(CHAT_MODELS + STRONG_MODELS, rng.randint(1, 3))
        self.chat_person(a, per_day, rh, net, ua, models, rng.uniform(5, 14), session_len=(3, 10),
                         adopt_new=0.3, params_fn=self.chat_params(rng),
                         system=rng.choice(self.PERSONAL_SYSTEMS) if rng.random() < 0.3 else None)

    STUDENT_ASKS = ["can you walk me through this one? {q}", "{q}\nI need the steps so I can follow along",
                    "no entiendo este problema, ¿me explicas los pasos? {q}", "{q} - explain how to get there pls",
                    "Hausaufgabe: {q} Wie rechnet man das Schritt für Schritt?", "{q}\npodes me explicar passo a passo?",
                    "Est-ce que tu peux détailler la méthode ? {q}", "explain step by step: {q}",
                    "{q}\nmy answer was {n} but the book says otherwise, which step is wrong?", "help w/ homework pls. {q}",
                    "{q} explain step by step please, test on friday", "how do you even start this? {q}",
                    "{q}\n\nplease show the working, my teacher marks the method",
                    "I don't get how to solve this, can you explain it step by step? {q}", "{q}", "{q} ??"]
    STUDENT_FOLLOW = ["why is it {n} and not {m}?", "where does the {n} come from in step 2?",
                      "ok but why do we divide there", "can you check my answer, I got {n}", "is there a faster way?",
                      "got it, can I try a similar one?", "what formula is that?", "can you explain it more simply",
                      "ahh ok thank you", "and what if the numbers were bigger?", "wait i'm confused about the last part"]
    HOMEWORK = ["Balance the equation: {eq}", "What were the main causes of {hist}?", "Find the derivative of {poly}.",
                "Explain how {sci} works, it's for my biology class.", "Solve the system: {a}x + {b}y = {c}, {d}x - y = {e}.",
                "Convert {n} km/h to m/s.", "Write a thesis statement about {s}.", "What is the theme of {book}?",
                "Factor x^2 + {b}x + {c}.", "What is {a}% of {n}?"]

    def homework(self, rng):
        r = rng.random()
        if r < 0.45:
            q = rng.choice(self.corpus.math)
        elif r < 0.7:
            q = make_word_problem(rng)
        else:
            q = rng.choice(self.HOMEWORK).format(
                eq=rng.choice(["Fe + O2 -> Fe2O3", "C3H8 + O2 -> CO2 + H2O", "Al + HCl -> AlCl3 + H2", "KClO3 -> KCl + O2"]),
                hist=rng.choice(HISTORY), poly=f"{rng.randint(2, 9)}x^{rng.randint(2, 5)} - {rng.randint(1, 20)}x + {rng.randint(1, 9)}",
                sci=rng.choice(SCIENCE), a=rng.randint(1, 9), b=rng.randint(1, 12), c=rng.randint(1, 40),
                d=rng.randint(1, 9), e=rng.randint(1, 30), n=rng.randint(10, 400), s=rng.choice(SUBJECTS),
                book=rng.choice(["Of Mice and Men", "Things Fall Apart", "The Giver", "Animal Farm", "Macbeth"]))
        return q

    def p_student(self, a):
        rng = a.rng
        per_day = heavy_daily(rng, 5, 40, rng.uniform(8, 18), 0.6)
        rh = self.rhythm(rng, "school", weekend=rng.uniform(0.4, 1.2), day_sigma=0.5, day_off=rng.uniform(0.1, 0.4))
        net = HomeNet(rng, n_places=rng.choice([1, 2, 3]))
        ua = ua_app(rng) if rng.random() < 0.7 else ua_sdk(rng)
        models = rng.sample(CHEAP_MODELS + CHAT_MODELS[:2], rng.randint(1, 2))
        asks = rng.sample(self.STUDENT_ASKS, rng.randint(3, 7))
        p_follow = rng.uniform(0.25, 0.7)

        def content(r):
            turns = [r.choice(asks).format(q=self.homework(r), n=r.randint(2, 300))]
            if r.random() < p_follow:
                for _ in range(r.randint(1, 3)):
                    turns.append(r.choice(self.STUDENT_FOLLOW).format(n=r.randint(2, 99), m=r.randint(2, 99)))
            return turns
        self.chat_person(a, per_day, rh, net, ua, models, 1.8, session_len=(1, 3), content=content,
                         params_fn=self.chat_params(rng))

    DEV_PROMPTS = ["Say hello.", "ping", "Return a JSON object with keys name and age for: Maria, 34",
                   "Write a haiku about unit tests.", "What is 2+2?", "Translate 'good morning' into French.",
                   "List three colours as a JSON array.", "Respond with the word OK.",
                   "Summarize in one sentence: The meeting was moved to Thursday because the client is travelling.",
                   "Extract the city from: 'Ship to 12 Rue Oberkampf, Paris'", "Tell me a joke about databases.",
                   "Classify as positive or negative: 'the update broke everything'"]

    def p_developer(self, a):
        rng = a.rng
        per_day = heavy_daily(rng, 8, 90, rng.uniform(15, 40), 0.7)
        rh = self.rhythm(rng, "office", weekend=rng.uniform(0.05, 0.4), day_sigma=0.6, day_off=rng.uniform(0.15, 0.45))
        eta = rng.uniform(0.5, 0.85)
        immigrants = nhpp(rng, self.t0, self.t1, per_day * (1 - eta), rh)
        times = hawkes(rng, immigrants, self.t1, eta, logu(rng, 15 * SEC, 120 * SEC))
        office = f"{rng.choice(BUSINESS_OCTETS)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(2, 254)}"
        home = HomeNet(rng, n_places=1)
        uas = [ua_dev(rng) for _ in range(rng.randint(1, 3))]
        models = rng.sample(CHAT_MODELS + REASONING_MODELS, rng.randint(2, 4))
        own = [product_blurb(rng), rng.choice(self.corpus.short_prompts),
               rng.choice(BROAD_FRAMES).format(s=rng.choice(SUBJECTS), s2="x", aud=rng.choice(AUDIENCES), n=3, len="short", w=300)]
        prompts = rng.sample(self.DEV_PROMPTS, rng.randint(2, 6)) + own[:rng.randint(1, 3)]
        pw = [1 / (i + 1) ** 1.1 for i in range(len(prompts))]
        sys_versions = [None] + [f"You are the assistant for {rng.choice(COMPANIES)} (prompt v{v}). "
                                 f"{rng.choice(['Be concise.', 'Answer in JSON.', 'Never mention pricing.'])}" for v in range(1, 4)]
        temps = [0, 0.2, 0.5, 0.7, 1.0, 1.3]
        p_lp = rng.uniform(0.02, 0.25)
        ep_w = [rng.uniform(0.6, 1), rng.uniform(0, 0.2), rng.uniform(0, 0.2)]
        sweep_i = 0
        for t in times:
            ip = office if rng.random() < 0.75 and weekday_of(t, rh.tz_ms) < 5 else home.ip(t)
            ua = rng.choice(uas)
            q = rng.choices(prompts, pw)[0]
            model = rng.choice(models + self.released(t))
            path = rng.choices([P_CHAT, P_RESP, P_LEGACY], ep_w)[0]
            sweep_i += 1
            ctoks = lnorm(rng, 60 if len(q) < 80 else 300, 0.8)
            if path == P_LEGACY:
                body = {"model": rng.choice(LEGACY_MODELS), "prompt": q, "max_tokens": rng.choice([16, 64, 256]),
                        "temperature": temps[sweep_i % len(temps)]}
                if rng.random() < p_lp * 2:
                    body["logprobs"] = rng.randint(1, 5)
                self.emit(a, t, path, body, ctoks, "prose", ip, ua)
                continue
            if path == P_RESP:
                body = {"model": model, "input": q}
                if rng.random() < 0.5:
                    body["instructions"] = rng.choice(sys_versions[1:])
                if rng.random() < 0.3 and is_reasoning_model(model):
                    body["reasoning"] = {"effort": rng.choice(["low", "medium", "high"])}
                if rng.random() < 0.5:
                    body["max_output_tokens"] = rng.choice([64, 256, 1024])
                self.emit(a, t, path, body, ctoks, "prose", ip, ua)
                continue
            sysmsg = sys_versions[min(len(sys_versions) - 1, int((t - self.t0) / (self.t1 - self.t0) * len(sys_versions)))]
            msgs = ([{"role": "system", "content": sysmsg}] if sysmsg and rng.random() < 0.7 else []) + \
                [{"role": "user", "content": q}]
            body = {"model": model, "messages": msgs}
            if rng.random() < 0.6:
                body["temperature"] = temps[sweep_i % len(temps)]
            if rng.random() < 0.4:
                body["max_tokens"] = rng.choice([16, 50, 128, 512, 2048])
            if rng.random() < 0.1:
                body["top_p"] = rng.choice([0.1, 0.5, 0.9])
            if rng.random() < 0.12:
                body["n"] = rng.choice([2, 3])
            if rng.random() < p_lp:
                body["logprobs"] = True
                body["top_logprobs"] = rng.randint(1, 5)
            if rng.random() < 0.1:
                body["seed"] = rng.randint(1, 99)
            if rng.random() < 0.3:
                body["stream"] = True
            if is_reasoning_model(model) and rng.random() < 0.2:
                body["reasoning_effort"] = rng.choice(["low", "medium", "high"])
            self.emit(a, t, path, body, ctoks, "prose", ip, ua)

    LANG_FACTORS = {"German": 1.25, "French": 1.2, "Spanish": 1.15, "Japanese": 1.5, "Chinese (Simplified)": 1.3,
                    "Portuguese (Brazil)": 1.15, "Korean": 1.45, "Italian": 1.15, "Dutch": 1.2, "Polish": 1.35,
                    "Turkish": 1.4, "Arabic": 1.6, "Swedish": 1.15, "Vietnamese": 1.5, "Hindi": 1.9, "Indonesian": 1.2}

    def product_clock(self, rng, lo, hi):
        per_day = logu(rng, lo, hi) * self.scale
        rh = self.rhythm(rng, "global", weekend=rng.uniform(0.6, 1.1), day_sigma=rng.uniform(0.08, 0.25))
        start = self.t0 if rng.random() < 0.85 else self.t0 + rng.randrange(min(self.days, 2) * DAY)
        return nhpp(rng, start, self.t1, per_day, rh)

    def product_net(self, rng):
        prov = rng.choice(CLOUD_PROVIDERS)
        ips = [cloud_ip(rng, prov) for _ in range(rng.randint(1, 3))]
        return ips, ua_server(rng)

    def p_translation_product(self, a):
        rng = a.rng
        times = self.product_clock(rng, 500, 4000)
        ips, ua = self.product_net(rng)
        company = rng.choice(COMPANIES)
        kind = rng.choice(["text", "product listing", "support article", "app strings", "customer message"])
        langs = rng.sample(sorted(self.LANG_FACTORS), rng.randint(3, 12))
        system = (f"You are the localisation engine of {company}. You translate {kind}s for an international "
                  f"{rng.choice(['e-commerce marketplace', 'travel platform', 'SaaS product', 'game studio'])}. "
                  "Rules: translate faithfully and completely; never add, drop or summarise content; keep placeholders "
                  "in curly braces, HTML tags, Markdown, URLs, numbers and product names unchanged; use the formal "
                  f"register unless the source is informal; follow the {company} glossary (brand names stay in English). "
                  "Output only the translation, with no notes or quotation marks.")
        template = f"Translate the following {kind} into {{lang}}:\n\n{{text}}"
        model = rng.choice(CHEAP_MODELS + STRONG_MODELS[:2])
        temp = rng.choice([0, 0, 0.2, 0.3])
        users = rng.random() < 0.5
        c = self.corpus
        for t in times:
            r = rng.random()
            text = (ui_text(rng) if r < 0.3 else product_blurb(rng) if r < 0.5 else ticket_text(rng) if r < 0.6
                    else review_text(rng) if r < 0.7 else rng.choice(c.turns) if r < 0.85 else rng.choice(c.short_prompts))
            lang = rng.choice(langs)
            body = {"model": model, "messages": [{"role": "system", "content": system},
                                                 {"role": "user", "content": template.format(lang=lang, text=text)}],
                    "temperature": temp, "max_tokens": max(256, ntok(text) * 3)}
            if users:
                body["user"] = "u_" + hexs(rng, 8)
            self.emit(a, t, P_CHAT, body, ntok(text) * self.LANG_FACTORS[lang] * rng.uniform(0.9, 1.1) + 2,
                      "prose", rng.choice(ips), ua, seed=text)

    CLS_TASKS = [
        ("Classify the customer message into exactly one of: billing, technical, account, shipping, other.\n"
         "Reply with the label only.\n\nMessage: {x}", "ticket", ["billing", "technical", "account", "shipping", "other"]),
        ("Sentiment of this review (positive / negative / mixed)? Answer with one word.\n\nReview: {x}", "review",
         ["positive", "negative", "mixed"]),
        ("Is the following comment spam or abusive? Answer yes or no.\n\n{x}", "turn", ["yes", "no"]),
        ("Route this e-mail to one department ({labels}). Output only the department name.\n\n{x}", "email",
         ["sales", "support", "legal", "finance"]),
        ("Which product category fits this listing best? Options: {labels}. One word.\n\n{x}", "spec",
         ["outdoor", "kitchen", "office", "fashion", "electronics", "kids"]),
        ("Urgency of the ticket on a scale from 1 (low) to 4 (critical)? Answer with the digit.\n\n{x}", "ticket",
         ["1", "2", "3", "4"]),
    ]

    def p_classification_product(self, a):
        rng = a.rng
        times = self.product_clock(rng, 400, 3000)
        ips, ua = self.product_net(rng)
        tmpl, src, labels = rng.choice(self.CLS_TASKS)
        tmpl = tmpl.replace("{labels}", ", ".join(labels))
        model = rng.choice(CHEAP_MODELS)
        system = rng.choice([None, None, "You are a precise text classifier. Output only the label.",
                             f"You label incoming items for {rng.choice(COMPANIES)}'s triage queue."])
        lp = rng.random() < 0.5
        c = self.corpus
        for t in times:
            x = (ticket_text(rng) if src == "ticket" else review_text(rng) if src == "review" else
                 email_doc(rng) if src == "email" else product_spec(rng) if src == "spec" else rng.choice(c.turns))
            msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": tmpl.format(x=x)}]
            body = {"model": model, "messages": msgs, "temperature": 0, "max_tokens": 1 if lp else rng.choice([3, 5, 10])}
            if lp:
                body["logprobs"] = True
                body["top_logprobs"] = len(labels) if len(labels) <= 5 else 5
            self.emit(a, t, P_CHAT, body, rng.randint(1, 3), "label", rng.choice(ips), ua, seed=rng.choice(labels))

    EXTRACT_TASKS = [("invoice", "invoice_number, issue_date, vendor, customer, total, currency, iban", invoice_doc),
                     ("e-mail", "sender, subject, requested_date, phone, order_number", email_doc),
                     ("resume", "name, city, email, most_recent_job, degree, graduation_year, skills", resume_doc)]

    def p_extraction_product(self, a):
        rng = a.rng
        times = self.product_clock(rng, 300, 2000)
        ips, ua = self.product_net(rng)
        kind, fields, make = rng.choice(self.EXTRACT_TASKS)
        tmpl = f"Extract the fields {fields} from the {kind} below as JSON. Use null for anything missing.\n\n---\n{{doc}}\n---"
        model = rng.choice(CHEAP_MODELS + STRONG_MODELS[:1])
        fmt = rng.random() < 0.5
        for t in times:
            doc = make(rng)
            body = {"model": model, "messages": [{"role": "user", "content": tmpl.format(doc=doc)}], "temperature": 0}
            if fmt:
                body["response_format"] = {"type": "json_object"}
            self.emit(a, t, P_CHAT, body, ntok(doc) * rng.uniform(0.2, 0.55) + 8, "json", rng.choice(ips), ua)

    def p_rag_product(self, a):
        rng = a.rng
        times = self.product_clock(rng, 200, 1200)
        ips, ua = self.product_net(rng)
        product = rng.choice(["Ledgerly", "Planbright", "Skyforms", "Teamloom", "Docketry", "Shipwise"])
        system = (f"You are the help-centre assistant for {product}. Answer the user's question using only the "
                  "numbered context passages. Cite passages like [2]. If the passages do not contain the answer, say "
                  "you don't know and suggest contacting support. Keep answers under 200 words and never invent "
                  "features, prices or policies.")
        model = rng.choice(CHAT_MODELS[:4])
        stream_share = rng.random()
        c = self.corpus
        for t in times:
            k = rng.randint(3, 8)
            ctx = "\n".join(f"[{i + 1}] " + (kb_passage(rng, product) if rng.random() < 0.8 else product_blurb(rng))
                            for i in range(k))
            r = rng.random()
            q = (f"How do I {rng.choice(KB_ACTIONS)}?" if r < 0.5 else rng.choice(TICKET_ISSUES) + "?" if r < 0.8
                 else f"can I {rng.choice(KB_ACTIONS)} on the free plan" if r < 0.92 else rng.choice(c.short_prompts)[:300])
            msgs = [{"role": "system", "content": system}]
            if rng.random() < 0.2:
                msgs += [{"role": "user", "content": f"How do I {rng.choice(KB_ACTIONS)}?"},
                         {"role": "assistant", "content": filler(rng, rng.randint(150, 600), [product], "prose")}]
            msgs.append({"role": "user", "content": f"Context:\n{ctx}\n\nQuestion: {q}"})
            body = {"model": model, "messages": msgs, "temperature": 0.1}
            if rng.random() < stream_share:
                body["stream"] = True
            self.emit(a, t, P_CHAT, body, lnorm(rng, 180, 0.5), "prose", rng.choice(ips), ua, seed=q)

    BATCH_KINDS = [("Summarize:", "doc", (40, 150)), ("Write a product description for:", "spec", (120, 320)),
                   ("Generate an SEO meta description (max 155 characters) for:", "blurb", (30, 50)),
                   ("Rewrite in plain English:", "email", (0.8, 1.1)), ("Extract 5 keywords from:", "doc", (12, 30)),
                   ("Write a short, friendly reply to this review:", "review", (40, 90))]

    def p_batch_job(self, a):
        rng = a.rng
        instr, src, out = rng.choice(self.BATCH_KINDS)
        tz = round(rng.uniform(-8, 10))
        ip, ua = cloud_ip(rng), ua_server(rng)
        model = rng.choice(CHEAP_MODELS)
        temp = rng.choice([0, 0, 0.3, 0.7])
        mt = rng.choice([None, 300, 512, 800])
        sequential = rng.random() < 0.4
        interval = rng.uniform(1.5, 10) * SEC
        jit = rng.uniform(0.003, 0.03)
        skip_weekend = rng.random() < 0.3
        items_night = logu(rng, 200, 1500) * self.scale
        start_local = rng.uniform(0.3, 4.0)
        c = self.corpus
        for d in range(-1, self.days + 1):
            night = (self.t0 // DAY) * DAY + d * DAY + int((start_local - tz) * HOUR) + int(rng.gauss(0, 3) * MIN)
            if skip_weekend and weekday_of(night, int(tz * HOUR)) >= 5:
                continue
            n_items = int(items_night * rng.uniform(0.7, 1.3))
            gap = interval
            if n_items * gap > 4 * HOUR:
                gap = 4 * HOUR / n_items
            if n_items * gap < HOUR:
                n_items = int(HOUR / gap * rng.uniform(1, 1.5))
            t = float(night)
            for _ in range(n_items):
                x = (rng.choice(c.user_prompts)[:1500] if src == "doc" else product_spec(rng) if src == "spec"
                     else product_blurb(rng) if src == "blurb" else email_doc(rng) if src == "email" else review_text(rng))
                body = {"model": model, "messages": [{"role": "user", "content": f"{instr}\n\n{x}"}], "temperature": temp}
                if mt:
                    body["max_tokens"] = mt
                ct = rng.uniform(*out) * (ntok(x) if out[1] < 5 else 1)
                self.emit(a, t, P_CHAT, body, ct, "prose", ip, ua, seed=x)
                if sequential:
                    t += ct * ms_per_token(model) + rng.uniform(300, 900) + rng.uniform(40, 300)
                else:
                    t += gap * (1 + rng.gauss(0, jit))

    AGENT_TOOLS = {
        "read_file": {"path": {"type": "string"}},
        "write_file": {"path": {"type": "string"}, "content": {"type": "string"}},
        "apply_patch": {"patch": {"type": "string"}},
        "run_command": {"command": {"type": "string"}, "timeout_s": {"type": "integer"}},
        "search_code": {"query": {"type": "string"}, "glob": {"type": "string"}},
        "list_dir": {"path": {"type": "string"}},
        "run_tests": {"selector": {"type": "string"}},
    }
    AGENT_TASKS = ["Fix the failing test in {f}.", "Add pagination to the /{n} endpoint.",
                   "Refactor {f} so the parsing logic is in its own module.", "Why does `make build` fail on CI? Fix it.",
                   "Add input validation to the signup handler and tests for it.", "Upgrade the {n} dependency and fix the breakage.",
                   "Implement retry with backoff in the HTTP client in {f}.", "Write docs for the public functions in {f}.",
                   "The {n} job is slow; profile it and make it faster.", "Add a --dry-run flag to the CLI."]

    def p_coding_agent(self, a):
        rng = a.rng
        tools = [{"type": "function", "function": {"name": n, "description": f"{n.replace('_', ' ')} in the workspace",
                                                   "parameters": {"type": "object", "properties": props,
                                                                  "required": list(props)[:1]}}}
                 for n, props in self.AGENT_TOOLS.items() if n in ("read_file", "run_command") or rng.random() < 0.7]
        names = [t["function"]["name"] for t in tools]
        rules = ["Work autonomously in the repository until the task is done.", "Prefer small, reviewable changes.",
                 "Run the tests after every change.", "Never commit secrets.", "Explain what you changed at the end.",
                 "Use the tools; do not guess file contents.", "Keep the existing code style.",
                 "If a command fails, read the error and try a different approach.",
                 "Ask before deleting files.", "Respect .gitignore."]
        system = (f"You are {rng.choice(['Forge', 'Patchwork', 'Cinder', 'Quay'])}, an autonomous coding agent operating on "
                  f"the {rng.choice(['monorepo', 'service', 'backend', 'SDK'])} of {rng.choice(COMPANIES)}. "
                  + " ".join(rng.sample(rules, rng.randint(6, 10)))
                  + " Environment: Linux with " + ", ".join(rng.sample(CODE_LANGS, 3)) + " toolchains. Repository map: "
                  + ", ".join(f"src/{d}/" for d in rng.sample(["api", "core", "util", "db", "cli", "jobs", "web", "auth"], 5)) + ".")
        tools_tok = ntok(json.dumps(tools, separators=(",", ":")))
        model = rng.choice(STRONG_MODELS + REASONING_MODELS[:3])
        ip, ua = (cloud_ip(rng), ua_sdk(rng)) if rng.random() < 0.6 else (HomeNet(rng, 1).home, ua_sdk(rng))
        rh = self.rhythm(rng, "global", weekend=rng.uniform(0.3, 0.9), day_sigma=0.3)
        sessions = nhpp(rng, self.t0, self.t1, rng.uniform(1.5, 6), rh)
        budget = rng.randint(9000, 20000)  # chars kept before old tool outputs are elided
        mt_key = rng.choice(["max_tokens", "max_completion_tokens", None])
        files = [f"src/{rng.choice(['api', 'core', 'util', 'db', 'cli'])}/{rng.choice(CODE_TASKS).split()[0]}_{i}.py" for i in range(8)]
        busy = 0
        for s in sessions:
            if s < busy:
                continue
            t = s
            task = rng.choice(self.AGENT_TASKS).format(f=rng.choice(files), n=rng.choice(["orders", "users", "export", "billing"]))
            if rng.random() < 0.2:
                task = rng.choice(self.corpus.coding)
            msgs = [{"role": "system", "content": system}, {"role": "user", "content": task}]
            toks = [msg_tokens(m) for m in msgs]
            steps = int(clip(lnorm(rng, 22, 0.7), 4, 120))
            for step in range(steps):
                if t >= self.t1:
                    break
                final = step == steps - 1
                body = {"model": model, "messages": list(msgs), "tools": tools, "tool_choice": "auto", "stream": True}
                if mt_key:
                    body[mt_key] = 8192
                if final:
                    ct = lnorm(rng, 350, 0.5)
                    out = self.emit(a, t, P_CHAT, body, ct, "prose", ip, ua, ptoks=3 + sum(toks) + tools_tok,
                                    ttft=lnorm(rng, 900, 0.4))
                    break
                name = rng.choice(names)
                arg = {"path": rng.choice(files)} if name in ("read_file", "list_dir", "write_file") else \
                    {"command": rng.choice(["pytest -q", "make build", "git diff", "ruff check .", "cargo test"])} \
                    if name == "run_command" else {"query": rng.choice(CODE_TASKS).split()[0]} if name == "search_code" \
                    else {"selector": "tests/"} if name == "run_tests" else {"patch": "--- a\n+++ b\n" + filler(rng, 200, [], "code")}
                args = json.dumps(arg)
                ct = ntok(args) + rng.randint(8, 60)
                self.emit(a, t, P_CHAT, body, ct, "tool", ip, ua, seed=json.dumps({"name": name, "arguments": args}),
                          ptoks=3 + sum(toks) + tools_tok, ttft=lnorm(rng, 700, 0.4))
                cid = "call_" + hexs(rng, 20)
                am = {"role": "assistant", "content": None,
                      "tool_calls": [{"id": cid, "type": "function", "function": {"name": name, "arguments": args}}]}
                result = filler(rng, int(min(3000, lnorm(rng, 600, 0.8))) + 40, [name] + files[:2],
                                "code" if name in ("read_file", "search_code") else "prose")
                tm = {"role": "tool", "tool_call_id": cid, "content": result}
                msgs += [am, tm]
                toks += [msg_tokens(am), msg_tokens(tm)]
                if rng.random() < 0.06:
                    um = {"role": "user", "content": rng.choice(["also update the changelog", "run the full suite please",
                                                                 "don't touch the migrations", "looks good, continue"])}
                    msgs.append(um)
                    toks.append(msg_tokens(um))
                # context compaction: elide the oldest tool outputs once over budget
                i = 2
                while sum(toks) * 4 > budget and i < len(msgs) - 4:
                    if msgs[i]["role"] == "tool" and msgs[i]["content"] != "[output elided]":
                        msgs[i] = dict(msgs[i], content="[output elided]")
                        toks[i] = msg_tokens(msgs[i])
                    i += 1
                t += ct * ms_per_token(model) + lnorm(rng, 700, 0.4) + lnorm(rng, 2500, 1.1)
            busy = t

    def p_company_nat(self):
        m = self.master
        crng = random.Random(m.getrandbits(64))
        name = crng.choice(COMPANIES)
        n = crng.randint(20, 60)
        tz = round(crng.uniform(-8, 9))
        net24 = f"{crng.choice(BUSINESS_OCTETS)}.{crng.randrange(256)}.{crng.randrange(256)}"
        nat = [f"{net24}.{crng.randrange(2, 254)}" for _ in range(crng.choice([1, 1, 1, 2, 3]))]
        ua = f"{name.split()[0]}Assist/{crng.randint(1, 4)}.{crng.randint(0, 12)}.{crng.randint(0, 30)} (internal; python-httpx)"
        system = (f"You are {name.split()[0]} Assist, the internal AI assistant for {name} employees. Be accurate and "
                  "professional, follow the company style guide, and never paste confidential customer data into "
                  "external tools. If a question concerns HR policy or legal matters, point to the intranet.") \
            if crng.random() < 0.7 else None
        model_pool = crng.sample(CHAT_MODELS, 2)
        bumps_c = (crng.uniform(9.5, 10.5), crng.uniform(14, 15.5))
        for _ in range(n):
            a = self.new("company_nat")
            rng = a.rng
            heavy = rng.random() < 0.12
            per_day = rng.uniform(80, 220) if heavy else heavy_daily(rng, 2, 45, rng.uniform(6, 15), 0.7)
            rh = Rhythm(rng, tz + rng.choice([0, 0, 0, 1, -1]) * 0,
                        [(bumps_c[0] + rng.gauss(0, 0.5), 1.3, 1.0), (bumps_c[1] + rng.gauss(0, 0.5), 1.5, 0.9)],
                        floor=0.01, weekend=rng.uniform(0.0, 0.08), day_sigma=0.4, day_off=rng.uniform(0.03, 0.2))

            class _Nat:
                def ip(self_inner, t, _r=rng):
                    return _r.choice(nat)

            def content(r):
                turns = [work_prompt(r, self.corpus)] if r.random() < 0.75 else cover_turns(r, self.corpus, 1)
                while r.random() < 0.35 and len(turns) < 6:
                    turns.append(followup(r))
                return turns
            self.chat_person(a, per_day, rh, _Nat(), ua, model_pool, 2.0, system=system,
                             session_len=(1, 3 if not heavy else 8), content=content,
                             params_fn=lambda r: {"stream": True} if r.random() < 0.8 else {})

    # ================================================================ harvest helpers
    GENERIC_SYSTEMS = ["You are a knowledgeable assistant. Give complete, well-organised answers.",
                       "You write high-quality, detailed responses.", "Answer as an expert in the relevant field.",
                       "You are a helpful assistant that answers in depth.", "Respond thoroughly and accurately."]

    class Knobs:
        """A harvesting client's fingerprint and parameters, drawn from wide ranges."""

        def __init__(self, gen, rng, models, ip_modes=("cloud1", "cloudpool", "home", "proxy"), mt_choices=None):
            self.rng = rng
            self.models = rng.sample(models, min(len(models), rng.randint(1, 3)))
            self.mw = [rng.uniform(0.2, 1) for _ in self.models]
            self.uas = [ua_server(rng) if rng.random() < 0.6 else ua_sdk(rng) for _ in range(rng.choice([1, 1, 2]))]
            self.ip_mode = rng.choice(ip_modes)
            prov = rng.choice(CLOUD_PROVIDERS)
            self.pool = [cloud_ip(rng, prov) for _ in range(1 if self.ip_mode == "cloud1" else rng.randint(2, 6))]
            self.home = HomeNet(rng, n_places=1)
            self.home.churn = rng.uniform(0.2, 1.0)
            self.proxy_ip, self.proxy_until = None, 0
            self.proxy_ttl = logu(rng, 1 * MIN, 2 * HOUR)
            self.mt = rng.choice(mt_choices or [None, 1024, 2048, 4000, 4096, 8192, 16384, 32000])
            self.mt_key = rng.choice(["max_tokens", "max_tokens", "max_completion_tokens"])
            self.temp = rng.choice([None, None, 0, 0.2, 0.5, 0.7, 0.8, 1.0, 1.2])
            self.stream = rng.choice([0.0, 0.0, rng.random(), 1.0])
            self.cover = 0.0 if rng.random() < 0.5 else rng.uniform(0.02, 0.25)
            self.system = rng.choice(gen.GENERIC_SYSTEMS) if rng.random() < 0.35 else None

        def ip(self, t):
            rng = self.rng
            if self.ip_mode == "home":
                return self.home.ip(t)
            if self.ip_mode == "proxy":
                if t >= self.proxy_until or self.proxy_ip is None:
                    self.proxy_ip, self.proxy_until = resid_ip(rng), t + self.proxy_ttl * rng.uniform(0.5, 1.5)
                return self.proxy_ip
            return rng.choice(self.pool)

        def ua(self):
            return self.uas[0] if len(self.uas) == 1 else self.rng.choice(self.uas)

        def model(self):
            return self.rng.choices(self.models, self.mw)[0]

        def params(self, body, mt_key=None):
            rng = self.rng
            if self.mt:
                body[mt_key or self.mt_key] = self.mt
            if self.temp is not None:
                body["temperature"] = self.temp
            if self.stream and rng.random() < self.stream:
                body["stream"] = True
            return body

    def machine_times(self, rng, per_day, start=None, mode=None, law=None):
        start = self.harvest_start(rng) if start is None else start
        stop = self.t1 if rng.random() < 0.85 else start + int(rng.uniform(0.4, 0.9) * max(0, self.t1 - start))
        runs, hours = uptime_runs(rng, start, stop, mode)
        return Cadence(rng, law).times(runs, per_day / max(1.0, hours))

    def chat_single(self, k, text, system=None):
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        return {"model": k.model(), "messages": msgs}

    @staticmethod
    def shape_for(q):
        return "code" if re.search(r"\b(code|function|implement|program|script|SQL|class)\b", q) else \
            rng_free_shape(q)

    # ================================================================ single-account harvesters
    def p_instruction_harvester(self, a):
        rng = a.rng
        k = self.Knobs(self, rng, STRONG_MODELS + CHAT_MODELS[:2])
        broad = Broad(rng, self.corpus, {"math": 0.3, "wordprob": 0.3})
        med = rng.uniform(600, 1800)
        for t in self.machine_times(rng, logu(rng, 300, 2000) * self.scale):
            if k.cover and rng.random() < k.cover:
                self.cover(a, t, k.model(), k.ip(t), k.ua())
                continue
            q = broad.next()
            body = k.params(self.chat_single(k, q, k.system))
            self.emit(a, t, P_CHAT, body, lnorm(rng, med, 0.45), self.shape_for(q), k.ip(t), k.ua())

    def p_reasoning_harvester(self, a):
        rng = a.rng
        k = self.Knobs(self, rng, REASONING_MODELS + STRONG_MODELS[:2])
        broad = Broad(rng, self.corpus, {"math": rng.uniform(2, 8), "wordprob": rng.uniform(1, 4), "frame": 1})
        fs = rng.choice([0.0, 0.1, 0.3, 0.6])
        phrases = [cot_phrase(rng, fs) for _ in range(rng.randint(1, 4))]
        places = rng.sample(["prefix", "suffix", "both", "format"], rng.randint(1, 2))
        effort = rng.random() < 0.5
        med = rng.uniform(1200, 3200)
        for t in self.machine_times(rng, logu(rng, 200, 1500) * self.scale):
            if k.cover and rng.random() < k.cover:
                self.cover(a, t, k.model(), k.ip(t), k.ua())
                continue
            q = broad.next()
            body = k.params(self.chat_single(k, place_cot(rng, q, rng.choice(phrases), rng.choice(places)), k.system))
            if effort and is_reasoning_model(body["model"]):
                body["reasoning_effort"] = "high"
            self.emit(a, t, P_CHAT, body, lnorm(rng, med, 0.4), "steps", k.ip(t), k.ua(), seed=q)

    def p_logprob_harvester(self, a):
        rng = a.rng
        k = self.Knobs(self, rng, CHAT_MODELS + STRONG_MODELS, mt_choices=[None, 128, 256, 512, 1024, 2048])
        broad = Broad(rng, self.corpus)
        mode = rng.choice(["top", "n", "both"])
        top = rng.randint(2, 20)
        n = rng.randint(3, 10)
        legacy = rng.choice([0.0, 0.0, rng.uniform(0.1, 0.5), 1.0])
        legacy_model = rng.choice(LEGACY_MODELS)
        echo = rng.random() < 0.3
        temp = rng.choice([1.0, 1.0, 0.7, 0.9, 1.2])
        med = rng.uniform(120, 600)
        for t in self.machine_times(rng, logu(rng, 150, 1200) * self.scale):
            if k.cover and rng.random() < k.cover:
                self.cover(a, t, k.model(), k.ip(t), k.ua())
                continue
            q = broad.next()
            if rng.random() < legacy:
                body = {"model": legacy_model, "prompt": q, "max_tokens": k.mt or 512, "temperature": temp,
                        "logprobs": min(5, top)}
                if mode != "top":
                    body["n"] = n
                if echo:
                    body["echo"] = True
                self.emit(a, t, P_LEGACY, body, lnorm(rng, med, 0.5), "prose", k.ip(t), k.ua())
                continue
            body = k.params(self.chat_single(k, q, k.system))
            body["temperature"] = temp
            if mode in ("top", "both"):
                body["logprobs"] = True
                body["top_logprobs"] = top
            if mode in ("n", "both"):
                body["n"] = n
            self.emit(a, t, P_CHAT, body, lnorm(rng, med, 0.5), "prose", k.ip(t), k.ua())

    HARVEST_TEMPLATES = [
        "Write an encyclopedia-style article titled \"{S}\". Sections: Overview, Background, Key Concepts, Debates, Further Reading. Aim for about {w} words.",
        "You are writing a textbook chapter.\nTopic: {s}\nInclude: learning objectives, a detailed explanation, three worked examples, and five end-of-chapter exercises with full solutions.",
        "Create a realistic conversation of at least 12 exchanges between a {r1} and a {r2} about {s}.",
        "Generate a five-question multiple-choice exam on {s}. For each question give four options, the correct answer, and a paragraph explaining why each wrong option is wrong.",
        "Instruction: {task}\nOutput a complete, high-quality response of at least 400 words.",
        "Explain {s} three times: once for a child, once for a university student and once for a specialist.",
        "Write a detailed review of a {prod} as if you had used it for a year, with pros, cons and a verdict.",
        "Write a short story of about {w} words that teaches the idea of {s}.",
        "[TOPIC] {s}\n[AUDIENCE] {aud}\n[FORMAT] long-form tutorial with headings\n[LENGTH] {w} words",
        "Produce 10 question-answer pairs about {s}. Each answer should be 3-5 sentences.",
        "Rewrite the following request as an expert would phrase it, then answer it thoroughly:\n{task}",
        "Topic: {s}\nTask: write a persuasive essay, then a rebuttal, then a balanced conclusion.",
    ]
    ROLE_PAIRS = ["doctor", "patient", "teacher", "student", "engineer", "manager", "journalist", "scientist",
                  "lawyer", "client", "chef", "apprentice", "historian", "tourist"]

    def fill_template(self, rng, tmpl, subjects, tasks):
        s = subjects.next()
        return tmpl.format(s=s, S=s[:1].upper() + s[1:], w=rng.choice([600, 800, 1000, 1500, 2000]),
                           r1=rng.choice(self.ROLE_PAIRS), r2=rng.choice(self.ROLE_PAIRS), aud=rng.choice(AUDIENCES),
                           prod=f"{rng.choice(ADJ)} {rng.choice(PRODUCTS)}", task=tasks.next())

    def p_templated_harvester(self, a):
        rng = a.rng
        k = self.Knobs(self, rng, STRONG_MODELS + CHEAP_MODELS)
        tmpls = rng.sample(self.HARVEST_TEMPLATES, rng.randint(1, 3))
        tw = [rng.uniform(0.3, 1) for _ in tmpls]
        subjects = Stream(rng, SUBJECTS)
        tasks = Stream(rng, self.corpus.instructions + self.corpus.short_prompts)
        med = rng.uniform(700, 2000)
        for t in self.machine_times(rng, logu(rng, 300, 2000) * self.scale):
            if k.cover and rng.random() < k.cover:
                self.cover(a, t, k.model(), k.ip(t), k.ua())
                continue
            x = self.fill_template(rng, rng.choices(tmpls, tw)[0], subjects, tasks)
            body = k.params(self.chat_single(k, x, k.system))
            self.emit(a, t, P_CHAT, body, lnorm(rng, med, 0.4), rng.choice(["prose", "outline"]), k.ip(t), k.ua())

    HP_WRAPPERS = ["Q: {q}", "Please answer: {q}", "Question - {q}", "{q}\n\nAnswer:", "Answer this: {q}",
                   "Can you answer the following? {q}", "{q} (detailed answer please)", "{q}", "{q}",
                   "Topic: {q}", "Help me with this: {q}", "> {q}"]

    def p_human_paced_harvester(self, a):
        rng = a.rng
        per_day = rng.uniform(150, 600)
        rh = self.rhythm(rng, rng.choice(["workday_long", "office", "evening"]),
                         weekend=rng.uniform(0.0, 1.0), day_sigma=0.12, day_off=rng.uniform(0.0, 0.15))
        start = self.harvest_start(rng, 1)
        times = nhpp(rng, start, self.t1, per_day, rh)
        isp = rng.choice(ISPS)
        session_gap = rng.uniform(20, 45) * MIN
        ua = ua_sdk(rng) if rng.random() < 0.6 else ua_app(rng)
        models = rng.sample(STRONG_MODELS + CHAT_MODELS, rng.randint(1, 2))
        wraps = rng.sample(self.HP_WRAPPERS, rng.randint(1, 3))
        cot_share = rng.choice([0.0, 0.0, 0.0, rng.uniform(0.02, 0.12)])
        phrase = cot_phrase(rng, 0.2)
        broad = Broad(rng, self.corpus, {"code": 1.5})
        med = rng.uniform(500, 1500)
        mt = rng.choice([None, None, 2048, 4096])
        stream = rng.random() < 0.5
        cover = rng.choice([0.0, rng.uniform(0.02, 0.1)])
        ip, last = None, -10 ** 15
        for t in times:
            if ip is None or t - last > session_gap:
                ip = f"{isp_subnet(rng, isp)}.{rng.randrange(2, 254)}"
            last = t
            model = rng.choice(models)
            if rng.random() < cover:
                self.cover(a, t, model, ip, ua)
                continue
            q = broad.next()
            x = rng.choice(wraps).format(q=q)
            if rng.random() < cot_share:
                x = place_cot(rng, x, phrase, "suffix")
            body = {"model": model, "messages": [{"role": "user", "content": x}]}
            if mt:
                body["max_tokens"] = mt
            if stream:
                body["stream"] = True
            self.emit(a, t, P_CHAT, body, lnorm(rng, med, 0.45), self.shape_for(q), ip, ua, seed=q)

    def p_system_prompt_reasoning(self, a):
        rng = a.rng
        k = self.Knobs(self, rng, REASONING_MODELS + STRONG_MODELS)
        system = spr_system_prompt(rng)
        broad = Broad(rng, self.corpus, {"math": rng.uniform(0.5, 5), "wordprob": rng.uniform(0.3, 2)})
        if rng.random() < 0.6:
            times = self.machine_times(rng, logu(rng, 150, 1500) * self.scale)
        else:
            rh = self.rhythm(rng, rng.choice(["workday_long", "waking"]), weekend=rng.uniform(0.3, 1), day_sigma=0.2)
            times = nhpp(rng, self.harvest_start(rng, 1), self.t1, rng.uniform(150, 600), rh)
        med = rng.uniform(1000, 2500)
        for t in times:
            if k.cover and rng.random() < k.cover:
                self.cover(a, t, k.model(), k.ip(t), k.ua())
                continue
            q = broad.next()
            body = k.params(self.chat_single(k, q, system))
            self.emit(a, t, P_CHAT, body, lnorm(rng, med, 0.4), "steps", k.ip(t), k.ua(), seed=q)

    def p_responses_harvester(self, a):
        rng = a.rng
        k = self.Knobs(self, rng, REASONING_MODELS)
        mode = rng.choice(["instructions", "reasoning", "both"])
        instr = rng.choice(RESP_INSTRUCTIONS + [spr_system_prompt(rng)])
        as_list = rng.choice([0.0, 0.5, 1.0])
        broad = Broad(rng, self.corpus, {"math": rng.uniform(0.5, 4)})
        mot = rng.choice([None, 4096, 8192, 16000, 25000])
        med = rng.uniform(1000, 3000)
        for t in self.machine_times(rng, logu(rng, 150, 1200) * self.scale):
            if k.cover and rng.random() < k.cover:
                self.cover(a, t, rng.choice(CHAT_MODELS), k.ip(t), k.ua())
                continue
            q = broad.next()
            body = {"model": k.model(), "input": [{"role": "user", "content": q}] if rng.random() < as_list else q}
            if mode in ("instructions", "both"):
                body["instructions"] = instr
            if mode in ("reasoning", "both"):
                body["reasoning"] = {"effort": "high", "summary": "detailed"}
            if mot:
                body["max_output_tokens"] = mot
            if k.stream and rng.random() < k.stream:
                body["stream"] = True
            self.emit(a, t, P_RESP, body, lnorm(rng, med, 0.4), "steps", k.ip(t), k.ua(), seed=q)

    LEGACY_FORMATS = ["{q}\n\n", "### Instruction:\n{q}\n\n### Response:\n", "Q: {q}\nA:",
                      "Below is a request. Write a thorough, complete response.\n\n{q}\n\nResponse:", "User: {q}\nAssistant:",
                      "{q}\n\nDetailed answer:"]

    def p_completions_harvester(self, a):
        rng = a.rng
        k = self.Knobs(self, rng, LEGACY_MODELS)
        fmt = rng.choice(self.LEGACY_FORMATS)
        model = rng.choice(LEGACY_MODELS[:2])
        mt = rng.choice([1000, 1500, 2048, 3000, 4000])
        broad = Broad(rng, self.corpus)
        med = rng.uniform(600, 1600)
        stop = rng.choice([None, ["###"], ["\nUser:"], ["Q:"]])
        for t in self.machine_times(rng, logu(rng, 150, 1200) * self.scale):
            q = broad.next()
            body = {"model": model, "prompt": fmt.format(q=q), "max_tokens": mt}
            if k.temp is not None:
                body["temperature"] = k.temp
            if stop:
                body["stop"] = stop
            self.emit(a, t, P_LEGACY, body, lnorm(rng, med, 0.45), "prose", k.ip(t), k.ua(), seed=q)

    def p_soft_label_human(self, a):
        rng = a.rng
        per_day = rng.uniform(30, 150)
        rh = self.rhythm(rng, rng.choice(["waking", "office", "evening"]), weekend=rng.uniform(0.2, 1.1),
                         day_sigma=0.15, day_off=rng.uniform(0.0, 0.25))
        times = nhpp(rng, self.harvest_start(rng, 1), self.t1, per_day, rh)
        net = HomeNet(rng)
        ua = ua_sdk(rng) if rng.random() < 0.7 else ua_dev(rng)
        models = rng.sample(CHAT_MODELS, rng.randint(1, 2))
        top = rng.randint(3, 20)
        n_share = rng.choice([0.0, 0.0, rng.uniform(0.1, 0.6)])
        legacy = rng.choice([0.0, 0.0, 0.0, rng.uniform(0.2, 1.0)])
        broad = Broad(rng, self.corpus)
        med = rng.uniform(100, 500)
        temp = rng.choice([None, 1.0, 0.8])
        for t in times:
            q = broad.next()
            if rng.random() < legacy:
                body = {"model": LEGACY_MODELS[0], "prompt": q, "max_tokens": rng.choice([256, 512]), "logprobs": 5}
                self.emit(a, t, P_LEGACY, body, lnorm(rng, med, 0.5), "prose", net.ip(t), ua)
                continue
            body = {"model": rng.choice(models), "messages": [{"role": "user", "content": q}], "logprobs": True,
                    "top_logprobs": top}
            if temp is not None:
                body["temperature"] = temp
            if rng.random() < n_share:
                body["n"] = rng.randint(2, 6)
            self.emit(a, t, P_CHAT, body, lnorm(rng, med, 0.5), "prose", net.ip(t), ua)

    def p_model_switch(self, a):
        rng = a.rng
        new_model, rel = rng.choice(self.releases)
        switch = rel + int(rng.uniform(0.2, 30) * HOUR)
        if switch >= self.t1:
            switch = rel + int(rng.uniform(0.1, 0.8) * (self.t1 - rel))
        normal_days = rng.randint(1, 3)
        begin = max(self.t0, switch - normal_days * DAY)
        rh = self.rhythm(rng, "waking", weekend=1.0, day_sigma=0.3, day_off=0.0)
        net = HomeNet(rng)
        ua = ua_sdk(rng) if rng.random() < 0.7 else ua_app(rng)
        models = rng.sample(CHAT_MODELS, rng.randint(1, 2))
        self.chat_person(a, rng.uniform(10, 50), rh, net, ua, models, rng.uniform(2, 5), t_from=begin, t_to=switch,
                         params_fn=self.chat_params(rng))
        # harvesting phase on the new model
        k = self.Knobs(self, rng, [new_model], ip_modes=("home", "home", "cloud1", "cloudpool"))
        k.models, k.mw = [new_model], [1.0]
        if k.ip_mode == "home":
            k.home = net
        if rng.random() < 0.6:
            k.uas = [ua]
        broad = Broad(rng, self.corpus)
        cot = rng.choice([0.0, 0.0, rng.uniform(0.2, 0.6)])
        phrase = cot_phrase(rng, 0.2)
        med = rng.uniform(700, 2500)
        times = self.machine_times(rng, logu(rng, 300, 1800) * self.scale, start=switch, mode="always")
        for t in times:
            q = broad.next()
            x = place_cot(rng, q, phrase, "suffix") if rng.random() < cot else q
            body = k.params({"model": new_model, "messages": [{"role": "user", "content": x}]})
            self.emit(a, t, P_CHAT, body, lnorm(rng, med, 0.45), "prose", k.ip(t), k.ua(), seed=q)

    def p_evasive(self, a):
        rng = a.rng
        per_day = rng.uniform(100, 500)
        rh = self.rhythm(rng, rng.choice(["workday_long", "waking"]), weekend=rng.uniform(0.4, 1.0), day_sigma=0.3,
                         day_off=rng.uniform(0, 0.15))
        eta = rng.uniform(0.3, 0.7)
        imm = nhpp(rng, self.harvest_start(rng, 1), self.t1, per_day * (1 - eta), rh)
        times = hawkes(rng, imm, self.t1, eta, logu(rng, 40 * SEC, 4 * MIN))
        ips = [resid_ip(rng) if rng.random() < 0.6 else cloud_ip(rng) for _ in range(rng.randint(2, 3))]
        ip_every = rng.choice(["request", "hour"])
        uas = [ua_sdk(rng), ua_app(rng)][:rng.randint(1, 2)]
        models = rng.sample(STRONG_MODELS + REASONING_MODELS, 2)
        phrases = [cot_phrase(rng, 0.35) for _ in range(rng.randint(3, 8))]
        broad = Broad(rng, self.corpus, {"math": rng.uniform(0.5, 3)})
        cover = rng.uniform(0.15, 0.4)
        pad = rng.uniform(0.3, 0.7)
        cot = rng.uniform(0.3, 0.8)
        med = rng.uniform(700, 2200)
        for t in times:
            t += int(rng.uniform(-20, 20) * SEC)
            ip = rng.choice(ips) if ip_every == "request" else ips[((t - self.t0) // HOUR) % len(ips)]
            ua = rng.choice(uas)
            model = rng.choice(models)
            if rng.random() < cover:
                self.cover(a, t, model, ip, ua)
                continue
            q = broad.next()
            x = place_cot(rng, q, rng.choice(phrases), rng.choice(["prefix", "suffix"])) if rng.random() < cot else q
            msgs = []
            if rng.random() < pad:  # multi-turn padding: fabricated small talk before the real ask
                for turn in cover_turns(rng, None, rng.randint(1, 2)):
                    msgs += [{"role": "user", "content": turn},
                             {"role": "assistant", "content": filler(rng, rng.randint(80, 500), seed_words(turn), "prose")}]
                x = rng.choice(["", "ok, different question. ", "thanks! next: ", "also, "]) + x
            msgs.append({"role": "user", "content": x})
            body = {"model": model, "messages": msgs}
            if rng.random() < 0.5:
                body["temperature"] = round(rng.uniform(0.3, 1.1), 2)
            if rng.random() < 0.4:
                body["max_tokens"] = rng.choice([3000, 4096, 6000])
            if rng.random() < 0.4:
                body["stream"] = True
            self.emit(a, t, P_CHAT, body, lnorm(rng, med, 0.45), "steps" if x != q else "prose", ip, ua, seed=q)

    # ================================================================ multi-account campaigns
    HYDRA_TEMPLATES = [
        ("Reasoning task. Work through the problem below completely: state what is given, derive every intermediate "
         "result and check your work.\n\n", "\n\nReturn the full reasoning first and the final answer last."),
        ("<task>\n", "\n</task>\nRespond with your complete step-by-step thought process inside <trace> tags, then the answer."),
        ("Problem for analysis:\n", "\n\nExplain each step of your thinking in detail before you give the solution."),
        ("", "\n\n— Write out the entire derivation line by line; the final answer goes after 'RESULT:'."),
    ]

    def p_hydra_shared(self):
        crng = random.Random(self.master.getrandbits(64))
        cid = "cmp-" + hexs(self.idrng, 8)
        members = crng.randint(30, 50)
        pre, suf = crng.choice(self.HYDRA_TEMPLATES)
        resid = crng.random() < 0.5
        subnets = [isp_subnet(crng) if resid else cloud_subnet(crng) for _ in range(4)]
        period = crng.uniform(8, 13) * MIN
        start = self.t0 + crng.randint(0, max(0, min(1, self.days - 1))) * DAY + crng.randrange(12 * HOUR)
        window = None if crng.random() < 0.5 else (crng.uniform(0, 24), crng.uniform(14, 20))
        waves, t = [], start
        while t < self.t1:
            h = (t % DAY) / HOUR
            if window is None or (h - window[0]) % 24 < window[1]:
                waves.append(int(t))
            t += period * (1 + crng.gauss(0, 0.04))
        model = crng.choice(STRONG_MODELS + REASONING_MODELS[:2])
        uas = [ua_server(crng) for _ in range(crng.randint(1, 2))]
        mt = crng.choice([2048, 4096, 8192])
        work = Broad(crng, self.corpus, {"math": 4, "wordprob": 2})
        waves_per_day = len(waves) / max(1e-9, (self.t1 - start) / DAY)
        for i in range(members):
            a = self.new("hydra_shared", cid)
            rng = a.rng
            subnet = subnets[i % 4]
            ua = uas[i % len(uas)]
            target = rng.uniform(20, 60)
            burst = rng.randint(1, 4)
            p = min(1.0, target / max(1.0, waves_per_day * (burst + 1) / 2))
            cover = rng.uniform(0.4, 0.6)
            host = rng.randrange(2, 254)
            for w in waves:
                if rng.random() >= p:
                    continue
                if rng.random() < 0.3:
                    host = rng.randrange(2, 254)
                ip = f"{subnet}.{host}"
                t = w + rng.uniform(0, 90) * SEC
                for _ in range(rng.randint(1, burst)):
                    if rng.random() < cover:
                        t, _n = self.cover(a, t, model, ip, ua)
                    else:
                        q = work.next()
                        body = {"model": model, "messages": [{"role": "user", "content": pre + q + suf}], "max_tokens": mt}
                        self.emit(a, t, P_CHAT, body, lnorm(rng, 1500, 0.4), "steps", ip, ua, seed=q)
                    t += rng.uniform(4, 45) * SEC

    PARA = {
        "greet": ["", "", "Hi. ", "Hello! ", "Please: ", "Quick task. ", "Good day. "],
        "verb": ["Work through", "Go through", "Tackle", "Solve", "Consider", "Handle", "Take on", "Address", "Look at"],
        "obj": ["the problem below", "the following problem", "the question that follows", "the task given below",
                "this exercise", "the item below"],
        "and": ["and write down", "and set out", "and record", "and spell out", "and lay out", "and put down", "then document"],
        "what": ["every step of your reasoning", "each stage of your thinking", "the full line of your reasoning",
                 "all of your intermediate thinking", "your whole chain of reasoning", "every inference along the way"],
        "when": ["before the final answer.", "prior to the final result.", "ahead of the conclusion.",
                 "before you conclude.", "before stating the answer."],
        "label": ["Problem", "Question", "Task", "Exercise", "Item", "Input"],
        "close": ["Finish with 'Final answer:' and the result.", "End by writing 'Final answer:' plus the result.",
                  "Close with a line 'Final answer: <result>'.", "Conclude with 'Final answer:' followed by the value.",
                  "Last line: 'Final answer:' and nothing else after the value.", "Wrap up with 'Final answer:' then the result."],
    }

    def paraphrase_template(self, rng, used):
        for _ in range(200):
            P = self.PARA
            head = f"{rng.choice(P['greet'])}{rng.choice(P['verb'])} {rng.choice(P['obj'])} {rng.choice(P['and'])} " \
                   f"{rng.choice(P['what'])} {rng.choice(P['when'])}"
            if rng.random() < 0.25:
                head = head.lower()
            close = rng.choice(P["close"])
            if rng.random() < 0.3:
                close = close.rstrip(".")
            tmpl = (head, f"\n\n{rng.choice(P['label'])}{rng.choice([':', ' -', ':'])} ", "\n\n" + close)
            if tmpl not in used:
                used.add(tmpl)
                return tmpl
        return tmpl

    def p_hydra_paraphrased(self):
        crng = random.Random(self.master.getrandbits(64))
        cid = "cmp-" + hexs(self.idrng, 8)
        members = crng.randint(30, 50)
        ua = ua_sdk(crng)
        mt = crng.choice([3000, 3500, 6000, 7000, 12000])
        temp = crng.choice([0.6, 0.65, 0.75, 0.9])
        model = crng.choice(STRONG_MODELS + REASONING_MODELS[:2])
        rh_tz = round(crng.uniform(-6, 9))
        bumps = [(crng.uniform(8, 12), crng.uniform(2, 4), 1.0), (crng.uniform(15, 21), crng.uniform(2, 4), 0.8)]
        work = Broad(crng, self.corpus, {"math": 3, "wordprob": 1.5})
        used = set()
        start_day = crng.randint(0, max(0, min(1, self.days - 1)))
        for _ in range(members):
            a = self.new("hydra_paraphrased", cid)
            rng = a.rng
            head, mid, close = self.paraphrase_template(rng, used)
            rh = Rhythm(rng, rh_tz, bumps, floor=0.05, day_sigma=0.25, day_off=rng.uniform(0, 0.15))
            per_day = rng.uniform(20, 60)
            eta = rng.uniform(0.2, 0.5)
            imm = nhpp(rng, self.t0 + start_day * DAY + rng.randrange(6 * HOUR), self.t1, per_day * (1 - eta), rh)
            times = hawkes(rng, imm, self.t1, eta, 40 * SEC)
            cover = rng.uniform(0.2, 0.5)
            day_net, cur_day, host = None, None, 0
            for t in times:
                d = (t - self.t0) // DAY
                if d != cur_day:
                    cur_day, day_net = d, isp_subnet(rng)
                    host = rng.randrange(2, 254)
                ip = f"{day_net}.{host}"
                if rng.random() < cover:
                    self.cover(a, t, model, ip, ua, params={"max_tokens": mt, "temperature": temp})
                    continue
                q = work.next()
                body = {"model": model, "messages": [{"role": "user", "content": head + mid + q + close}],
                        "max_tokens": mt, "temperature": temp}
                self.emit(a, t, P_CHAT, body, lnorm(rng, 1400, 0.4), "steps", ip, ua, seed=q)

    EXAM = ["Define {term} and give an example.", "Explain the significance of {s}. (10 marks)",
            "Short answer: what were the main consequences of {h}?", "Discuss: to what extent is {s} overrated?",
            "Essay question: assess the role of {s} in the modern world."]

    def p_round_robin(self):
        crng = random.Random(self.master.getrandbits(64))
        cid = "cmp-" + hexs(self.idrng, 8)
        n = crng.randint(80, 120)
        accts = [self.new("round_robin", cid) for _ in range(n)]
        diverse_ua = crng.random() < 0.6
        shared_ua = ua_sdk(crng)
        uas = {x.id: (ua_sdk(x.rng) if diverse_ua else shared_ua) for x in accts}
        models = crng.sample(STRONG_MODELS + CHAT_MODELS, crng.randint(1, 2))
        per_day = crng.uniform(750, 1050)
        mean_gap = DAY / per_day
        data = Broad(crng, self.corpus, {"frame": 0.3, "instr": 3, "arena": 3, "math": 2, "templ": 2, "code": 0.3})
        cover = crng.uniform(0.25, 0.35)
        mt = crng.choice([None, 2048, 4096])
        t = float(self.t0 + crng.randrange(3 * HOUR))
        order, pos = [], 0
        while t < self.t1:
            if pos >= len(order):
                order, pos = list(accts), 0
                crng.shuffle(order)
            a = order[pos]
            pos += 1
            ip = resid_ip(crng)
            model = crng.choice(models)
            if crng.random() < cover:
                turns = cover_turns(crng, self.corpus, 1)
                body = {"model": model, "messages": [{"role": "user", "content": turns[0]}]}
                self.emit(a, t, P_CHAT, body, lnorm(crng, 250, 0.7), "prose", ip, uas[a.id])
            else:
                r = crng.random()
                q = data.next() if r < 0.85 else crng.choice(self.EXAM).format(
                    term=crng.choice(TECH + SCIENCE), s=crng.choice(SUBJECTS), h=crng.choice(HISTORY))
                body = {"model": model, "messages": [{"role": "user", "content": q}]}
                if mt:
                    body["max_tokens"] = mt
                self.emit(a, t, P_CHAT, body, lnorm(crng, 900, 0.5), "prose", ip, uas[a.id])
            # one request at a time: wait for the answer, then a pause
            t += crng.expovariate(1 / (mean_gap * 0.8)) + mean_gap * 0.2


def rng_free_shape(q):
    return "outline" if len(q) % 3 == 0 else "prose"


# ======================================================================================
# Outputs
# ======================================================================================

def gap_cv(ts):
    """Coefficient of variation of an account's gaps shorter than 1 h (0 = clockwork,
    ~1 = Poisson, > 1 = bursty)."""
    ts = sorted(ts)
    g = [b - a for a, b in zip(ts, ts[1:]) if 0 <= b - a < HOUR]
    if len(g) < 5:
        return None
    m = sum(g) / len(g)
    if m <= 0:
        return None
    return math.sqrt(sum((x - m) ** 2 for x in g) / len(g)) / m


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else float("nan")


def stats_markdown(gen):
    cols = ["profile", "label", "accts", "records", "req/acct/active day (mean / max)", "active h/day",
            "prompt tok", "compl tok", "compl/prompt", "multi-turn", "system", "logprobs", "n>1", "stream",
            "chat / legacy / responses", "refused", "uniq prompts", "gap CV (median)", "IPs/acct", "/24 per acct",
            "UAs/acct", "models/acct"]
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    counts = Counter(a.profile for a in gen.accounts.values())
    for prof in BENIGN + HARVEST:
        st = gen.stats.get(prof)
        label = "benign" if prof in BENIGN else "harvest"
        if not st or not st.records:
            rows.append(f"| {prof} | {label} | {counts.get(prof, 0)} | 0 |" + " |" * (len(cols) - 4))
            continue
        r = st.records
        per_day = [sum(c.values()) / len(c) for c in st.acct_day.values()]
        peak = max(max(c.values()) for c in st.acct_day.values())
        hours = [len(st.acct_hours[k]) / len(st.acct_day[k]) for k in st.acct_day]
        uniq = [len(st.acct_prompts[k]) / len(v) for k, v in st.acct_ts.items()]
        n_acct = len(st.acct_ts)

        def per_acct(d):
            return sum(len(v) for v in d.values()) / n_acct
        rows.append(
            f"| {prof} | {label} | {counts[prof]} | {r} | {sum(per_day) / len(per_day):.1f} / {peak} | "
            f"{sum(hours) / len(hours):.1f} | {st.ptoks / r:.0f} | {st.ctoks / r:.0f} | "
            f"{st.ctoks / max(1, st.ptoks):.2f} | {st.multi / r:.0%} | {st.system / r:.0%} | "
            f"{st.logprobs / r:.0%} | {st.n_gt1 / r:.0%} | {st.stream / r:.0%} | "
            f"{st.paths[P_CHAT] / r:.0%} / {st.paths[P_LEGACY] / r:.0%} / {st.paths[P_RESP] / r:.0%} | "
            f"{st.refused / r:.2%} | {sum(uniq) / len(uniq):.0%} | "
            f"{median(gap_cv(v) for v in st.acct_ts.values()):.2f} | {per_acct(st.acct_ips):.1f} | "
            f"{per_acct(st.acct_nets):.1f} | {per_acct(st.acct_uas):.1f} | {per_acct(st.acct_models):.1f} |")
    notes = ("\nreq/acct/active day: records per account per UTC day with >= 1 record (mean over accounts / "
             "max of any account-day). active h/day: distinct UTC hours with a record per active day. "
             "compl/prompt: completion tokens / prompt tokens. uniq prompts: distinct last user texts / records, "
             "mean over accounts. gap CV: coefficient of variation of gaps < 1 h, median over accounts "
             "(0 clockwork, ~1 Poisson, > 1 bursty). IPs, /24s, UAs, models: distinct per account, mean.\n")
    clusters = Counter(a.cluster for a in gen.accounts.values() if a.cluster)
    cl = "\nCampaigns: " + ", ".join(f"{c} ({gen.accounts_of(c)}: {n} accounts)" for c, n in sorted(clusters.items())) + "\n"
    rel = "New models: " + ", ".join(f"{nm} released {iso_ms(t)}" for nm, t in gen.releases) + "\n"
    return "\n".join(rows) + "\n" + notes + cl + rel


def _accounts_of(self, cid):
    for a in self.accounts.values():
        if a.cluster == cid:
            return a.profile
    return "?"


Gen.accounts_of = _accounts_of


def write_outputs(gen, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    gen.lines.sort(key=lambda x: (x[0], x[1]))
    path = os.path.join(out_dir, "traffic.jsonl")
    with open(path, "w", encoding="utf-8", buffering=1 << 22) as f:
        lines = gen.lines
        for i in range(0, len(lines), 4096):
            f.write("\n".join(x[2] for x in lines[i:i + 4096]))
            f.write("\n")
    labels = {}
    for aid in sorted(gen.accounts):
        a = gen.accounts[aid]
        labels[aid] = {"profile": a.profile, "label": a.label}
        if a.cluster:
            labels[aid]["cluster"] = a.cluster
    with open(os.path.join(out_dir, "labels.json"), "w", encoding="utf-8") as f:
        json.dump(labels, f, indent=1, sort_keys=True)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description="Family B synthetic audit traffic for warden's detector evaluation.")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--days", type=int, default=5)
    ap.add_argument("--out", required=True)
    ap.add_argument("--start", default="2026-11-01T00:00:00Z", help="RFC3339 UTC start (default %(default)s)")
    ap.add_argument("--scale", type=float, default=1.0, help="volume multiplier for machine/product accounts")
    args = ap.parse_args(argv)
    if args.days < 1:
        ap.error("--days must be >= 1")
    if args.scale <= 0:
        ap.error("--scale must be > 0")
    t_begin = time.time()
    gen = Gen(args.seed, args.days, parse_start(args.start), args.scale)
    gen.run()
    path = write_outputs(gen, args.out)
    elapsed = time.time() - t_begin
    size = os.path.getsize(path)
    n_b = sum(1 for a in gen.accounts.values() if a.label == "benign")
    n_h = len(gen.accounts) - n_b
    head = (f"family=B seed={args.seed} days={args.days} start={args.start} scale={args.scale} "
            f"records={len(gen.lines)} accounts={len(gen.accounts)} (benign {n_b}, harvest {n_h}) "
            f"size={size / 1e6:.1f}MB generation={elapsed:.1f}s")
    with open(os.path.join(args.out, "stats.md"), "w", encoding="utf-8") as f:
        f.write(f"# Family B traffic statistics\n\n{head}\n\n" + stats_markdown(gen))
    with open(os.path.join(args.out, "meta.json"), "w", encoding="utf-8") as f:
        json.dump({"seed": args.seed, "family": "B", "days": args.days, "start": args.start, "scale": args.scale,
                   "records": len(gen.lines), "accounts": len(gen.accounts), "bytes": size,
                   "generation_s": round(elapsed, 2),
                   "profiles": dict(sorted(Counter(a.profile for a in gen.accounts.values()).items())),
                   "new_models": [{"model": nm, "released_at": iso_ms(t)} for nm, t in gen.releases]}, f, indent=1)
    print(head)
    return 0


if __name__ == "__main__":
    sys.exit(main())
