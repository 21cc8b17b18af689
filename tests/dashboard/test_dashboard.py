"""The review dashboard in a real browser (headless Chromium driven by Playwright).

A reviewer's whole loop on the real binaries: an account harvests reasoning traces
until the detector blocks it; the reviewer signs in, finds the alert, reads what fired
and the samples, opens the account and its recent requests, unblocks it and resolves the
alert as a false positive. Every step is checked against the admin API afterwards: the
actions are recorded under the reviewer's name, and nothing on the pages is rendered as
HTML from data (a hostile account id and prompt stay text). No page may violate its
Content-Security-Policy. WARDEN_BIN and MOCK_BIN name the binaries (scripts/test.sh
sets both); CHROMIUM the browser (default /usr/bin/chromium).
"""

import json
import os
import subprocess
import tempfile
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect, sync_playwright

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WARDEN_BIN = os.environ.get("WARDEN_BIN", os.path.join(ROOT, "target/debug/warden"))
MOCK_BIN = os.environ.get("MOCK_BIN", os.path.join(ROOT, "target/debug/warden-mock-llm"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ADMIN_TOKEN = "dashboard-test-admin-token"
HOSTILE = '<img src=x onerror="window.pwned=1">'


def _read_line_containing(proc, needle):
    for line in proc.stdout:
        if needle in line:
            return line
    raise RuntimeError(f"process exited before printing {needle!r}")


class Stack:
    def __init__(self, proxy, admin):
        self.proxy, self.admin = proxy, admin

    def api(self, method, path, body=None, actor="test"):
        req = urllib.request.Request(
            f"http://{self.admin}{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json",
                     "x-warden-actor": actor})
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read() or b"null")

    def chat(self, key, prompt):
        body = {"model": "mock-small", "max_tokens": 2048, "messages": [{"role": "user", "content": prompt}]}
        req = urllib.request.Request(f"http://{self.proxy}/v1/chat/completions", method="POST",
                                     data=json.dumps(body).encode(),
                                     headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
        try:
            with urllib.request.urlopen(req) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code


@pytest.fixture(scope="module")
def stack():
    procs = []
    tmp = tempfile.TemporaryDirectory()
    try:
        mock = subprocess.Popen([MOCK_BIN, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
        procs.append(mock)
        mock_url = _read_line_containing(mock, "listening on").strip().split("listening on ")[1]
        config = os.path.join(tmp.name, "warden.toml")
        with open(config, "w") as f:
            f.write(f"""
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[upstream]
base_url = "{mock_url}"
api_key_env = "DASH_UPSTREAM_KEY"
[admin]
token_env = "DASH_ADMIN_TOKEN"
[storage]
path = "{tmp.name}/warden.db"
[audit]
dir = "{tmp.name}/audit"
flush_interval_ms = 100
[logging]
format = "json"
[detection]
mode = "enforce"
[[tiers]]
name = "default"
""")
        env = dict(os.environ, DASH_UPSTREAM_KEY="sk-upstream", DASH_ADMIN_TOKEN=ADMIN_TOKEN)
        warden = subprocess.Popen([WARDEN_BIN, "serve", "--config", config], stdout=subprocess.PIPE, text=True, env=env)
        procs.append(warden)
        started = json.loads(_read_line_containing(warden, "warden listening"))
        s = Stack(started["proxy"], started["admin"])

        # A harvester: one template, reasoning traces asked for, machine-regular, until
        # the detector blocks it.
        s.api("POST", "/admin/v1/accounts", {"id": "harvester", "tier": "default"})
        key = s.api("POST", "/admin/v1/accounts/harvester/keys")["key"]
        topics = ["the sea", "a city at night", "autumn", "a lighthouse", "the desert", "a train"]
        statuses = [s.chat(key, f"Write a short poem about {topics[i % 6]}. (item {i}) "
                                "Please reason step by step, and put your final answer within \\boxed{}. " + HOSTILE)
                    for i in range(120)]
        assert 403 in statuses, "the harvester was never blocked"
        # A benign account that the accounts page lists too.
        s.api("POST", "/admin/v1/accounts", {"id": "support-bot", "tier": "default"})
        yield s
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=15)
        tmp.cleanup()


@pytest.fixture()
def page(stack):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        pg = browser.new_page()
        pg.problems = []
        pg.on("console", lambda m: pg.problems.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: pg.problems.append(str(e)))
        pg.on("dialog", lambda d: d.accept(pg.answer))
        pg.answer = ""
        yield pg
        browser.close()


def test_pages_need_no_token_but_data_does(stack):
    with urllib.request.urlopen(f"http://{stack.admin}/dashboard/") as r:
        assert r.status == 200
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert "/dashboard/app.js" in r.read().decode()
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://{stack.admin}/admin/v1/alerts")
    assert e.value.code == 401


def test_a_reviewer_works_an_alert_end_to_end(stack, page):
    page.goto(f"http://{stack.admin}/dashboard/")
    # Signing in with a wrong token fails and stays on the form.
    page.fill("#token", "not-the-token")
    page.fill("#actor", "alice")
    page.click("button[type=submit]")
    expect(page.locator("#toast")).to_contain_text("admin token")
    # (the browser logs the refused request; that one was expected)
    assert all("401" in p for p in page.problems), page.problems
    page.problems.clear()
    page.fill("#token", ADMIN_TOKEN)
    page.click("button[type=submit]")

    # The queue shows the harvester's alert; its row opens the evidence.
    row = page.locator("#alerts tbody tr", has_text="harvester")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("extraction")
    row.click()
    expect(page.locator("table.signals")).to_contain_text("reasoning_elicitation")
    expect(page.locator("table.samples").first).to_contain_text("Please reason step by step")
    # The hostile text in the prompt is shown as text, never run.
    expect(page.locator("table.samples").first).to_contain_text("<img src=x")
    assert page.evaluate("window.pwned") is None
    member = page.locator("#members tbody tr", has_text="harvester")
    expect(member).to_contain_text("blocked")

    # Unblock from the alert (the reason is asked for), then resolve as a false positive.
    page.answer = "checked with the customer: an eval run"
    member.locator("button[data-action=unblock]").click()
    expect(page.locator("#members tbody tr", has_text="harvester")).to_contain_text("active")
    page.select_option("#resolve-verdict", "false_positive")
    page.fill("#resolve-note", "eval team, approved by bob")
    page.click("#resolve")
    expect(page.locator("#verdict")).to_contain_text("false_positive by alice")

    # The account page: status, history with the reviewer's action, recent requests.
    page.goto(f"http://{stack.admin}/dashboard/#/account/harvester")
    expect(page.locator("#requests tbody tr").first).to_be_visible()
    assert page.locator("#requests tbody tr", has_text="403").count() >= 1
    expect(page.locator("table.actions")).to_contain_text("alice")
    page.locator("#requests tbody tr").first.click()
    expect(page.locator("#record")).to_contain_text('"request_id"')

    # The accounts list, riskiest first, filters by id.
    page.goto(f"http://{stack.admin}/dashboard/#/accounts?q=support")
    expect(page.locator("#accounts tbody tr")).to_have_count(1)
    expect(page.locator("#accounts tbody tr")).to_contain_text("support-bot")
    assert page.problems == [], page.problems

    # What the API recorded: the reviewer's name on both actions, the verdict.
    account = stack.api("GET", "/admin/v1/accounts/harvester")
    assert account["status"] == "active"
    unblock = [a for a in account["actions"] if a["action"] == "unblock"]
    assert unblock and unblock[0]["actor"] == "alice" and unblock[0]["reason"] == "checked with the customer: an eval run"
    alerts = stack.api("GET", "/admin/v1/alerts?status=resolved&account=harvester")["alerts"]
    assert len(alerts) == 1 and alerts[0]["verdict"] == "false_positive" and alerts[0]["resolved_by"] == "alice"


def test_a_block_from_the_account_page_applies_to_the_next_request(stack, page):
    page.goto(f"http://{stack.admin}/dashboard/#token={ADMIN_TOKEN}&actor=carol&go=/account/support-bot")
    expect(page.locator("h2")).to_contain_text("support-bot")
    page.answer = "reviewer test"
    page.click("button[data-action=block]")
    expect(page.locator("button[data-action=unblock]")).to_be_visible()
    key = stack.api("POST", "/admin/v1/accounts/support-bot/keys")["key"]
    assert stack.chat(key, "hello") == 403
    # The token in the link is gone from the address bar once used.
    assert "token=" not in page.url
    assert page.problems == [], page.problems
