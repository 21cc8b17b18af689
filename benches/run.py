#!/usr/bin/env python3
"""Benchmark harness: warden side by side with a plain reverse proxy, in one run.

Starts the bundled mock upstream, nginx (`proxy_pass`, buffering off) in front of it,
and several warden configurations in front of it, then drives the same load with wrk
against each target, interleaved (round after round, every target in each round), and
prints throughput, latency percentiles, peak RSS, each target's CPU time and preemptions
per request and the ratios against nginx and against direct. Results also go to benches/RESULTS.md with the machine and the command.

Targets:
  direct        the mock itself
  nginx         nginx proxy_pass, keepalive to the upstream
  hyper-bare    a plain hyper 1 reverse proxy with nothing on top (examples/bare-proxy.rs,
                thread per core as warden): what the HTTP stack alone costs
  warden-off    warden: auth + audit (capture none), no limits, no policy
  warden-limits warden-off + every limit of a tier (local, in memory)
  warden-redis  warden-limits with the limits in Redis
  warden-full   auth, limits, parameter policy, audit with full capture
  warden-full-redis  the same with Redis
  warden-full-plain  warden-full from a plain `cargo build --release` (the others are the
                profile-guided build of scripts/build-pgo.sh, when it can be made)

Scenarios: small (a short chat completion), stream50 (a streamed completion of 50
chunks), messages50 (the same through Anthropic's Messages API: `/v1/messages`, 50 text
deltas among Anthropic's stream events), prompt32k (one new 32 KB prompt), history32k (a conversation in its 7th turn:
~30 KB of system prompt and earlier turns resent, plus a short new question).

Every scenario runs twice per target: at saturation (wrk, closed loop, 32 connections)
and at a fixed request rate (oha, open loop with latency correction, so a slow target
cannot hide latency by slowing the load down). A soak run then holds warden-full under
a steady mixed load for --soak seconds and samples its RSS.

Usage: benches/run.py [--quick] [--rounds N] [--duration S] [--soak S] [--scenarios ..] [--targets ..]
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
BARE = os.path.join(BIN, "examples", "bare-proxy")
PLAIN_WARDEN = os.path.join(BIN, "warden")
PGO_WARDEN = os.path.join(ROOT, "target", "pgo", "warden")
# The warden binary the variants run (the profile-guided one once main() has built it).
WARDEN = PLAIN_WARDEN
ADMIN_TOKEN = "bench-admin-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def ensure_tools():
    missing = [t for t in ("wrk", "nginx", "redis-server") if shutil.which(t) is None]
    if missing:
        print(f"installing {' '.join(missing)} from Debian ...", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        pkgs = {"wrk": "wrk", "nginx": "nginx", "redis-server": "redis-server"}
        subprocess.run(["apt-get", "install", "-y", "-qq"] + [pkgs[m] for m in missing], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if shutil.which("oha") is None and not os.path.exists(OHA):
        # oha is not packaged by Debian; building it takes ~9 minutes on 2 cores, once.
        print("installing oha (cargo install oha --locked, one time, ~9 min on 2 cores) ...", file=sys.stderr)
        subprocess.run(["cargo", "install", "oha", "--locked", "--version", "1.16.0"], check=True)


OHA = shutil.which("oha") or os.path.expanduser("~/.cargo/bin/oha")


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, args, **kw):
        p = subprocess.Popen(args, **kw)
        self.procs.append(p)
        return p

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def status_mb(pid, field):
    """A memory figure of /proc/PID/status (VmRSS, VmHWM) in MiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def with_children(pid):
    """A process and its child processes (nginx's workers)."""
    return [pid] + [int(d) for d in os.listdir("/proc") if d.isdigit() and parent_of(int(d)) == pid]


