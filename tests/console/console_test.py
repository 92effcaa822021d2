#!/usr/bin/env python3
"""The vigil web console in a real browser: headless Chromium (Debian's package)
driven by Playwright for Python, against a `vigil serve` on 127.0.0.1 that
engine/tests/console_e2e.rs starts (and whose setup this script assumes: the
principals, the `slowfix` and `gated` runbooks, the `gate` policy, the seeded
`latency` detector records).

Each test runs on its own; a failing one saves a screenshot and says where. The
last part floods the store with 10,000 incidents and measures the incidents page's
first paint with the browser's performance API. Exit status: the number of failures.

Environment: CONSOLE_BASE (http://127.0.0.1:PORT), CONSOLE_CHROMIUM, CONSOLE_SCREENSHOTS,
CONSOLE_APPROVED_FILE, and the tokens ALICE_TOKEN, BOB_TOKEN, VERA_TOKEN, ADA_TOKEN, SAM_TOKEN.
Set CONSOLE_SKIP_PERF=1 to leave out the 10,000-incident measurement, and
CONSOLE_TOUR=<dir> to keep a screenshot of every page (desktop and phone) there.
"""

import json
import re
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import urllib.request
from urllib.parse import urlparse

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["CONSOLE_BASE"].rstrip("/")
HOST = urlparse(BASE).hostname
assert HOST == "127.0.0.1", f"tests run on 127.0.0.1 only, not {HOST}"
CHROMIUM = os.environ.get("CONSOLE_CHROMIUM", "/usr/bin/chromium")
SHOTS = os.environ.get("CONSOLE_SCREENSHOTS") or tempfile.mkdtemp(prefix="vigil-console-shots-")
TOKENS = {n: os.environ[f"{n.upper()}_TOKEN"] for n in ["alice", "bob", "vera", "ada", "sam"]}
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 15_000
expect.set_options(timeout=TIMEOUT_MS)


def api(method, path, token, body=None):
    """The JSON API, as a client with a bearer token would call it."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def alertmanager(alerts):
    """An Alertmanager v4 webhook, as Alertmanager sends it (the sender's token)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    payload = {
        "version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "vigil",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
        "alerts": [
            {"status": "firing", "labels": a["labels"], "annotations": a.get("annotations", {}),
             "startsAt": now, "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom"}
            for a in alerts
        ],
    }
    return api("POST", "/api/v1/alerts", TOKENS["sam"], payload)


class User:
    """One person's browser: a fresh Chromium profile (its own --user-data-dir)."""

    def __init__(self, pw, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"vigil-console-{name}-")
        self.ctx = pw.chromium.launch_persistent_context(
            self.dir, executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1280, "height": 900},
        )
        self.ctx.set_default_timeout(TIMEOUT_MS)
        self.page = self.ctx.pages[0] if self.ctx.pages else self.ctx.new_page()
        self.errors = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))

    def login(self, who=None):
        who = who or self.name
        p = self.page
        p.goto(BASE + "/")
        expect(p).to_have_url(f"{BASE}/console/login?next=%2Fconsole%2Fincidents")
        p.get_by_label("Your API token").fill(TOKENS[who])
        p.get_by_role("button", name="Log in").click()
        expect(p).to_have_url(BASE + "/console/incidents")
        expect(p.locator("header .who")).to_contain_text(who)
        return p

    def logout(self):
        self.page.get_by_role("button", name="Log out").click()
        expect(self.page).to_have_url(BASE + "/console/login")

    def close(self):
        self.ctx.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_until(what, fn, timeout=TIMEOUT_MS / 1000):
    end = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def reload_until(page, locator, timeout=TIMEOUT_MS / 1000):
    """Reloads until `locator` is on the page (server-rendered lists)."""
    end = time.time() + timeout
    while locator.count() == 0:
        if time.time() > end:
            raise AssertionError(f"timed out waiting for {locator}")
        time.sleep(0.3)
        page.reload()
    return locator


# ------------------------------------------------------------------ the tests


def test_log_in(users):
    p = users["alice"].page
    p.goto(BASE + "/console/approvals")
    expect(p).to_have_url(f"{BASE}/console/login?next=%2Fconsole%2Fapprovals")
    p.get_by_label("Your API token").fill("not-a-token-of-anyone-here")
    p.get_by_role("button", name="Log in").click()
    expect(p.get_by_role("alert")).to_contain_text("not one of the configured tokens")
    users["alice"].errors.clear()  # the refused login's 403 is expected
    users["alice"].login()
    expect(p.locator("nav")).to_contain_text("Incidents")
    # Keyboard: the skip link is the first stop and leads to the content.
    p.keyboard.press("Tab")
    expect(p.locator("a.skip")).to_be_focused()


