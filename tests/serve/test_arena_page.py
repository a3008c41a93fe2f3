"""The arena page in a real headless Chromium against a live server: rater and key asked once, a battle voted with
the keyboard, the reveal, the vote stored, the next battle, a live question shown as text; phone width."""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from ragtune.arena.battles import ComparedAnswers
from ragtune.arena.store import ArenaStore
from ragtune.serve.app import create_app

from arena_helpers import write_comparison
from serve_helpers import make_state, start_live

DOCS = Path(__file__).resolve().parents[2] / "docs"
INJECTED = 'Is <img src=x onerror="window.injected = 1"> shown as text?'


def visible(browser, element_id):
    element = browser.find_element(By.ID, element_id)
    return element if element.is_displayed() else None


def test_arena_page_votes_with_the_keyboard_and_reveals(served_project, browser, tmp_path):
    state = make_state(served_project, api_key="arena-key", reply="A live answer [1].")
    state.arena = ArenaStore(served_project.workspace.database_path)
    state.compared = ComparedAnswers(write_comparison(tmp_path / "cmp"))
    base_url, server = start_live(create_app(state))
    try:
        browser.set_window_size(1280, 860)
        browser.get(f"{base_url}/arena")
        browser.execute_script("localStorage.clear()")
        browser.refresh()
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: visible(b, "rater")).send_keys("ana", Keys.ENTER)
        wait.until(lambda b: visible(b, "key")).send_keys("arena-key", Keys.ENTER)
        wait.until(lambda b: visible(b, "battle"))
        shown_a = browser.find_element(By.CSS_SELECTOR, "#side-A .answer").text
        assert browser.find_elements(By.CSS_SELECTOR, "#side-A .citations li")

        browser.find_element(By.TAG_NAME, "body").send_keys("a")
        reveal = wait.until(lambda b: visible(b, "reveal"))
        votes = state.arena.voted()
        assert len(votes) == 1 and votes[0][1].outcome == "a" and votes[0][0].rater == "ana"
        battle = votes[0][0]
        assert f"A was {battle.strategy_a}, B was {battle.strategy_b}." in reveal.text
        assert shown_a == battle.answer_a and "Reference answer" in reveal.text
        assert "winner" in browser.find_element(By.ID, "side-A").get_attribute("class")
        assert "1 vote by ana" in browser.find_element(By.ID, "count").text
        assert not browser.find_element(By.ID, "vote-bar").is_displayed()  # voted: the buttons give way to the reveal
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr"))
        browser.save_screenshot(str(DOCS / "arena.png"))

        browser.find_element(By.TAG_NAME, "body").send_keys("n")
        wait.until(lambda b: not visible(b, "reveal") and visible(b, "vote-bar"))
        browser.find_element(By.TAG_NAME, "body").send_keys("x")
        wait.until(lambda b: visible(b, "reveal"))
        assert [vote.outcome for _, vote in state.arena.voted()] == ["a", "both_bad"]

        question = browser.find_element(By.ID, "live-question")
        question.send_keys(INJECTED, Keys.ENTER)
        wait.until(lambda b: b.find_element(By.ID, "battle-question").text == INJECTED)
        assert browser.find_element(By.CSS_SELECTOR, "#side-B .answer").text == "A live answer [1]."
        assert browser.execute_script("return window.injected") is None

        browser.set_window_size(390, 844)
        browser.refresh()  # rater and key are remembered
        wait.until(lambda b: visible(b, "battle"))
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        browser.save_screenshot(str(DOCS / "arena-phone.png"))
    finally:
        browser.execute_script("localStorage.clear()")
        server.should_exit = True
        state.arena.close()
