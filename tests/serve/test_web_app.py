"""The chat page in a real headless Chromium against a live server (scripted engines): upload, ask, a streamed
answer with a citation chip, the cited passage and its document, thumbs up stored; nothing injected; phone width."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from ragtune.serve.app import create_app
from serve_helpers import make_state, start_live

DOCS = Path(__file__).resolve().parents[2] / "docs"
REPLY = "The **Nile** is the longest river [1]. <script>window.injected = 1</script><img src=x onerror=\"window.injected = 2\">"


def test_chat_page_uploads_asks_cites_and_stores_feedback(served_project, browser, tmp_path):
    state = make_state(served_project, reply=REPLY)
    base_url, server = start_live(create_app(state))
    try:
        browser.set_window_size(1280, 860)
        browser.get(f"{base_url}/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#model option"))
        model = browser.find_element(By.ID, "model")
        assert model.get_attribute("value") == "rag" and "(default)" in model.text  # no comparison: no recommendation

        document = tmp_path / "rivers.txt"
        document.write_text("The Nile is the longest river in Africa. It flows north into the Mediterranean Sea.")
        file_input = browser.find_element(By.ID, "files")
        browser.execute_script("arguments[0].hidden = false", file_input)
        file_input.send_keys(str(document))
        browser.execute_script("arguments[0].hidden = true", file_input)
        wait.until(lambda b: "added: rivers.txt" in b.find_element(By.ID, "upload-report").text)
        wait.until(lambda b: "rivers.txt" in b.find_element(By.ID, "documents").text)

        question = browser.find_element(By.ID, "question")
        question.send_keys("Which river is the longest in Africa?")
        question.send_keys(Keys.ENTER)
        chip = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, ".message.assistant .chip"))
        assert chip.text == "[1] rivers.txt"
        answer = browser.find_element(By.CSS_SELECTOR, ".message.assistant .text")
        assert answer.find_element(By.TAG_NAME, "strong").text == "Nile"  # Markdown rendered
        assert "<script>" in answer.text and not answer.find_elements(By.CSS_SELECTOR, "script, img")
        assert browser.execute_script("return window.injected") is None

        chip.click()
        wait.until(lambda b: b.find_element(By.ID, "viewer").is_displayed())
        assert "The Nile is the longest river" in browser.find_element(By.ID, "viewer-body").text
        browser.find_element(By.ID, "viewer-open").click()
        wait.until(lambda b: "Mediterranean" in b.find_element(By.ID, "viewer-body").text)
        browser.save_screenshot(str(DOCS / "serve-passage.png"))
        browser.find_element(By.CSS_SELECTOR, "#viewer .close").click()

        browser.find_element(By.CSS_SELECTOR, "[aria-label='Thumbs up']").click()
        database = served_project.workspace.database_path
        wait.until(lambda b: sqlite3.connect(database).execute(
            "SELECT feedback FROM answers ORDER BY created_at DESC LIMIT 1").fetchone() == ("up",))
        browser.save_screenshot(str(DOCS / "serve-chat.png"))

        browser.set_window_size(390, 844)
        browser.refresh()
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, ".message.assistant .chip"))  # kept in the browser
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        assert not browser.find_element(By.ID, "side").is_displayed() or browser.execute_script(
            "return document.getElementById('side').getBoundingClientRect().right <= 0")
        browser.save_screenshot(str(DOCS / "serve-chat-phone.png"))
    finally:
        server.should_exit = True


def test_the_page_asks_for_the_key_once(served_project, browser):
    base_url, server = start_live(create_app(make_state(served_project, api_key="page-key")))
    try:
        browser.set_window_size(1280, 860)
        browser.get(f"{base_url}/")
        browser.execute_script("localStorage.clear()")
        browser.refresh()
        wait = WebDriverWait(browser, 30)
        key = wait.until(lambda b: b.find_element(By.ID, "key") if b.find_element(By.ID, "key").is_displayed()
                         else None)
        key.send_keys("page-key")
        key.send_keys(Keys.ENTER)
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#model option"))
        browser.refresh()
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#model option"))
        assert not browser.find_element(By.ID, "key-dialog").is_displayed()
    finally:
        browser.execute_script("localStorage.clear()")
        server.should_exit = True