def cpu_seconds(pid):
    """User + system CPU of a process, its threads and its child processes (nginx's
    workers), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for q in with_children(pid):
        try:
            with open(f"/proc/{q}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / tick


def preemptions(pid):
    """Involuntary context switches of a process, its threads and its child processes
    (nginx's workers): how often the scheduler took the CPU away from it while it still
    had work, here mostly to run the load generator or the mock it had just woken."""
    total = 0
    for q in with_children(pid):
        try:
            for tid in os.listdir(f"/proc/{q}/task"):
                with open(f"/proc/{q}/task/{tid}/status") as f:
                    for line in f:
                        if line.startswith("nonvoluntary_ctxt_switches:"):
                            total += int(line.split()[1])
        except OSError:
            pass
    return total


def parent_of(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def start_nginx(procs, tmp, upstream_port):
    port = free_port()
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 2;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/nginx-body;
  proxy_temp_path {tmp}/nginx-proxy;
  client_max_body_size 8m;
  upstream mock {{ server 127.0.0.1:{upstream_port}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
    }}
  }}
}}
""")
    p = procs.start(["nginx", "-c", conf, "-p", tmp], stderr=subprocess.DEVNULL)
    wait_port(port)
    return port, p


WARDEN_VARIANTS = {
    "warden-off": {"limits": False, "policy": False, "capture": "none", "redis": False, "detect": False},
    "warden-limits": {"limits": True, "policy": False, "capture": "none", "redis": False, "detect": False},
    "warden-redis": {"limits": True, "policy": False, "capture": "none", "redis": True, "detect": False},
    "warden-full": {"limits": True, "policy": True, "capture": "full", "redis": False, "detect": True},
    "warden-full-redis": {"limits": True, "policy": True, "capture": "full", "redis": True, "detect": True},
    "warden-full-plain": {"limits": True, "policy": True, "capture": "full", "redis": False, "detect": True,
                          "plain": True},
}


def start_warden(procs, tmp, name, variant, upstream_port, redis_port, binary=None):
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    port, admin = free_port(), free_port()
    tier = ['name = "bench"']
    if variant["limits"]:
        # High enough never to refuse the benchmark, so every check runs on every request.
        tier += ["requests_per_minute = 100000000", "tokens_per_minute = 100000000000",
                 "max_concurrent = 100000", "tokens_per_day = 1000000000000",
                 "tokens_per_month = 1000000000000"]
    if variant["policy"]:
        tier += ['allowed_models = ["mock-small", "mock-large"]', "max_n = 4", "max_tokens = 4096",
                 'logprobs = "strip"', 'logit_bias = "reject"']
    redis = f'[redis]\nurl = "redis://127.0.0.1:{redis_port}"\n' if variant["redis"] else ""
    config = os.path.join(d, "warden.toml")
    with open(config, "w") as f:
        f.write(f"""
[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"
max_in_flight = 16384
[upstream]
base_url = "http://127.0.0.1:{upstream_port}"
api_key_env = "BENCH_UPSTREAM_KEY"
[admin]
token_env = "BENCH_ADMIN_TOKEN"
[storage]
path = "{d}/warden.db"
[logging]
format = "json"
level = "warn"
access_log = false
[audit]
dir = "{d}/audit"
capture = "{variant['capture']}"
queue_capacity = 65536
[detection]
mode = "{'enforce' if variant['detect'] else 'off'}"
{redis}
[[tiers]]
{chr(10).join(tier)}
""")
    env = dict(os.environ, BENCH_UPSTREAM_KEY="sk-bench", BENCH_ADMIN_TOKEN=ADMIN_TOKEN)
    binary = binary or (PLAIN_WARDEN if variant.get("plain") else WARDEN)
    p = procs.start([binary, "serve", "--config", config], env=env,
                    stdout=open(os.path.join(d, "warden.log"), "w"), stderr=subprocess.STDOUT)
    p.admin_port = admin
    wait_port(port)
    wait_port(admin)

    def call(method, path, body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{admin}{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"authorization": f"Bearer {ADMIN_TOKEN}",
                                              "content-type": "application/json"})
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read() or b"null")

    call("POST", "/admin/v1/accounts", {"id": "bench", "tier": "bench"})
    key = call("POST", "/admin/v1/accounts/bench/keys")["key"]
    return port, p, key, d


