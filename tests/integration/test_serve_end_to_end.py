"""`ragtune serve` on a real socket with the real packaged models, driven by the official `openai` client and by the
chat page in headless Chromium."""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from ragtune.serve.app import create_app
from ragtune.serve.setup import open_server_state

from corpus_files import write_corpus
from serve_helpers import start_live

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    corpus = write_corpus(root / "corpus")
    key_file = root / "key"
    key_file.write_text("test-key\n")
    from ragtune.project import Project

    Project(root / "project").ingest([str(corpus)])
    state = open_server_state(root / "project", api_key="test-key")
    base_url, server = start_live(create_app(state))
    yield base_url, state
    server.should_exit = True


def test_the_openai_client_lists_chats_streams_and_embeds(live):
    base_url, state = live
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="test-key")
    assert {"base", "rag", "ragtune"} <= {model.id for model in client.models.list()}

    question = "What is the tallest volcano in the solar system?"
    plain = {"k": 2, "repetition_penalty": 1.0}  # greedy without the chat penalty: this model then cites [1]
    completion = client.chat.completions.create(model="rag", messages=[{"role": "user", "content": question}],
                                                max_tokens=40, extra_body=plain)
    assert completion.choices[0].message.content and completion.usage.completion_tokens > 0
    citations = completion.model_extra["citations"]
    assert citations and citations[0]["source"] == "space/mars.txt"  # the only passage about the tallest volcano

    stream = client.chat.completions.create(model="rag", messages=[{"role": "user", "content": question}],
                                            max_tokens=40, stream=True, extra_body=plain)
    chunks = list(stream)
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert streamed.strip() == completion.choices[0].message.content  # greedy: the same answer either way
    assert chunks[-1].model_extra["citations"] == citations and chunks[-1].usage.total_tokens > 0

    follow_up = client.chat.completions.create(model="rag", max_tokens=30, messages=[
        {"role": "user", "content": question}, {"role": "assistant", "content": completion.choices[0].message.content},
        {"role": "user", "content": "When did Neil Armstrong walk on the Moon?"}])
    record = state.answer_log.get(follow_up.id)
    assert len(record["messages"]) == 3 and follow_up.choices[0].message.content
    assert record["retrieved"][0]["source"] == "space/moon.html"  # retrieved for the last turn, not the first

    embedding = client.embeddings.create(input=["a volcano on Mars"], model="minilm-l6")
    assert len(embedding.data[0].embedding) == state.project.kb.embedder.dimension


def test_the_openai_client_sees_each_error(live):
    base_url, _ = live
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="test-key")
    with pytest.raises(openai.NotFoundError, match="choose among"):
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="n=3"):
        client.chat.completions.create(model="rag", n=3, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{base_url}/v1", api_key="wrong").models.list()


def test_twenty_concurrent_streams_on_one_llama_cpp_model_each_get_their_own_answer(live):
    base_url, _ = live
    questions = [f"In one word, what colour is item number {i}?" for i in range(20)]
    headers = {"Authorization": "Bearer test-key"}

    def ask(question, stream):
        body = {"model": "base", "stream": stream, "max_tokens": 8, "messages": [{"role": "user", "content": question}]}
        if not stream:
            return httpx.post(f"{base_url}/v1/chat/completions", json=body, headers=headers, timeout=120).json()[
                "choices"][0]["message"]["content"]
        with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body, headers=headers, timeout=120) as r:
            chunks = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
        assert all("error" not in chunk for chunk in chunks)
        return "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks).strip()

    alone = [ask(question, stream=False) for question in questions]
    with ThreadPoolExecutor(20) as pool:
        together = list(pool.map(lambda question: ask(question, stream=True), questions))
    assert together == alone  # a shared context that let requests mix would change them


