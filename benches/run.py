#!/usr/bin/env python3
"""Benchmark harness: warden side by side with a plain reverse proxy, in one run.

Starts the bundled mock upstream, nginx (`proxy_pass`, buffering off) in front of it,
and several warden configurations in front of it, then drives the same load with wrk
against each target, interleaved (round after round, every target in each round), and
prints throughput, latency percentiles, peak RSS and the ratios against nginx and
against direct. Results also go to benches/RESULTS.md with the machine and the command.

Targets:
  direct        the mock itself
  nginx         nginx proxy_pass, keepalive to the upstream
  warden-off    warden: auth + audit (capture none), no limits, no policy
  warden-limits warden-off + every limit of a tier (local, in memory)
  warden-redis  warden-limits with the limits in Redis
  warden-full   auth, limits, parameter policy, audit with full capture
  warden-full-redis  the same with Redis

Usage: benches/run.py [--duration S] [--rounds N] [--connections C] [--quick]
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


def peak_rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


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
    "warden-off": {"limits": False, "policy": False, "capture": "none", "redis": False},
    "warden-limits": {"limits": True, "policy": False, "capture": "none", "redis": False},
    "warden-redis": {"limits": True, "policy": False, "capture": "none", "redis": True},
    "warden-full": {"limits": True, "policy": True, "capture": "full", "redis": False},
    "warden-full-redis": {"limits": True, "policy": True, "capture": "full", "redis": True},
}


def start_warden(procs, tmp, name, variant, upstream_port, redis_port):
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
{redis}
[[tiers]]
{chr(10).join(tier)}
""")
    env = dict(os.environ, BENCH_UPSTREAM_KEY="sk-bench", BENCH_ADMIN_TOKEN=ADMIN_TOKEN)
    p = procs.start([os.path.join(BIN, "warden"), "serve", "--config", config], env=env,
                    stdout=open(os.path.join(d, "warden.log"), "w"), stderr=subprocess.STDOUT)
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