def test_incident_from_alertmanager(users):
    p = users["alice"].page
    alertmanager([
        {"labels": {"alertname": "PaymentsDown", "service": "payments", "severity": "critical"},
         "annotations": {"summary": "payments answers 503"}},
        {"labels": {"alertname": "CheckoutErrors", "service": "checkout", "severity": "warning"}},
    ])
    p.goto(BASE + "/console/incidents")
    row = reload_until(p, p.locator("#incidents tr", has_text="PaymentsDown"))
    expect(row.first).to_contain_text("critical")
    row.first.get_by_role("link").first.click()
    expect(p.locator("h1")).to_contain_text("PaymentsDown")
    alerts = p.locator("table", has=p.locator("th", has_text="Role"))
    expect(alerts).to_contain_text("root cause")
    expect(alerts).to_contain_text("CheckoutErrors")
    # The dependency picture: payments is the root, checkout depends on it.
    expect(p.locator("svg.dag .node.root")).to_have_attribute("data-step", "payments")
    # An operator acknowledges it.
    p.get_by_role("button", name="Acknowledge").click()
    expect(p.locator("h1")).to_contain_text("acknowledged")


def test_execution_graph_live(users):
    p = users["alice"].page
    alertmanager([{"labels": {"alertname": "SlowFix", "service": "search", "severity": "warning"}}])
    p.goto(BASE + "/console/incidents")
    row = reload_until(p, p.locator("#incidents tr", has_text="SlowFix").locator("a[href^='/console/executions/']"))
    row.first.click()
    expect(p.locator("h1")).to_contain_text("slowfix")
    wait = p.locator("svg.dag .node[data-step='wait']")
    # The sleeping step runs while we look, then the page shows it done, live.
    expect(wait).to_have_attribute("data-state", "running")
    expect(p.locator("svg.dag .node[data-step='prepare']")).to_have_attribute("data-state", "succeeded")
    expect(wait).to_have_attribute("data-state", "succeeded", timeout=20_000)
    expect(p.locator("svg.dag .node[data-step='finish']")).to_have_attribute("data-state", "succeeded")
    expect(p.locator("#exec-status")).to_have_text("succeeded")
    expect(p.locator("#timeline")).to_contain_text("execution finished")
    # The graph has an edge per need.
    expect(p.locator("svg.dag path.edge")).to_have_count(4)


def test_approval_only_for_the_named_approver(users):
    alertmanager([{"labels": {"alertname": "NeedsHuman", "service": "ledger", "severity": "critical", "mode": "approve"}}])
    vera = users["vera"].page
    vera.goto(BASE + "/console/approvals")
    card = reload_until(vera, vera.locator("[data-approval]", has_text="gated"))
    expect(card).to_contain_text("Only alice may approve")
    expect(card.locator("code.plan-hash")).not_to_be_empty()
    expect(card.get_by_role("button", name="Approve")).to_have_count(0)
    # Another operator, not named by the policy: no button either.
    users["vera"].logout()
    users["vera"].login("bob")
    vera.goto(BASE + "/console/approvals")
    expect(vera.locator("[data-approval]", has_text="gated").get_by_role("button", name="Approve")).to_have_count(0)
    users["vera"].logout()
    users["vera"].login("vera")
    # The approver sees the plan and decides.
    p = users["alice"].page
    p.goto(BASE + "/console/approvals")
    card = p.locator("[data-approval]", has_text="gated")
    expect(card).to_contain_text("a human must look")
    expect(card).to_contain_text("core/write")
    card.get_by_label("Comment").fill("looks right")
    card.get_by_role("button", name="Approve").click()
    expect(p).to_have_url(re.compile(r".*/console/executions/[^/]+$"))
    expect(p.locator("#exec-status")).to_have_text("succeeded")
    expect(p.locator("svg.dag .node[data-step='act']")).to_have_attribute("data-state", "succeeded")
    wait_until("the approved step's file", lambda: os.path.exists(os.environ["CONSOLE_APPROVED_FILE"]))