def test_the_chat_page_streams_a_cited_answer_from_the_real_model(live, browser):
    base_url, state = live
    browser.set_window_size(1280, 860)
    browser.get(f"{base_url}/")
    wait = WebDriverWait(browser, 120)
    key = wait.until(lambda b: b.find_element(By.ID, "key") if b.find_element(By.ID, "key").is_displayed() else None)
    key.send_keys("test-key", Keys.ENTER)
    wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#model option"))
    question = browser.find_element(By.ID, "question")
    question.send_keys("What were dogs domesticated from?", Keys.ENTER)  # one this small model answers and cites
    chip = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, ".message.assistant .chip"))
    shown = browser.find_element(By.CSS_SELECTOR, ".message.assistant .text").text
    browser.find_element(By.CSS_SELECTOR, "[aria-label='Thumbs up']").click()
    database = state.project.workspace.database_path
    query = "SELECT model, citations, feedback FROM answers ORDER BY created_at DESC LIMIT 1"
    wait.until(lambda b: sqlite3.connect(database).execute(query).fetchone()[2] == "up")
    model, citations, _ = sqlite3.connect(database).execute(query).fetchone()
    assert model == "rag" and shown.strip()  # the page picks the default model by its own id
    cited = json.loads(citations)[0]
    assert chip.text == f"[{cited['number']}] {cited['source']}" and cited["source"] == "animals/dogs.txt"


def test_a_live_arena_battle_is_answered_by_two_real_strategies(live):
    base_url, state = live
    client = httpx.Client(base_url=base_url, headers={"Authorization": "Bearer test-key"}, timeout=120)
    battle = client.post("/v1/arena/battles", json={"rater": "ana", "question": "Which river is the longest?"})
    assert battle.status_code == 200, battle.text
    answers = battle.json()["answers"]
    assert [answer["slot"] for answer in answers] == ["A", "B"] and all(answer["content"] for answer in answers)
    vote = client.post(f"/v1/arena/battles/{battle.json()['battle_id']}/vote", json={"outcome": "a"}).json()
    assert set(vote["strategies"].values()) <= set(state.catalog.models)
    stored, _ = state.arena.voted()[-1]
    assert stored.timings["a_s"] > 0 and stored.answer_a == answers[0]["content"]
    assert client.get("/v1/arena/leaderboard").json()["votes"] == 1


def test_health_finds_the_coverage_gaps_and_the_feedback_of_served_answers(tmp_path):
    """Serve, ask (two questions outside the documents), rate, then `ragtune health` reports both."""
    from typer.testing import CliRunner

    from ragtune.cli import app
    from ragtune.project import Project

    Project(tmp_path / "project").ingest([str(write_corpus(tmp_path / "corpus"))])
    state = open_server_state(tmp_path / "project", api_key="test-key")
    base_url, server = start_live(create_app(state))
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="test-key")
    asked = {"How long do cats sleep?": "up", "What makes Mars red?": None,
             "What is the capital of Australia?": "down", "How do I reset my router password?": None}
    for question, rating in asked.items():
        completion = client.chat.completions.create(model="rag", messages=[{"role": "user", "content": question}],
                                                    max_tokens=8)
        if rating:
            response = httpx.post(f"{base_url}/v1/feedback", headers={"Authorization": "Bearer test-key"},
                                  json={"response_id": completion.id, "rating": rating,
                                        "comment": "not in our documents" if rating == "down" else None})
            assert response.status_code == 200
    result = CliRunner().invoke(app, ["health", "--project", str(state.project.workspace.root), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    findings = {finding["check"]: finding for finding in report["findings"]}
    gaps = findings["coverage_gaps"]
    assert {"'What is the capital of Australia?'", "'How do I reset my router password?'"} <= set(gaps["examples"])
    assert not any("cats" in example or "Mars" in example for example in gaps["examples"])
    down = findings["thumbs_down"]
    assert down["evidence"]["down"] == 1 and "not in our documents" in down["examples"][0]
    assert report["metrics"]["traffic"]["answers"] >= len(asked) and report["metrics"]["traffic"]["rated"] >= 2
    failing = CliRunner().invoke(app, ["health", "--project", str(state.project.workspace.root), "--fail-on",
                                       "error"])
    assert failing.exit_code == 0 and "coverage" in failing.stdout
    served = httpx.get(f"{base_url}/v1/monitoring", headers={"Authorization": "Bearer test-key"}).json()
    assert {f["check"] for f in served["findings"]} >= {"coverage_gaps", "thumbs_down"}
    server.should_exit = True