# Fixed request rates, per scenario: well below what every target sustains here, so the
# latency measured is the cost of each request rather than queueing.
FIXED_RATES = {"small": 2000, "stream50": 400, "messages50": 400, "prompt32k": 150, "history32k": 150}

# The path of each scenario (the OpenAI chat route unless named here).
SCENARIO_PATHS = {"messages50": "/v1/messages"}


def scenario_url(port, sname):
    return f"http://127.0.0.1:{port}{SCENARIO_PATHS.get(sname, '/v1/chat/completions')}"


def scenario_bodies():
    small = {"model": "mock-small", "messages": [{"role": "user", "content": "What is the capital of France?"}],
             "max_tokens": 16}
    stream = {"model": "mock-small", "stream": True, "max_tokens": 50,
              "messages": [{"role": "user", "content": "Tell me a story in fifty words."}]}
    filler = "The quick brown fox jumps over the lazy dog. " * 800  # ~36 KB, ~8k tokens
    big = {"model": "mock-small", "max_tokens": 16,
           "messages": [{"role": "user", "content": "Summarize:\n" + filler[:32 * 1024]}]}
    # A conversation in its 7th turn: a system prompt, six earlier exchanges (~30 KB the
    # client resends with every turn) and a short new question.
    turn = "Here is the next part of the log I need help with: " + "error 42 at step {} retrying. " * 80
    history = [{"role": "system", "content": "You are the support assistant of ACME. Be precise. " * 45}]
    for i in range(6):
        history += [{"role": "user", "content": turn.replace("{}", str(i))},
                    {"role": "assistant", "content": "The retries at this step come from a timeout. " * 50}]
    chat = {"model": "mock-small", "max_tokens": 16,
            "messages": history + [{"role": "user", "content": "So what should I change first?"}]}
    messages = {"model": "mock-small", "stream": True, "max_tokens": 50,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "Tell me a story in fifty words."}]}]}
    return {
        "small": (small, {}),
        "stream50": (stream, {"x-mock-chunks": "50"}),
        "messages50": (messages, {"x-mock-chunks": "50", "anthropic-version": "2023-06-01"}),
        "prompt32k": (big, {}),
        "history32k": (chat, {}),
    }


LUA = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{headers}
done = function(summary, latency, requests)
  local s = summary
  io.write(string.format('RESULT {{"requests":%d,"duration_us":%d,"errors":%d,"p50":%d,"p99":%d,"p999":%d,"mean":%f}}\\n',
    s.requests, s.duration, s.errors.status + s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.mean))
end
"""


def lua_string(s):
    return "[==[" + s + "]==]"


def run_wrk(tmp, url, body, headers, key, duration, connections, threads):
    h = dict(headers)
    if key:
        h["Authorization"] = f"Bearer {key}"
    script = os.path.join(tmp, f"wrk-{abs(hash((url, key, json.dumps(headers))))}.lua")
    with open(script, "w") as f:
        f.write(LUA.format(body=lua_string(json.dumps(body)),
                           headers="\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in h.items())))
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "-s", script,
                          "--timeout", "10s", url], capture_output=True, text=True)
    m = re.search(r"RESULT (\{.*\})", out.stdout)
    if not m:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    r = json.loads(m.group(1))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")


def oha_args(url, body, headers, key, duration, rate, connections, correct_latency=True):
    """oha at `rate` requests/s for `duration` s; requests still running at the deadline
    finish and count (-w) instead of being cancelled and reported as errors."""
    args = [OHA, "-z", f"{duration}s", "-w", "-q", str(rate), "-c", str(connections), "--no-tui",
            "--output-format", "json", "-m", "POST", "-H", "content-type: application/json", "-d", json.dumps(body)]
    if correct_latency:
        args.append("--latency-correction")
    h = dict(headers)
    if key:
        h["Authorization"] = f"Bearer {key}"
    for k, v in h.items():
        args += ["-H", f"{k}: {v}"]
    return args + [url]


def oha_result(stdout, stderr=""):
    """oha's JSON report, plus how many requests were answered 200 and how many not."""
    try:
        d = json.loads(stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"oha failed: {stdout[:500]}\n{stderr[:500]}")
    ok = d["statusCodeDistribution"].get("200", 0)
    total = sum(d["statusCodeDistribution"].values()) + sum(d["errorDistribution"].values())
    return d, ok, total - ok