def scenario_bodies():
    small = {"model": "mock-small", "messages": [{"role": "user", "content": "What is the capital of France?"}],
             "max_tokens": 16}
    stream = {"model": "mock-small", "stream": True, "max_tokens": 50,
              "messages": [{"role": "user", "content": "Tell me a story in fifty words."}]}
    filler = "The quick brown fox jumps over the lazy dog. " * 800  # ~36 KB, ~8k tokens
    big = {"model": "mock-small", "max_tokens": 16,
           "messages": [{"role": "user", "content": "Summarize:\n" + filler[:32 * 1024]}]}
    return {
        "small": (small, {}),
        "stream50": (stream, {"x-mock-chunks": "50"}),
        "prompt32k": (big, {}),
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


def ttft_probe(url, body, headers, key, n=200):
    """Time from sending a streamed request to its first SSE byte, n times; returns
    (median, p99) in ms. The mock sends its first chunk at once, so the difference
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (median is reported)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s, for a smoke run")
    ap.add_argument("--out", default=os.path.join(ROOT, "benches", "RESULTS.md"))
    args = ap.parse_args()
    if args.quick:
        args.duration, args.rounds = 2, 1

    ensure_tools()
    if not os.path.exists(os.path.join(BIN, "warden")) or os.environ.get("BENCH_BUILD", "1") == "1":
        subprocess.run(["cargo", "build", "--release", "--bins"], cwd=ROOT, check=True)

    procs = Procs()
    tmp = tempfile.mkdtemp(prefix="warden-bench-")
    started = time.time()
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
        for name, variant in WARDEN_VARIANTS.items():
            port, p, key, _ = start_warden(procs, tmp, name, variant, mock_port, redis_port)
            targets[name] = (port, p, key)

        scenarios = scenario_bodies()
        results = {}  # (scenario, target) -> [runs]
        for rnd in range(args.rounds):
            for sname, (body, headers) in scenarios.items():
                for tname, (port, _, key) in targets.items():
                    url = f"http://127.0.0.1:{port}/v1/chat/completions"
                    r = run_wrk(tmp, url, body, headers, key, args.duration, args.connections, args.threads)
                    results.setdefault((sname, tname), []).append(r)
                    print(f"round {rnd + 1} {sname:10} {tname:18} {r['rps']:9.0f} req/s  p50 {r['p50'] / 1000:6.2f} ms"
                          f"  p99 {r['p99'] / 1000:6.2f} ms  errors {r['errors']}", file=sys.stderr)

        ttft = {}
        sbody, sheaders = scenarios["stream50"]
        for tname, (port, _, key) in targets.items():
            ttft[tname] = ttft_probe(f"http://127.0.0.1:{port}/v1/chat/completions", sbody, sheaders, key)

        rss = {t: peak_rss_mb(p.pid) for t, (_, p, _) in targets.items()}
    finally:
        procs.stop()
    elapsed = time.time() - started

    lines = []
    lines.append("# Benchmark results\n")
    lines.append(f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    lines.append(f"- Machine: {platform.machine()}, {os.cpu_count()} cores, "
                 f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, {platform.platform()}")
    lines.append(f"- Command: `benches/run.py {' '.join(sys.argv[1:])}` ({elapsed:.0f} s)")
    lines.append(f"- Load: wrk, {args.connections} connections, {args.threads} threads, {args.duration} s per run, "
                 f"{args.rounds} interleaved round(s), median of rounds. Everything (load generator, proxies, "
                 "mock upstream, Redis) shares the same 2 cores, so absolute numbers are low and noisy; the ratios "
                 "measured side by side are the result.\n")
    for sname in scenarios:
        lines.append(f"## {sname}\n")
        lines.append("| target | req/s | p50 ms | p99 ms | p99.9 ms | added p50 ms vs direct | errors | "
                     "throughput / nginx | p99 / nginx | throughput / direct |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        base_n = results[(sname, "nginx")]
        base_d = results[(sname, "direct")]
        n_rps, n_p99 = median([r["rps"] for r in base_n]), median([r["p99"] for r in base_n])
        d_rps, d_p50 = median([r["rps"] for r in base_d]), median([r["p50"] for r in base_d])
        for tname in targets:
            runs = results[(sname, tname)]
            rps = median([r["rps"] for r in runs])
            p50, p99, p999 = (median([r[k] for r in runs]) / 1000 for k in ("p50", "p99", "p999"))
            errors = sum(r["errors"] for r in runs)
            lines.append(f"| {tname} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {p999:.2f} | {p50 - d_p50 / 1000:+.2f} | "
                         f"{errors} | {rps / n_rps:.2f} | {p99 / (n_p99 / 1000):.2f} | {rps / d_rps:.2f} |")
        lines.append("")
    lines.append("## Time to first byte of a stream (sequential, 200 requests)\n")
    lines.append("| target | median ms | p99 ms | added median ms vs direct |")
    lines.append("|---|---:|---:|---:|")
    for tname, (med, p99) in ttft.items():
        lines.append(f"| {tname} | {med:.3f} | {p99:.3f} | {med - ttft['direct'][0]:+.3f} |")
    lines.append("")
    lines.append("## Peak RSS (VmHWM) over the whole run\n")
    lines.append("| target | MiB |")
    lines.append("|---|---:|")
    for tname, mb in rss.items():
        lines.append(f"| {tname} | {mb:.1f} |")
    lines.append("")
    lines.append("Limits layer cost (small scenario, p50 added over warden-off): "
                 + ", ".join(
                     f"{t}: {median([r['p50'] for r in results[('small', t)]]) / median([r['p50'] for r in results[('small', 'warden-off')]]):.2f}x p50, "
                     f"{median([r['rps'] for r in results[('small', t)]]) / median([r['rps'] for r in results[('small', 'warden-off')]]):.2f}x throughput"
                     for t in ("warden-limits", "warden-redis")))
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
