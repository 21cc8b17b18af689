#!/usr/bin/env python3
"""Training run for the profile-guided build (scripts/build-pgo.sh).

The instrumented warden given as argument serves a mixed workload in front of the
bundled mock upstream, in three configurations (everything off; everything on with local
limits; everything on with the limits in Redis, when redis-server is installed), so the
compiler learns which paths are hot in production use, not in one benchmark:

- short chat completions, streamed completions (50 chunks), a new 32 KB prompt, a long
  conversation resending its history;
- what clients get wrong: a wrong key (401), malformed JSON (400), a refused parameter
  and a model outside the tier (400);
- the admin side: /metrics, /healthz, account usage and the alert queue.

Each request's status is checked, so a training run that silently trained on errors
fails instead. Profiles are written when the instrumented process exits (SIGTERM, then a
graceful shutdown), into the directory given by -Cprofile-generate.

Usage: benches/pgo_train.py PATH/TO/INSTRUMENTED/warden
"""

import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as R  # noqa: E402

# Requests per configuration: enough for the counts to be stable, ~10 s per configuration.
MIX = {"small": 6000, "stream50": 600, "prompt32k": 60, "history32k": 200}
CONNECTIONS = 8


def drive(port, jobs, connections=CONNECTIONS):
    """Sends every (method, path, body, headers, expected status) of `jobs` over
    `connections` keep-alive connections at once; raises if a status is not the expected one."""
    errors = []
    lock = threading.Lock()
    it = iter(jobs)

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                job = next(it, None)
            if job is None or errors:
                break
            method, path, body, headers, expected = job
            try:
                conn.request(method, path, body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                if r.status != expected:
                    errors.append(f"{method} {path}: {r.status}, expected {expected}")
            except (OSError, http.client.HTTPException) as e:
                errors.append(f"{method} {path}: {e!r}")
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"training request failed ({len(errors)}): {errors[0]}")


def workload(key, variant):
    chat = "/v1/chat/completions"
    auth = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    jobs = []
    for name, (body, extra) in R.scenario_bodies().items():
        data = json.dumps(body).encode()
        jobs += [("POST", chat, data, dict(auth, **extra), 200)] * MIX[name]
    bad = [("POST", chat, b'{"model": "mock-small", "messages": [', auth, 400),
           ("POST", chat, json.dumps({"model": "mock-small", "messages": []}).encode(),
            dict(auth, authorization="Bearer sk-warden-not-a-key"), 401)]
    if variant["policy"]:
        base = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
        bad += [("POST", chat, json.dumps(dict(base, model="mock-small", logit_bias={"50256": -100})).encode(), auth, 400),
                ("POST", chat, json.dumps(dict(base, model="not-in-the-tier")).encode(), auth, 400)]
    jobs += bad * 100
    # Interleaved, as traffic arrives: a fixed shuffle, so every training run is the same.
    random.Random(6).shuffle(jobs)
    return jobs


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = os.path.abspath(sys.argv[1])
    procs = R.Procs()
    tmp = tempfile.mkdtemp(prefix="warden-pgo-")
    started = time.time()
    try:
        mock = procs.start([os.path.join(R.BIN, "warden-mock-llm"), "--listen", "127.0.0.1:0"],
                           stdout=subprocess.PIPE, text=True)
        mock_port = int(mock.stdout.readline().strip().rsplit(":", 1)[1])
        variants = ["warden-off", "warden-full"]
        redis_port = R.free_port()
        if shutil.which("redis-server"):
            procs.start(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                         "--appendonly", "no"], stdout=subprocess.DEVNULL)
            R.wait_port(redis_port)
            variants.append("warden-full-redis")
        else:
            print("pgo_train: redis-server not installed, the Redis paths are not trained", file=sys.stderr)
        for name in variants:
            variant = R.WARDEN_VARIANTS[name]
            port, proc, key, _ = R.start_warden(procs, tmp, name, variant, mock_port, redis_port, binary=binary)
            admin = proc.admin_port
            t0 = time.time()
            drive(port, workload(key, variant))
            admin_auth = {"authorization": f"Bearer {R.ADMIN_TOKEN}"}
            drive(admin, [("GET", "/metrics", None, {}, 200), ("GET", "/healthz", None, {}, 200),
                          ("GET", "/admin/v1/accounts/bench", None, admin_auth, 200),
                          ("GET", "/admin/v1/accounts/bench/requests?limit=20", None, admin_auth, 200),
                          ("GET", "/admin/v1/alerts", None, admin_auth, 200)] * 25, connections=2)
            print(f"pgo_train: {name}: {time.time() - t0:.1f} s", flush=True)
            proc.send_signal(signal.SIGTERM)
            if proc.wait(timeout=30) != 0:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {tmp}/{name}/warden.log")
    finally:
        procs.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"pgo_train: done in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