def run_oha(url, body, headers, key, duration, rate, connections=64):
    """Open-loop load at `rate` requests/s with latency correction; latencies in us."""
    out = subprocess.run(oha_args(url, body, headers, key, duration, rate, connections), capture_output=True,
                         text=True)
    d, _, errors = oha_result(out.stdout, out.stderr)
    lp, fb = d["latencyPercentiles"], d.get("firstBytePercentiles") or {}
    us = lambda v: (v or float("nan")) * 1e6  # noqa: E731
    return {"rps": d["summary"]["requestsPerSec"], "p50": us(lp["p50"]), "p99": us(lp["p99"]),
            "p999": us(lp["p99.9"]), "fb50": us(fb.get("p50")), "fb99": us(fb.get("p99")), "errors": errors}


def ttft_probe(url, body, headers, key, n=200):
    """Time from sending a streamed request to its first SSE byte, n times in sequence;
    returns (median, p99) in ms. The mock sends its first chunk at once, so the difference
    between direct and a proxy is the proxy's added first-token delay."""
    import http.client
    host, port = url.split("//")[1].split("/")[0].split(":")
    path = "/" + url.split("//")[1].split("/", 1)[1]
    conn = http.client.HTTPConnection(host, int(port))
    h = {"Content-Type": "application/json", **headers}
    if key:
        h["Authorization"] = f"Bearer {key}"
    data = json.dumps(body)
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("POST", path, body=data, headers=h)
        resp = conn.getresponse()
        resp.read1(1)
        samples.append((time.perf_counter() - t0) * 1000)
        resp.read()
    conn.close()
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99) - 1]