def test_pause_and_resume(users):
    p = users["alice"].page
    p.goto(BASE + "/console/automation")
    expect(p.locator("#automation-state")).to_have_text("running")
    p.get_by_label("Reason").fill("bad deploy under investigation")
    p.get_by_role("button", name="Pause automation").click()
    expect(p.locator("#automation-state")).to_have_text("paused")
    expect(p.locator("#kill-switch")).to_contain_text("bad deploy under investigation")
    assert api("GET", "/api/v1/status", TOKENS["vera"])["paused"]["by"] == "alice"
    p.get_by_role("button", name="Resume automation").click()
    expect(p.locator("#automation-state")).to_have_text("running")
    # The audit log, filtered by action.
    p.get_by_label("Action").select_option("pause")
    p.get_by_role("button", name="Filter").click()
    expect(p.locator("#audit tbody tr")).to_have_count(1)
    expect(p.locator("#audit")).to_contain_text("user:alice")
    # A viewer sees the state and no switch.
    v = users["vera"].page
    v.goto(BASE + "/console/automation")
    expect(v.locator("#automation-state")).to_have_text("running")
    expect(v.get_by_role("button", name="Pause automation")).to_have_count(0)


def test_add_and_expire_a_silence(users):
    p = users["alice"].page
    p.goto(BASE + "/console/silences")
    p.get_by_label("Matchers").fill("service=payments\nalertname=~Payments.*")
    p.get_by_label("Duration").fill("1h")
    p.get_by_label("Comment").fill("failover drill")
    p.get_by_role("button", name="Preview").click()
    expect(p.locator("#preview")).to_contain_text("would mute 1 alert(s)")
    p.get_by_role("button", name="Add silence").click()
    expect(p).to_have_url(BASE + "/console/silences")
    row = p.locator("#silences tr", has_text="failover drill")
    expect(row).to_contain_text("active")
    expect(row).to_contain_text("alice")
    row.get_by_role("button", name="Expire").click()
    expect(p.locator("#silences tr", has_text="failover drill")).to_contain_text("expired")


def test_detector_plot(users):
    p = users["vera"].page
    p.goto(BASE + "/console/detectors")
    p.get_by_role("link", name="latency").click()
    expect(p.locator("h1")).to_contain_text("latency")
    plot = p.locator("svg.plot").first
    expect(plot).to_be_visible()
    expect(plot.locator("circle.anomaly")).to_have_count(4)
    expect(plot.locator("polyline.series")).to_have_count(1)
    expect(plot.locator("polygon.band")).to_have_count(1)


def test_phone_sized_and_no_script_errors(users):
    p = users["vera"].page
    p.set_viewport_size({"width": 390, "height": 844})
    p.goto(BASE + "/console/incidents")
    # Nothing wider than the phone but the scrollable tables.
    width = p.evaluate("document.querySelector('header').scrollWidth")
    assert width <= 390, f"the header is {width}px wide on a 390px phone"
    p.set_viewport_size({"width": 1280, "height": 900})
    for u in users.values():
        assert not u.errors, f"{u.name}'s browser logged errors: {u.errors}"


def tour(users, out):
    """A screenshot of every page, on a laptop and on a phone."""
    os.makedirs(out, exist_ok=True)
    p = users["alice"].page
    p.goto(BASE + "/console/executions")
    first = p.locator("#executions a").first.get_attribute("href")
    pages = ["/console/incidents", first, "/console/approvals", "/console/automation",
             "/console/silences", "/console/detectors", "/console/detectors/latency"]
    for width, height in [(1280, 900), (390, 844)]:
        p.set_viewport_size({"width": width, "height": height})
        for i, u in enumerate(pages):
            p.goto(BASE + u)
            p.screenshot(path=os.path.join(out, f"{width}-{i}-{u.strip('/').replace('/', '_')}.png"), full_page=True)
    p.set_viewport_size({"width": 1280, "height": 900})


