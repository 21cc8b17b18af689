"""The review dashboard in a real browser (headless Chromium driven by Playwright).

A reviewer's whole loop on the real binaries: an account harvests reasoning traces
until the detector blocks it; the reviewer signs in, finds the alert, reads what fired
and the samples, opens the account and its recent requests, unblocks it and resolves the
alert as a false positive. Every step is checked against the admin API afterwards: the
actions are recorded under the reviewer's name, and nothing on the pages is rendered as
HTML from data (a hostile account id and prompt stay text). No page may violate its
Content-Security-Policy. The account timeline chart and a cluster's members side by side
are drawn from the admin API and checked against it. WARDEN_BIN and MOCK_BIN name the
binaries (scripts/test.sh sets both); CHROMIUM the browser (default /usr/bin/chromium).
Screenshots of the main pages go to WARDEN_SCREENSHOTS (default target/screenshots;
`WARDEN_SCREENSHOTS=docs/screenshots` refreshes the ones in docs/).
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
SHOTS = os.path.join(ROOT, os.environ.get("WARDEN_SCREENSHOTS", "target/screenshots"))


def shot(page, name):
    os.makedirs(SHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SHOTS, name + ".png"), full_page=True)


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

    def chat(self, key, prompt, ip=None):
        body = {"model": "mock-small", "max_tokens": 2048, "messages": [{"role": "user", "content": prompt}]}
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        if ip:
            headers["x-forwarded-for"] = ip
        req = urllib.request.Request(f"http://{self.proxy}/v1/chat/completions", method="POST",
                                     data=json.dumps(body).encode(), headers=headers)
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
trusted_proxies = ["127.0.0.1"]
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
cluster_interval_secs = 1
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
        # A hydra: ten quiet accounts on one subnet sharing one template, taking turns.
        hydra = []
        for n in range(10):
            s.api("POST", "/admin/v1/accounts", {"id": f"hydra-{n:02}", "tier": "default"})
            hydra.append(s.api("POST", f"/admin/v1/accounts/hydra-{n:02}/keys")["key"])
        for i in range(30):
            for n, k in enumerate(hydra):
                s.chat(k, f"Answer the following question given this paragraph: question {i}-{n} ({i})\n\nA:",
                       ip=f"100.64.7.{10 + n}")
        s.hydra = [f"hydra-{n:02}" for n in range(10)]
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
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
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
    shot(page, "alerts")
    row.click()
    expect(page.locator("table.signals")).to_contain_text("reasoning_elicitation")
    expect(page.locator("table.samples").first).to_contain_text("Please reason step by step")
    # The hostile text in the prompt is shown as text, never run.
    expect(page.locator("table.samples").first).to_contain_text("<img src=x")
    assert page.evaluate("window.pwned") is None
    member = page.locator("#members tbody tr", has_text="harvester")
    expect(member).to_contain_text("blocked")
    # Only signals that fired are marked so.
    for r in page.locator("table.signals tbody tr").all():
        cells = r.locator("td").all_inner_texts()
        contribution = float(cells[6].split()[0])
        assert ("fired" in cells[7]) == (contribution > 0), cells
    shot(page, "alert")

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


def test_the_account_timeline_charts_its_hours_alerts_and_actions(stack, page):
    # An action whose reason is hostile markup: the chart's labels are text.
    stack.api("POST", "/admin/v1/accounts/support-bot/unblock", {"reason": HOSTILE}, actor="dave")
    timeline = stack.api("GET", "/admin/v1/accounts/harvester/timeline?hours=48")
    assert sum(b["requests"] for b in timeline["hours"]) == 120
    assert timeline["alerts"] and any(a["actor"] == "detector" for a in timeline["actions"])
    page.goto(f"http://{stack.admin}/dashboard/#token={ADMIN_TOKEN}&actor=erin&go=/account/harvester")
    chart = page.locator("#timeline-card svg.timeline")
    expect(chart).to_be_visible()
    # One group per hour the API counted, its tooltip with that hour's numbers.
    hours = chart.locator("g.hour")
    expect(hours).to_have_count(len(timeline["hours"]))
    last = timeline["hours"][-1]
    assert f"{last['requests']:,} requests ({last['refused']:,} refused)" in \
        hours.last.locator("title").text_content()
    assert chart.locator("rect.bar-requests").count() == len(timeline["hours"])
    assert chart.locator("rect.bar-refused").count() == sum(1 for b in timeline["hours"] if b["refused"])
    assert chart.locator("polyline.line-tokens").count() == 1
    # Alerts and actions are marked where they happened.
    expect(chart.locator("g.mark-alert")).to_have_count(len(timeline["alerts"]))
    expect(chart.locator("g.mark-action")).to_have_count(len(timeline["actions"]))
    assert "alert extraction" in chart.locator("g.mark-alert title").first.text_content()
    shot(page, "account")
    # The range can be changed.
    page.select_option("#timeline-hours", "168")
    expect(page.locator("#timeline-card svg.timeline")).to_be_visible()
    # The hostile reason shows up as text in its mark's label, and never runs.
    page.goto(f"http://{stack.admin}/dashboard/#/account/support-bot")
    marks = page.locator("#timeline-card svg.timeline g.mark-action title")
    expect(marks.first).to_be_attached()
    assert any(HOSTILE in t for t in marks.all_text_contents())
    assert page.locator("svg.timeline img").count() == 0
    assert page.evaluate("window.pwned") is None
    assert page.problems == [], page.problems


def test_a_clusters_members_are_drawn_side_by_side(stack, page):
    # The detector links the hydra (it looks for clusters every second).
    cluster = None
    for _ in range(60):
        alerts = stack.api("GET", "/admin/v1/alerts?status=all")["alerts"]
        cluster = next((a for a in alerts if a["kind"] == "coordinated_cluster"), None)
        if cluster:
            break
        import time
        time.sleep(0.5)
    assert cluster, "the hydra was never linked"
    page.goto(f"http://{stack.admin}/dashboard/#token={ADMIN_TOKEN}&actor=erin&go=/alert/{cluster['id']}")
    cells = page.locator("#members-activity .cell")
    expect(cells).to_have_count(min(24, len(cluster["account_ids"])))
    # Each is that member's chart, linking to its account.
    first = cells.first
    member = first.get_attribute("href").split("/")[-1]
    assert member in cluster["account_ids"]
    expect(first.locator("svg.timeline.compact text.label")).to_have_text(member)
    expect(first.locator("rect.bar-requests").first).to_be_attached()
    shot(page, "cluster")
    assert page.problems == [], page.problems