def soak(port, pid, key, scenarios, seconds):
    """Holds a steady mixed load (every scenario at a fraction of its fixed rate) on one
    target for `seconds`, sampling its RSS every 5 s. Returns the samples and the loads'
    results."""
    loads = []
    for sname, (body, headers) in scenarios.items():
        rate = max(10, FIXED_RATES[sname] // 2)
        args = oha_args(scenario_url(port, sname), body, headers, key, seconds, rate, 32, correct_latency=False)
        loads.append((sname, rate, subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)))
    samples = []
    t0 = time.time()
    while any(p.poll() is None for _, _, p in loads):
        samples.append((time.time() - t0, status_mb(pid, "VmRSS")))
        time.sleep(5)
    results = []
    for sname, rate, p in loads:
        d, ok, bad = oha_result(p.stdout.read())
        results.append((sname, rate, d["summary"]["requestsPerSec"], ok, bad))
    return samples, results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=4, help="seconds per load run (saturation and fixed rate)")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds (the median is reported)")
    ap.add_argument("--headline-rounds", type=int, default=3,
                    help="saturation rounds of the small scenario, every target in each (the headline figure: "
                         "the median of the per-round ratios is reported)")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections at saturation")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--soak", type=int, default=300, help="seconds of the RSS soak run on warden-full (0: skip)")
    ap.add_argument("--quick", action="store_true", help="2 s runs and a 20 s soak, for a smoke run")
    ap.add_argument("--out", default=os.path.join(ROOT, "benches", "RESULTS.md"))
    ap.add_argument("--scenarios", default="small,stream50,messages50,prompt32k,history32k",
                    help="comma-separated subset")
    ap.add_argument("--targets", default="", help="comma-separated subset of warden variants (default: all)")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.rounds, args.headline_rounds, args.soak = 2, 1, 1, min(args.soak, 20)

    ensure_tools()
    global WARDEN
    built = all(os.path.exists(p) for p in (PLAIN_WARDEN, BARE))
    if not built or os.environ.get("BENCH_BUILD", "1") == "1":
        # The profile-guided build (and the plain one beside it); without llvm-profdata,
        # the plain build alone.
        if subprocess.run([os.path.join(ROOT, "scripts", "build-pgo.sh")], cwd=ROOT).returncode != 0:
            print("profile-guided build not available: benchmarking the plain release build", file=sys.stderr)
            if os.path.exists(PGO_WARDEN):
                os.remove(PGO_WARDEN)
            subprocess.run(["cargo", "build", "--release", "--bins"], cwd=ROOT, check=True)
        subprocess.run(["cargo", "build", "--release", "--example", "bare-proxy"], cwd=ROOT, check=True)
    pgo = os.path.exists(PGO_WARDEN)
    WARDEN = PGO_WARDEN if pgo else PLAIN_WARDEN

    procs = Procs()
    tmp = tempfile.mkdtemp(prefix="warden-bench-")
    started = time.time()
    soak_target = "warden-full"
    try:
        mock = procs.start([os.path.join(BIN, "warden-mock-llm"), "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                           text=True)
        mock_url = mock.stdout.readline().strip().split("listening on ")[1]
        mock_port = int(mock_url.rsplit(":", 1)[1])
        redis_port = free_port()
        procs.start(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no"], stdout=subprocess.DEVNULL)
        wait_port(redis_port)
        nginx_port, nginx = start_nginx(procs, tmp, mock_port)
        targets = {"direct": (mock_port, mock, None), "nginx": (nginx_port, nginx, None)}
        bare_port = free_port()
        bare = procs.start([BARE, f"127.0.0.1:{bare_port}", f"http://127.0.0.1:{mock_port}"])
        wait_port(bare_port)
        targets["hyper-bare"] = (bare_port, bare, None)
        wanted = set(filter(None, args.targets.split(",")))
        for name, variant in WARDEN_VARIANTS.items():
            if (wanted and name not in wanted) or (not wanted and name in NOT_BY_DEFAULT):
                continue
            if variant.get("plain") and not pgo:
                continue
            port, p, key, _ = start_warden(procs, tmp, name, variant, mock_port, redis_port)
            targets[name] = (port, p, key)

        scenarios = {k: v for k, v in scenario_bodies().items() if k in args.scenarios.split(",")}
        sat, fixed = {}, {}  # (scenario, target) -> [runs], in round order

        def saturate(sname, tname, body, headers):
            port, proc, key = targets[tname]
            url = scenario_url(port, sname)
            cpu0, pre0 = cpu_seconds(proc.pid), preemptions(proc.pid)
            r = run_wrk(tmp, url, body, headers, key, args.duration, args.connections, args.threads)
            # CPU the target itself spent per request (for `direct`, the mock's).
            r["cpu_us"] = (cpu_seconds(proc.pid) - cpu0) * 1e6 / max(1, r["requests"])
            r["preempted"] = (preemptions(proc.pid) - pre0) / max(1, r["requests"])
            sat.setdefault((sname, tname), []).append(r)
            return r

        for rnd in range(args.rounds):
            for sname, (body, headers) in scenarios.items():
                for tname in targets:
                    if sname != "small" and tname in SMALL_ONLY:
                        continue
                    port, _, key = targets[tname]
                    r = saturate(sname, tname, body, headers)
                    f = run_oha(scenario_url(port, sname), body, headers, key, args.duration,
                                FIXED_RATES[sname])
                    fixed.setdefault((sname, tname), []).append(f)
                    print(f"round {rnd + 1} {sname:10} {tname:18} saturation {r['rps']:7.0f} req/s p99 "
                          f"{r['p99'] / 1000:6.2f} ms | {FIXED_RATES[sname]} req/s: p50 {f['p50'] / 1000:6.3f} ms "
                          f"p99 {f['p99'] / 1000:6.3f} ms errors {r['errors']}+{f['errors']}", file=sys.stderr)
        # The headline: more saturation rounds of the small scenario, every target in each,
        # so that each round's ratios compare runs seconds apart.
        if "small" in scenarios:
            body, headers = scenarios["small"]
            for rnd in range(args.rounds, max(args.rounds, args.headline_rounds)):
                for tname in targets:
                    r = saturate("small", tname, body, headers)
                    print(f"round {rnd + 1} small      {tname:18} saturation {r['rps']:7.0f} req/s p99 "
                          f"{r['p99'] / 1000:6.2f} ms", file=sys.stderr)

        ttft = {}
        if "stream50" in scenarios:
            sbody, sheaders = scenarios["stream50"]
            for tname, (port, _, key) in targets.items():
                if tname in SMALL_ONLY:
                    continue
                ttft[tname] = ttft_probe(f"http://127.0.0.1:{port}/v1/chat/completions", sbody, sheaders, key)

        rss = {t: status_mb(p.pid, "VmHWM") for t, (_, p, _) in targets.items()}
        soak_samples, soak_results = [], []
        if args.soak > 0 and soak_target in targets:
            port, p, key = targets[soak_target]
            print(f"soak: {soak_target} under steady mixed load for {args.soak} s ...", file=sys.stderr)
            soak_samples, soak_results = soak(port, p.pid, key, scenarios, args.soak)
    finally:
        procs.stop()
        # The audit logs of the run (several GB with full capture) go with it.
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.time() - started

    L = []
    L.append("# Benchmark results\n")
    L.append(f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    L.append(f"- Machine: {platform.machine()}, {os.cpu_count()} cores, "
             f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, {platform.platform()}")
    L.append(f"- Command: `python3 benches/run.py {' '.join(sys.argv[1:])}` ({elapsed:.0f} s)")
    L.append("- Build: " + ("warden is the profile-guided release build (`scripts/build-pgo.sh`: trained on "
                            "`benches/pgo_train.py`'s mixed workload, not on this benchmark's runs); "
                            "`warden-full-plain` is warden-full from a plain `cargo build --release`."
                            if pgo else "warden is the plain `cargo build --release` (no llvm-profdata for a "
                            "profile-guided build)."))
    L.append(f"- Saturation: wrk, {args.connections} connections, {args.threads} threads, {args.duration} s per run. "
             f"Fixed rate: oha -q with latency correction, {args.duration} s per run. {args.rounds} interleaved "
             f"round(s) (every target in each round), median of rounds; the small scenario's saturation runs "
             f"{max(args.rounds, args.headline_rounds)} rounds. Ratios to nginx, direct and hyper-bare are the median "
             "of the ratios within each round. "
             f"{', '.join(f'`{t}`' for t in SMALL_ONLY if t in targets)} run in the small scenario only.")
    L.append("- Everything (load generator, proxies, mock upstream, Redis) shares the same 2 cores, so absolute "
             "numbers are low and noisy; the ratios measured side by side in one run are the result.")
    L.append("- CPU us/req: user + system CPU time of the target's own processes and threads (nginx's "
             "workers included) during the saturation run, per request; the load generator and the mock are not "
             "counted, except for `direct`, where it is the mock's. Unlike throughput, it does not depend on how "
             "the 2 shared cores are split between load generator, mock and proxy.")
    L.append("- Preempted /req: involuntary context switches of the target's processes and threads per request "
             "(from /proc/PID/task/*/status). On 2 shared cores a proxy is mostly preempted by the load generator "
             "or the mock it has just woken, and the longer it runs per request the more often; each preemption "
             "is a context switch (and colder caches) paid in the target's own CPU time.")
    L.append("- Targets: " + "; ".join(f"`{k}` {v}" for k, v in TARGET_NOTES.items() if k in targets) + ".\n")
    for sname in scenarios:
        L.append(f"## {sname}: saturation\n")
        L.append("| target | req/s | p50 ms | p99 ms | p99.9 ms | errors | throughput / nginx | p99 / nginx | "
                 "throughput / direct | throughput / hyper-bare | CPU us/req | CPU / nginx | preempted /req |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        # Ratios are the median of each round's ratio (runs seconds apart), not the ratio of
        # medians taken over the whole run.
        ratio = lambda t, base, k: median([a[k] / b[k] for a, b in zip(sat[(sname, t)], sat[(sname, base)])])  # noqa: E731
        for tname in targets:
            if (sname, tname) not in sat:
                continue
            runs = sat[(sname, tname)]
            rps = median([r["rps"] for r in runs])
            p50, p99, p999 = (median([r[k] for r in runs]) / 1000 for k in ("p50", "p99", "p999"))
            cpu = median([r["cpu_us"] for r in runs])
            pre = median([r["preempted"] for r in runs])
            L.append(f"| {tname} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {p999:.2f} | {sum(r['errors'] for r in runs)} | "
                     f"{ratio(tname, 'nginx', 'rps'):.2f} | {ratio(tname, 'nginx', 'p99'):.2f} | "
                     f"{ratio(tname, 'direct', 'rps'):.2f} | {ratio(tname, 'hyper-bare', 'rps'):.2f} | {cpu:.1f} | "
                     f"{ratio(tname, 'nginx', 'cpu_us'):.2f} | {pre:.2f} |")
        L.append("")
        if len(sat[(sname, "nginx")]) > 1:
            L.append(f"Each round ({len(sat[(sname, 'nginx')])}), throughput / nginx: " + "; ".join(
                f"{t} " + ", ".join(f"{a['rps'] / b['rps']:.2f}" for a, b in zip(sat[(sname, t)], sat[(sname, 'nginx')]))
                for t in targets if t not in ("direct", "nginx")) + ".\n")
        L.append(f"## {sname}: fixed rate, {FIXED_RATES[sname]} req/s\n")
        L.append("| target | achieved req/s | p50 ms | p99 ms | p99.9 ms | added p50 ms | added p99 ms | errors | "
                 "p50 / nginx | p99 / nginx |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        med = lambda t, k: median([r[k] for r in fixed[(sname, t)]])  # noqa: E731
        for tname in targets:
            if (sname, tname) not in fixed:
                continue
            L.append(f"| {tname} | {med(tname, 'rps'):.0f} | {med(tname, 'p50') / 1000:.3f} | "
                     f"{med(tname, 'p99') / 1000:.3f} | {med(tname, 'p999') / 1000:.3f} | "
                     f"{(med(tname, 'p50') - med('direct', 'p50')) / 1000:+.3f} | "
                     f"{(med(tname, 'p99') - med('direct', 'p99')) / 1000:+.3f} | "
                     f"{sum(r['errors'] for r in fixed[(sname, tname)])} | "
                     f"{med(tname, 'p50') / med('nginx', 'p50'):.2f} | {med(tname, 'p99') / med('nginx', 'p99'):.2f} |")
        L.append("")
    if ttft:
        sname = "stream50"
        L.append("## Time to first byte of a stream\n")
        L.append("Sequential (one request at a time, 200 requests), and under the fixed-rate stream50 load "
                 "(oha's first-byte percentiles). The mock sends its first chunk at once, so the difference to "
                 "`direct` is the delay the proxy adds before the first token.\n")
        L.append(f"| target | sequential median ms | added ms | at {FIXED_RATES[sname]} req/s: p50 ms | added ms | "
                 "p99 ms | added ms |")
        L.append("|---|---:|---:|---:|---:|---:|---:|")
        fb = lambda t, k: median([r[k] for r in fixed[(sname, t)]]) / 1000  # noqa: E731
        for tname, (m, _) in ttft.items():
            L.append(f"| {tname} | {m:.3f} | {m - ttft['direct'][0]:+.3f} | {fb(tname, 'fb50'):.3f} | "
                     f"{fb(tname, 'fb50') - fb('direct', 'fb50'):+.3f} | {fb(tname, 'fb99'):.3f} | "
                     f"{fb(tname, 'fb99') - fb('direct', 'fb99'):+.3f} |")
        L.append("")
    L.append("## Peak RSS (VmHWM) over the load runs\n")
    L.append("| target | MiB |")
    L.append("|---|---:|")
    for tname, mb in rss.items():
        L.append(f"| {tname} | {mb:.1f} |")
    L.append("")
    if soak_samples:
        L.append(f"## Soak: {soak_target} for {args.soak} s\n")
        L.append("Steady mixed load, all at once: " + ", ".join(
            f"{s} at {rate} req/s (achieved {rps:.0f}, {ok} ok, {bad} not)" for s, rate, rps, ok, bad in soak_results)
            + ".\n")
        L.append("| t (s) | RSS MiB |")
        L.append("|---:|---:|")
        step = max(1, len(soak_samples) // 12)
        shown = soak_samples[::step] + ([soak_samples[-1]] if (len(soak_samples) - 1) % step else [])
        for t, mb in shown:
            L.append(f"| {t:.0f} | {mb:.1f} |")
        warm = [mb for t, mb in soak_samples if t >= min(60, args.soak / 3)]
        if len(warm) >= 2:
            L.append(f"\nAfter warm-up: min {min(warm):.1f} MiB, max {max(warm):.1f} MiB, "
                     f"last - first {warm[-1] - warm[0]:+.1f} MiB.")
        L.append("")
    if all(("small", t) in sat for t in ("warden-off", "warden-limits", "warden-redis")):
        off = sat[("small", "warden-off")]
        L.append("## Limits layer (small scenario, against warden-off)\n")
        for t in ("warden-limits", "warden-redis"):
            runs = sat[("small", t)]
            fo, ft = fixed[("small", "warden-off")], fixed[("small", t)]
            L.append(f"- {t}: saturation throughput {median([r['rps'] for r in runs]) / median([r['rps'] for r in off]):.2f}x, "
                     f"p50 {median([r['p50'] for r in runs]) / median([r['p50'] for r in off]):.2f}x; at "
                     f"{FIXED_RATES['small']} req/s p50 {median([r['p50'] for r in ft]) / 1000:.3f} ms vs "
                     f"{median([r['p50'] for r in fo]) / 1000:.3f} ms "
                     f"({(median([r['p50'] for r in ft]) - median([r['p50'] for r in fo])) / 1000:+.3f} ms)")
        L.append("")
    text = "\n".join(L) + "\n"
    print(text)
    with open(args.out, "w") as f:
        f.write(text)


# Measured in the small scenario only (the other scenarios' runs would not fit the
# 10-minute budget beside the headline's extra rounds): a step between warden-off and
# warden-full, and the plain build of warden-full.
SMALL_ONLY = ("warden-limits", "warden-redis", "warden-full-plain")
# Run only when named in --targets (the budget again): the limits layer alone, local.
NOT_BY_DEFAULT = ("warden-limits",)

TARGET_NOTES = {
    "direct": "the mock upstream itself",
    "nginx": "nginx proxy_pass, buffering off, keepalive upstream",
    "hyper-bare": "a plain hyper 1 reverse proxy, nothing on top (examples/bare-proxy.rs): the HTTP stack alone",
    "warden-off": "auth, audit (capture none); no limits, policy or detection",
    "warden-limits": "warden-off + every limit of a tier, local",
    "warden-redis": "warden-limits shared through Redis",
    "warden-full": "auth, limits, parameter policy, detection (enforce), audit with full capture",
    "warden-full-redis": "warden-full with the limits in Redis",
    "warden-full-plain": "warden-full from a plain `cargo build --release` (no profile-guided optimization)",
}


if __name__ == "__main__":
    main()