def measure_first_paint(users, n=10_000):
    """10,000 incidents in the store, then the incidents page's first paint."""
    batch = [
        {"labels": {"alertname": "Saturation", "service": f"svc-{i}", "instance": f"host-{i}",
                    "cluster": f"c{i}", "severity": "warning"}}
        for i in range(n)
    ]
    t0 = time.time()
    alertmanager(batch)
    wait_until(f"{n} open incidents",
               lambda: api("GET", "/api/v1/status", TOKENS["vera"])["incidents_open"] >= n, timeout=240)
    print(f"METRIC ingest_and_fold_{n}_alerts_s={time.time() - t0:.1f}")
    p = users["vera"].page
    fcp, fp, ttfb, dcl, sizes = [], [], [], [], []
    for _ in range(7):
        p.goto(BASE + "/console/incidents")
        expect(p.locator("#incidents tbody tr")).to_have_count(100)
        # (wait_for_function would evaluate a string in the page: the CSP forbids that)
        wait_until("the paint entries", lambda: p.evaluate("performance.getEntriesByType('paint').length") >= 2)
        paint = p.evaluate(
            "Object.fromEntries(performance.getEntriesByType('paint').map(e => [e.name, e.startTime]))")
        nav = p.evaluate("JSON.parse(JSON.stringify(performance.getEntriesByType('navigation')[0]))")
        fp.append(paint["first-paint"])
        fcp.append(paint["first-contentful-paint"])
        ttfb.append(nav["responseStart"] - nav["requestStart"])
        dcl.append(nav["domContentLoadedEventEnd"])
        sizes.append(nav.get("encodedBodySize", 0))
    runs = lambda xs: ", ".join(f"{x:.0f}" for x in xs)
    print(f"METRIC incidents_in_store={n} (the page shows the newest 100)")
    print(f"METRIC first_paint_ms_median={statistics.median(fp):.0f} (runs: {runs(fp)})")
    print(f"METRIC first_contentful_paint_ms_median={statistics.median(fcp):.0f} (runs: {runs(fcp)})")
    print(f"METRIC server_time_to_first_byte_ms_median={statistics.median(ttfb):.0f} (runs: {runs(ttfb)})")
    print(f"METRIC dom_content_loaded_ms_median={statistics.median(dcl):.0f}")
    print(f"METRIC incidents_page_bytes={sizes[-1]}")
    # The longest page the console makes: 1,000 rows.
    big = []
    for _ in range(3):
        p.goto(BASE + "/console/incidents?limit=1000")
        expect(p.locator("#incidents tbody tr")).to_have_count(1000)
        wait_until("the paint entries", lambda: p.evaluate("performance.getEntriesByType('paint').length") >= 2)
        big.append(p.evaluate("performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint').startTime"))
    print(f"METRIC first_contentful_paint_1000_rows_ms_median={statistics.median(big):.0f} (runs: {runs(big)})")


TESTS = [
    test_log_in,
    test_incident_from_alertmanager,
    test_execution_graph_live,
    test_approval_only_for_the_named_approver,
    test_pause_and_resume,
    test_add_and_expire_a_silence,
    test_detector_plot,
    test_phone_sized_and_no_script_errors,
]


def main():
    os.makedirs(SHOTS, exist_ok=True)
    failures = 0
    with sync_playwright() as pw:
        users = {"alice": User(pw, "alice"), "vera": User(pw, "vera")}
        try:
            users["vera"].login()
            for t in TESTS:
                started = time.time()
                try:
                    t(users)
                    print(f"ok   {t.__name__} ({time.time() - started:.1f}s)", flush=True)
                except Exception:
                    failures += 1
                    shots = []
                    for u in users.values():
                        path = os.path.join(SHOTS, f"{t.__name__}-{u.name}.png")
                        try:
                            u.page.screenshot(path=path, full_page=True)
                            shots.append(path)
                        except Exception as e:  # a dead page has no picture
                            shots.append(f"(no screenshot of {u.name}: {e})")
                    print(f"FAIL {t.__name__} ({time.time() - started:.1f}s)\n{traceback.format_exc()}"
                          f"screenshots: {', '.join(shots)}\nat: {', '.join(u.page.url for u in users.values())}",
                          flush=True)
            if not failures and os.environ.get("CONSOLE_TOUR"):
                tour(users, os.environ["CONSOLE_TOUR"])
            if not failures and os.environ.get("CONSOLE_SKIP_PERF") != "1":
                try:
                    measure_first_paint(users)
                except Exception:
                    failures += 1
                    path = os.path.join(SHOTS, "measure_first_paint.png")
                    users["vera"].page.screenshot(path=path)
                    print(f"FAIL measure_first_paint\n{traceback.format_exc()}screenshot: {path}", flush=True)
        finally:
            for u in users.values():
                u.close()
    print(f"{len(TESTS) - failures if failures <= len(TESTS) else 0} passed, {failures} failed")
    return failures


if __name__ == "__main__":
    sys.exit(min(main(), 100))
