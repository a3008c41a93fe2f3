"""The monitoring API (the health report at /v1/monitoring: the key, the cache, one check at a time on its own
opening of the project, searches never waiting for it) and the health page in a real headless Chromium: findings by severity shown as text, measurements,
SVG charts, the empty states, desktop and phone widths."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from ragtune.errors import RagtuneError
from ragtune.health.findings import Finding, HealthReport
from ragtune.serve import monitoring_routes
from ragtune.serve.app import create_app

from serve_helpers import make_state, start_live

DOCS = Path(__file__).resolve().parents[2] / "docs"
INJECTED = "<img src=x onerror=alert(1)>"
INJECTED_FILE = 'notes <img src=x onerror="window.injected = 1">.md'
DAY = 86_400
NOW = time.time() // DAY * DAY


def planted(project: str = "/srv/kb", findings: bool = True) -> HealthReport:
    """A report with findings of every severity (some carrying markup), measurements and series."""
    report = HealthReport(project=project, generated_at=time.time(), counts={"sources": 42, "documents": 57,
                                                                             "chunks": 1311})
    if findings:
        report.findings = [
            Finding("consistency", "index_out_of_step", "error", "the vector index claims to be current but holds 0 "
                    "chunks the store no longer has and lacks 21 it has", "delete /srv/kb/.ragtune/index and run "
                    "`ragtune status --project /srv/kb`, which rebuilds the indexes from the store",
                    {"orphans": 0, "missing": 21, "generation": 17}),
            Finding("coverage", "coverage_gaps", "warning", "7 of 31 served questions found no passage close to them "
                    "(cosine < 0.3): the documents do not cover them",
                    "add documents that answer them, or tell users what the assistant covers",
                    {"questions": 7, "of": 31, "distinct": 6},
                    [f"'how do I reset {INJECTED}?' (asked 2 times)", "'what is the refund policy for annual plans?'",
                     "'can I export to PDF?'"]),
            Finding("traffic", "thumbs_down", "warning", "4 of 9 rated answers got a thumbs-down (44%)",
                    "read the questions and comments; missing documents show up as coverage gaps",
                    {"down": 4, "rated": 9}, ["'which plan includes SSO?' — 'wrong plan named'"]),
            Finding("freshness", "stale_documents", "info", f"3 documents were not modified for over 365 days {INJECTED}",
                    "check they still hold; remove or update them", {"oldest_days": 912.4},
                    [INJECTED_FILE, "pricing-2023.pdf", "faq/old-setup.html"]),
        ]
    days = [NOW - (13 - i) * DAY for i in range(14)]
    answers = [3, 5, 4, 8, 6, 9, 12, 7, 10, 14, 11, 15, 13, 18]
    report.metrics = {
        "traffic": {"answers": sum(answers), "latency_p50_s": 1.84, "latency_p95_s": 6.3, "no_citation_share": 0.12,
                    "rated": 9, "thumbs_down_share": 0.444},
        "coverage": {"questions_checked": 31, "weak_share": 0.226},
        "drift": {"snapshots": 4, "mmd": {"p_value": 0.21, "statistic": 0.0031, "drifted": False}},
    }
    report.series = {
        "answers": [[t, n] for t, n in zip(days, answers)],
        "latency_p50_s": [[t, 1.5 + 0.05 * i] for i, t in enumerate(days)],
        "latency_p95_s": [[t, 4 + (i % 4) * 0.8] for i, t in enumerate(days)],
        "no_citation_share": [[t, (i % 5) / 20] for i, t in enumerate(days)],
        "thumbs_down_share": [[days[3], 0.0], [days[8], 0.5], [days[12], 0.4]],
        "weak_share": [[t, 0.1 + (i % 3) / 10] for i, t in enumerate(days)],
        "drift_mmd": [[days[2], 0.0012], [days[7], 0.0025], [days[13], 0.0031]],
        "drift_p_value": [[days[2], 0.61], [days[7], 0.33], [days[13], 0.21]],
        "probe_recall": [],
        "bucket_s": DAY,
    }
    return report


class FakeCheck:
    """check_health's double: counts runs, notes whether the served retriever's lock was free (searches go on) and
    whether it was given a project of its own, keeps runs `seconds` long."""

    def __init__(self, project, seconds: float = 0.0, report=planted):
        self.served, self.lock, self.seconds, self.report = project, project.retriever.lock, seconds, report
        self.runs, self.running, self.most_at_once, self.lock_free, self.own_project = 0, 0, 0, [], []

    def __call__(self, project, record_probe=True):
        assert record_probe is False  # the server reads the probe history, `ragtune health` records it
        self.own_project.append(project is not self.served and project.workspace.root == self.served.workspace.root)
        self.runs += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        probe = threading.Thread(target=lambda: self.lock_free.append(self.lock.acquire(blocking=False)
                                                                      and (self.lock.release() or True)))
        probe.start()
        probe.join()
        time.sleep(self.seconds)
        self.running -= 1
        return self.report()


def test_the_api_returns_the_report_and_requires_the_key(served_project):
    client = TestClient(create_app(make_state(served_project, api_key="health-key")))
    assert client.get("/v1/monitoring").status_code == 401
    assert client.get("/v1/monitoring", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/healthz").json() == {"status": "ok"}  # liveness stays open
    page = client.get("/health")
    assert page.status_code == 200 and "Content-Security-Policy" in page.headers and "health.js" in page.text

    key = {"Authorization": "Bearer health-key"}
    report = client.get("/v1/monitoring", headers=key).json()
    assert report["status"] in ("ok", "info", "warning", "error") and isinstance(report["findings"], list)
    assert report["counts"] == {"sources": 4, "documents": 4, "chunks": 5}
    assert report["metrics"]["traffic"]["answers"] == 0 and report["project"] == str(served_project.workspace.root)

    chat = client.post("/v1/chat/completions", headers=key, json={
        "model": "rag", "messages": [{"role": "user", "content": "What is the tallest volcano?"}]}).json()
    client.post("/v1/feedback", headers=key, json={"response_id": chat["id"], "rating": "down"})
    assert client.get("/v1/monitoring", headers=key).json()["generated_at"] == report["generated_at"]  # cached
    served = client.get("/v1/monitoring?refresh=true", headers=key).json()
    assert served["metrics"]["traffic"]["answers"] == 1 and served["metrics"]["traffic"]["thumbs_down_share"] == 1
    assert [point[1] for point in served["series"]["answers"]] == [1]
    assert any(f["check"] == "thumbs_down" for f in served["findings"])


def test_reports_are_cached_and_refresh_runs_the_checks_again(served_project, monkeypatch):
    check = FakeCheck(served_project, seconds=0.3)
    monkeypatch.setattr(monitoring_routes, "check_health", check)
    with TestClient(create_app(make_state(served_project))) as client:
        started = time.perf_counter()
        first = client.get("/v1/monitoring").json()
        assert time.perf_counter() - started >= 0.3
        started = time.perf_counter()
        again = client.get("/v1/monitoring").json()
        assert time.perf_counter() - started < 0.2 and again["generated_at"] == first["generated_at"]
        assert check.runs == 1
        refreshed = client.get("/v1/monitoring", params={"refresh": "true"}).json()
        assert refreshed["generated_at"] > first["generated_at"] and check.runs == 2
        monkeypatch.setattr(monitoring_routes, "CACHE_SECONDS", 0.05)
        time.sleep(0.1)
        assert client.get("/v1/monitoring").json()["generated_at"] > refreshed["generated_at"] and check.runs == 3
    assert check.lock_free == [True] * 3 and check.own_project == [True] * 3  # searches never wait for a check


def test_one_check_at_a_time_and_waiting_callers_get_its_result(served_project, monkeypatch):
    check = FakeCheck(served_project, seconds=0.6)
    monkeypatch.setattr(monitoring_routes, "check_health", check)
    base_url, server = start_live(create_app(make_state(served_project)))
    try:
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda refresh: httpx.get(f"{base_url}/v1/monitoring?refresh={refresh}",
                                                              timeout=30), ["false", "true", "false", "true"]))
        assert [reply.status_code for reply in replies] == [200] * 4
        assert len({reply.json()["generated_at"] for reply in replies}) == 1
        assert check.runs == 1 and check.most_at_once == 1
        assert httpx.post(f"{base_url}/v1/search", json={"query": "volcano"}, timeout=30).status_code == 200
    finally:
        server.should_exit = True


def test_a_failed_check_is_a_server_error(served_project, monkeypatch):
    def failing(project, record_probe=True):
        raise RagtuneError("the configured embedder 'gone' is not installed", "run `ragtune models pull`")

    monkeypatch.setattr(monitoring_routes, "check_health", failing)
    response = TestClient(create_app(make_state(served_project))).get("/v1/monitoring")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "health_check_failed" and "ragtune models pull" in response.text


def shown(browser, selector):
    found = browser.find_elements(By.CSS_SELECTOR, selector)
    return found[0] if found and found[0].is_displayed() else None


def set_viewport(browser, width: int, height: int) -> None:
    """The page's viewport (what a screenshot holds) at width x height, whatever the window's frame takes."""
    browser.set_window_size(width, height)
    inner_w, inner_h = browser.execute_script("return [window.innerWidth, window.innerHeight]")
    browser.set_window_size(2 * width - inner_w, 2 * height - inner_h)


def no_horizontal_scroll(browser) -> bool:
    return browser.execute_script("const main = document.getElementById('health'); return "
                                  "document.documentElement.scrollWidth <= window.innerWidth && "
                                  "main.scrollWidth <= main.clientWidth")


@pytest.mark.parametrize("width, height, screenshot", [(1280, 900, "health.png"), (390, 844, "health-phone.png")])
def test_health_page_lists_findings_as_text_and_draws_charts(served_project, browser, monkeypatch, width, height,
                                                             screenshot):
    check = FakeCheck(served_project)
    monkeypatch.setattr(monitoring_routes, "check_health", check)
    base_url, server = start_live(create_app(make_state(served_project, api_key="page-key")))
    try:
        browser.get(f"{base_url}/health")
        set_viewport(browser, width, height)
        browser.execute_script("localStorage.clear()")
        browser.refresh()
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: shown(b, "#key")).send_keys("page-key", Keys.ENTER)
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#findings .finding"))

        assert browser.find_element(By.ID, "status-badge").text == "Errors"
        assert browser.find_element(By.ID, "counts").text == "42 sources · 57 documents · 1,311 chunks"
        groups = browser.find_elements(By.CSS_SELECTOR, "#findings .group")
        assert [group.get_attribute("data-severity") for group in groups] == ["error", "warning", "info"]
        assert [len(group.find_elements(By.CSS_SELECTOR, ".finding")) for group in groups] == [1, 2, 1]
        browser.execute_script("document.getElementById('health').scrollTop = 0")
        browser.save_screenshot(str(DOCS / screenshot))
        gaps = groups[1].find_elements(By.CSS_SELECTOR, ".finding")[0]
        assert gaps.find_element(By.TAG_NAME, "h4").text.startswith("7 of 31 served questions found no passage")
        stale = groups[2].find_element(By.CSS_SELECTOR, ".finding")
        assert stale.find_element(By.TAG_NAME, "h4").text.endswith(f"365 days {INJECTED}")
        assert "What to do: add documents" in gaps.text and "questions: 7" in gaps.text
        assert not gaps.find_element(By.CSS_SELECTOR, ".examples").is_displayed()  # collapsed
        gaps.find_element(By.TAG_NAME, "summary").click()
        assert f"'how do I reset {INJECTED}?' (asked 2 times)" in gaps.find_element(By.CSS_SELECTOR, ".examples").text
        groups[2].find_element(By.TAG_NAME, "summary").click()
        assert INJECTED_FILE in groups[2].text
        assert not browser.find_elements(By.CSS_SELECTOR, "#health img")
        assert browser.execute_script("return window.injected") is None  # an alert(1) would also fail the calls

        tiles = {tile.find_element(By.CLASS_NAME, "label").text: tile.find_element(By.TAG_NAME, "strong").text
                 for tile in browser.find_elements(By.CSS_SELECTOR, "#measurements .tile")}
        assert tiles["Answers served"] == "135" and tiles["Latency p95"] == "6.30 s"
        assert tiles["Thumbs-down share"] == "44%" and tiles["Coverage gap share"] == "23%"
        assert tiles["Latest drift p-value"] == "0.210"
        charts = {chart.get_attribute("data-series"): chart
                  for chart in browser.find_elements(By.CSS_SELECTOR, "#charts .chart")}
        assert "bucket_s" not in charts and len(charts) == 9
        points = charts["answers"].find_element(By.CSS_SELECTOR, "svg polyline").get_attribute("points").split()
        assert len(points) == 14 and len(charts["answers"].find_elements(By.CSS_SELECTOR, "svg circle")) == 14
        axis = charts["answers"].find_element(By.TAG_NAME, "svg").text
        assert re.search(r"[A-Z][a-z]+ \d{1,2}", axis) and not re.search(r"\d{6}", axis)  # dates, not unix times
        assert charts["probe_recall"].text.endswith("No data yet")
        assert no_horizontal_scroll(browser)
        assert browser.execute_script("return [innerWidth, innerHeight]") == [width, height]

        check.report = lambda: planted(findings=False)
        browser.find_element(By.ID, "refresh").click()
        wait.until(lambda b: b.find_element(By.ID, "status-badge").text == "Healthy")
        assert browser.find_element(By.ID, "findings").text == "No findings: the knowledge base looks healthy"
        assert check.runs == 2 and no_horizontal_scroll(browser)
    finally:
        browser.execute_script("localStorage.clear()")
        server.should_exit = True


def test_health_page_says_when_nothing_was_measured_yet(served_project, browser):
    base_url, server = start_live(create_app(make_state(served_project)))  # the real checks on a fresh project
    try:
        browser.set_window_size(390, 844)
        browser.get(f"{base_url}/health")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: b.find_element(By.ID, "status-badge").text not in ("", "…"))
        assert "No time series yet" in browser.find_element(By.ID, "charts").text
        assert browser.find_element(By.ID, "counts").text == "4 sources · 4 documents · 5 chunks"
        tiles = {tile.find_element(By.CLASS_NAME, "label").text: tile.find_element(By.TAG_NAME, "strong").text
                 for tile in browser.find_elements(By.CSS_SELECTOR, "#measurements .tile")}
        assert tiles["Answers served"] == "0" and tiles["Latency p50"] == "—" and tiles["Snapshots"] == "1"
        assert no_horizontal_scroll(browser)
    finally:
        server.should_exit = True
