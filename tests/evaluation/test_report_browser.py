"""The report in a real headless Chromium: it fits a 1280-pixel window without horizontal scrolling, reads on a
phone, and its question table filters by strategy and by right/wrong."""

from __future__ import annotations

import pytest
from evaluation.test_report import question, with_verdict
from evaluation.test_advice import make_results, strategy
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from ragtune.evaluation.report import write_report

NAMES = ["base", "rag", "ft", "ft+rag", "raft"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    strategies = {name: strategy(0.1 + 0.07 * index, retrieval=name in ("rag", "ft+rag", "raft"),
                                 train_seconds=300 if name.startswith(("ft", "raft")) else None)
                  for index, name in enumerate(NAMES)}
    rows = [question(index, NAMES) for index in range(12)]
    rows[1]["answers"]["rag"]["answer"] = "a_very_long_identifier_without_spaces." * 12  # must wrap, not widen
    results = with_verdict(make_results(strategies, significance=[("raft", "base", 0.28, 0.001)],
                                        per_question=rows, price_per_hour=0.5))
    long_path = "/work/main/src/ragtune/demo_data/covidqa/docs/" + "nested_folder/" * 4  # in the title
    results.config.docs = long_path
    return write_report(results, tmp_path_factory.mktemp("report"))["report.html"], rows


def _page_width(browser) -> tuple[int, int]:
    return (browser.execute_script("return document.documentElement.scrollWidth"),
            browser.execute_script("return window.innerWidth"))


@pytest.mark.parametrize("width", [1280, 390])
def test_the_page_fits_its_window(browser, report, width, tmp_path):
    path, _ = report
    browser.set_window_size(width, 900)
    browser.get(path.as_uri())
    scroll_width, inner_width = _page_width(browser)
    assert scroll_width <= inner_width, f"{scroll_width} px of content in a {inner_width} px window"
    assert browser.find_element(By.ID, "verdict").is_displayed()
    if width >= 1280:  # on a desktop no table scrolls sideways either (on a phone wide tables scroll in their box)
        overflowing = browser.execute_script(
            "return [...document.querySelectorAll('.scroll')].filter(e => e.scrollWidth > e.clientWidth + 1)"
            ".map(e => e.querySelector('table').id || e.querySelector('th').textContent)")
        assert overflowing == []
    assert browser.get_screenshot_as_file(str(tmp_path / f"report-{width}.png"))


def test_the_question_table_filters_by_strategy_and_outcome(browser, report):
    path, rows = report
    browser.set_window_size(1280, 900)
    browser.get(path.as_uri())
    visible_rows = lambda: [row for row in browser.find_elements(By.CSS_SELECTOR, "#questions tbody tr")
                            if row.is_displayed()]
    assert len(visible_rows()) == len(rows)

    Select(browser.find_element(By.ID, "strategy-filter")).select_by_value("rag")
    Select(browser.find_element(By.ID, "outcome-filter")).select_by_value("wrong")
    wrong_for_rag = [row["id"] for row in rows if row["answers"]["rag"]["scores"]["f1"] < 0.5]
    assert [row.find_element(By.TAG_NAME, "td").text for row in visible_rows()] == wrong_for_rag
    headers = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#questions thead th")
               if cell.is_displayed()]
    assert headers == ["id", "question", "reference", "rag"]
    assert browser.find_element(By.ID, "question-count").text == f"{len(wrong_for_rag)} shown"

    Select(browser.find_element(By.ID, "outcome-filter")).select_by_value("right")
    assert len(visible_rows()) == len(rows) - len(wrong_for_rag)
