"""The server's API on scripted engines: the OpenAI schema, citations, streaming, the answer log and feedback,
errors, the API key, concurrency and the bounded model cache."""

from __future__ import annotations

import base64
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from ragtune.config import CHAT_REPETITION_PENALTY
from ragtune.serve.answer_log import AnswerLog
from ragtune.serve.app import MAX_BODY_BYTES, api_key_from, create_app
from ragtune.errors import RagtuneError

from serve_helpers import finished_run, make_state, start_live

QUESTION = [{"role": "user", "content": "What is the tallest volcano in the solar system?"}]


@pytest.fixture
def client(served_project):
    return TestClient(create_app(make_state(served_project)))


def test_models_list_one_id_per_strategy_and_run_with_the_recommendation(served_project, tmp_path):
    sft = finished_run(tmp_path / "runs" / "sft-a", "sft")
    raft = finished_run(tmp_path / "runs" / "raft-a", "raft")
    second_sft = finished_run(tmp_path / "runs" / "sft-b", "sft")
    (tmp_path / "runs" / "unfinished").mkdir()
    comparison = {"metric_choice": {"metric": "f1"}, "test_set": {"n": 30},
                  "recommendation": {"verdict": "recommended", "strategy": "raft"},
                  "strategies": {"rag": {"model": "tiny-base", "metrics": {"f1": {"value": 0.2, "ci_low": 0.1,
                                                                                  "ci_high": 0.3}}},
                                 "raft": {"model": str(raft), "metrics": {"f1": {"value": 0.4, "ci_low": 0.3,
                                                                                 "ci_high": 0.5}}}}}
    state = make_state(served_project, run_dirs=[sft, raft, second_sft, tmp_path / "runs" / "unfinished"],
                       comparison=comparison)
    body = TestClient(create_app(state)).get("/v1/models").json()
    ids = [model["id"] for model in body["data"]]
    assert body["object"] == "list"
    assert ids == ["base", "rag", "ft:sft-a", "ft:sft-b", "ft+rag:sft-a", "ft+rag:sft-b", "raft", "ragtune"]
    by_id = {model["id"]: model for model in body["data"]}
    assert by_id["raft"]["recommended"] and by_id["raft"]["quality"] == {"metric": "f1", "n": 30, "value": 0.4,
                                                                          "ci_low": 0.3, "ci_high": 0.5}
    assert by_id["ragtune"]["alias_of"] == "raft" and by_id["ft:sft-a"]["run"] == "sft-a"
    assert by_id["rag"]["quality"]["value"] == 0.2 and by_id["base"]["quality"] is None


def test_chat_answers_with_citations_usage_and_is_recorded(client, served_project):
    response = client.post("/v1/chat/completions", json={"model": "rag", "messages": QUESTION, "k": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == "rag"
    assert body["choices"][0]["message"] == {"role": "assistant",
                                             "content": "Olympus Mons on Mars is the tallest volcano [1]."}
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    citation = body["citations"][0]
    assert citation["number"] == 1 and citation["source"] == "space/mars.txt" and "Olympus" in citation["text"]
    assert isinstance(citation["score"], float) and isinstance(citation["chunk_id"], int)
    record = AnswerLog(served_project.workspace.database_path).get(body["id"])
    assert record["model"] == "rag" and record["messages"] == QUESTION and record["citations"][0]["number"] == 1
    assert len(record["retrieved"]) == 2 and record["feedback"] is None

    closed = client.post("/v1/chat/completions", json={"model": "base", "messages": QUESTION}).json()
    assert closed["citations"] == []


def test_feedback_is_stored_on_the_answer(client, served_project):
    answer = client.post("/v1/chat/completions", json={"model": "rag", "messages": QUESTION}).json()
    stored = client.post("/v1/feedback", json={"response_id": answer["id"], "rating": "down", "comment": "too short"})
    assert stored.status_code == 200
    record = AnswerLog(served_project.workspace.database_path).get(answer["id"])
    assert (record["feedback"], record["feedback_comment"]) == ("down", "too short")
    missing = client.post("/v1/feedback", json={"response_id": "chatcmpl-none", "rating": "up"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "response_not_found"
    assert client.post("/v1/feedback", json={"response_id": answer["id"], "rating": "meh"}).status_code == 400


def test_no_log_records_nothing_and_refuses_feedback(served_project):
    client = TestClient(create_app(make_state(served_project, record=False)))
    answer = client.post("/v1/chat/completions", json={"model": "rag", "messages": QUESTION}).json()
    assert AnswerLog(served_project.workspace.database_path).get(answer["id"]) is None
    assert client.post("/v1/feedback", json={"response_id": answer["id"], "rating": "up"}).status_code == 409


def test_streamed_chunks_end_with_usage_citations_and_done(client):
    with client.stream("POST", "/v1/chat/completions",
                       json={"model": "rag", "stream": True, "messages": QUESTION}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: "):]) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert text == "Olympus Mons on Mars is the tallest volcano [1]."
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "stop" and last["usage"]["completion_tokens"] > 0
    assert last["citations"][0]["source"] == "space/mars.txt"
    assert len({chunk["id"] for chunk in chunks}) == 1


def test_a_conversation_reaches_the_model_with_its_turns(served_project):
    state = make_state(served_project)
    client = TestClient(create_app(state))
    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello."}, *QUESTION]
    assert client.post("/v1/chat/completions", json={"model": "rag", "messages": conversation}).status_code == 200
    _, slot = state.catalog.runtime(state.catalog.get("rag"))
    prompt = slot.engine.prompts[-1]
    assert prompt[0]["content"].endswith("Be brief.") and prompt[1:3] == conversation[1:3]
    assert prompt[-1]["content"].endswith(QUESTION[0]["content"]) and "Olympus Mons" in prompt[-1]["content"]


@pytest.mark.parametrize("body, status, code", [
    ({"model": "gpt-9", "messages": QUESTION}, 404, "model_not_found"),
    ({"model": "rag", "messages": [{"role": "robot", "content": "x"}]}, 400, "invalid_request"),
    ({"model": "rag", "messages": []}, 400, "invalid_request"),
    ({"model": "rag", "messages": QUESTION + [{"role": "assistant", "content": "x"}]}, 400, "invalid_messages"),
    ({"model": "rag", "messages": QUESTION, "n": 2}, 400, "unsupported_parameter"),
    ({"model": "rag", "messages": QUESTION, "tools": [{"type": "function"}]}, 400, "unsupported_parameter"),
    ({"model": "rag", "messages": QUESTION, "temperature": 5}, 400, "invalid_request"),
    ({"model": "base", "messages": QUESTION, "k": 3}, 400, "invalid_request"),
    ({"model": "rag", "messages": QUESTION, "stop": ["a", "b", "c", "d", "e"]}, 400, "invalid_stop"),
    ({"model": "rag", "messages": QUESTION, "stop": [""]}, 400, "invalid_stop"),
    ({"model": "base", "messages": QUESTION, "k": 3, "stream": True}, 400, "invalid_request"),
    ({"model": "rag", "messages": QUESTION, "k": 0, "stream": True}, 400, "invalid_request"),
])
def test_bad_requests_get_openai_error_bodies(client, body, status, code):
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error" and error["message"]


def test_unknown_model_names_the_available_ones_and_bad_json_says_so(client):
    message = client.post("/v1/chat/completions", json={"model": "gpt-9", "messages": QUESTION}).json()["error"]
    assert "base, rag" in message["message"]
    bad = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
    huge = client.post("/v1/search", content=b"x" * (MAX_BODY_BYTES + 1), headers={"content-type": "application/json"})
    assert huge.status_code == 413


def test_the_api_key_guards_every_v1_route_but_not_health(served_project):
    client = TestClient(create_app(make_state(served_project, api_key="s3cret")))
    assert client.get("/healthz").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        response = client.get("/v1/models", headers=headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert client.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.post("/v1/search", json={"query": "volcano"}).status_code == 401


def test_the_key_comes_from_a_file_or_the_environment(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("abc123\n")
    assert api_key_from(key_file, {"RAGTUNE_API_KEY": "env"}) == "abc123"
    assert api_key_from(None, {"RAGTUNE_API_KEY": "env"}) == "env"
    assert api_key_from(None, {}) is None
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(RagtuneError, match="holds no API key|cannot read"):
        api_key_from(tmp_path / "empty", {})


def test_search_and_embeddings(client, served_project):
    hits = client.post("/v1/search", json={"query": "tallest volcano", "k": 2}).json()["data"]
    assert len(hits) == 2 and hits[0]["source"] == "space/mars.txt"
    body = client.post("/v1/embeddings", json={"input": ["a volcano", "the moon"]}).json()
    assert [item["index"] for item in body["data"]] == [0, 1] and body["usage"]["prompt_tokens"] > 0
    assert len(body["data"][0]["embedding"]) == served_project.kb.embedder.dimension
    packed = client.post("/v1/embeddings", json={"input": ["a volcano"], "encoding_format": "base64"}).json()
    unpacked = np.frombuffer(base64.b64decode(packed["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(unpacked, body["data"][0]["embedding"], atol=1e-6)
    assert client.post("/v1/embeddings", json={"input": "x", "model": "ada-002"}).status_code == 404


def test_search_and_chat_take_a_metadata_filter(client, served_project, tmp_path):
    records = tmp_path / "policies.jsonl"
    records.write_text('{"id": "leave", "department": "HR", "text": "Annual leave is 25 days a year."}\n'
                       '{"id": "laptops", "department": "IT", "text": "Laptops are replaced every four years."}\n')
    served_project.ingest([str(records)])
    hits = client.post("/v1/search", json={"query": "leave laptops", "k": 5,
                                           "metadata_filter": {"department": "IT"}}).json()["data"]
    assert [hit["text"] for hit in hits] == ["Laptops are replaced every four years."]
    for bad in ({"dept'; --": "IT"}, {"department": ["HR"]}, {f"k{n}": n for n in range(21)}):
        response = client.post("/v1/search", json={"query": "leave", "metadata_filter": bad})
        assert response.status_code == 400 and "metadata_filter" in response.json()["error"]["message"], bad
    answer = client.post("/v1/chat/completions", json={
        "model": "rag", "messages": [{"role": "user", "content": "How long is annual leave?"}],
        "metadata_filter": {"department": "HR"}}).json()
    assert answer["citations"][0]["source"] == "policies.jsonl"
    retrieved = AnswerLog(served_project.workspace.database_path).get(answer["id"])["retrieved"]
    assert len(retrieved) == 1 and retrieved[0]["source"] == "policies.jsonl"  # the HR record only


def test_concurrent_streams_all_complete_without_mixing(served_project):
    base_url, server = start_live(create_app(make_state(served_project)))
    questions = [f"Question number {i}: what is on Mars?" for i in range(20)]

    def ask(question):
        with httpx.stream("POST", f"{base_url}/v1/chat/completions", timeout=60,
                          json={"model": "rag", "stream": True,
                                "messages": [{"role": "user", "content": question}]}) as response:
            chunks = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
        return response.status_code, chunks

    try:
        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(ask, questions))
    finally:
        server.should_exit = True
    for status, chunks in results:
        assert status == 200 and "error" not in chunks[-1]
        assert len({chunk["id"] for chunk in chunks}) == 1
        text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
        assert text == "Olympus Mons on Mars is the tallest volcano [1]."
    assert len({chunks[0]["id"] for _, chunks in results}) == 20


def test_loaded_models_are_bounded_least_recently_used_first(served_project, tmp_path):
    sft = finished_run(tmp_path / "runs" / "sft", "sft")
    raft = finished_run(tmp_path / "runs" / "raft", "raft")
    opened = []
    state = make_state(served_project, run_dirs=[sft, raft], max_loaded=2, opened=opened)
    client = TestClient(create_app(state))
    for model in ("rag", "ft", "rag", "raft", "ft"):
        assert client.post("/v1/chat/completions", json={"model": model, "messages": QUESTION}).status_code == 200
    assert opened == ["tiny-base", str(sft), str(raft), str(sft)]  # ft was the least recently used when raft came
    assert state.catalog.loaded() == [str(raft), str(sft)]


def test_a_model_loading_blocks_neither_loaded_models_nor_loads_twice(served_project, tmp_path):
    sft = finished_run(tmp_path / "runs" / "sft", "sft")
    state = make_state(served_project, run_dirs=[sft])
    catalog, loading, release, opened = state.catalog, threading.Event(), threading.Event(), []
    quick_open = catalog.open_engine

    def slow_open(generator, context_tokens):
        opened.append(generator)
        if generator == str(sft):
            loading.set()
            assert release.wait(10)
        return quick_open(generator, context_tokens)

    catalog.open_engine = slow_open
    catalog.runtime(catalog.get("rag"))  # the base model, loaded
    with ThreadPoolExecutor(2) as pool:
        cold = [pool.submit(catalog.runtime, catalog.get("ft")) for _ in range(2)]
        assert loading.wait(10)
        _, slot = catalog.runtime(catalog.get("rag"))  # answered while the fine-tuned model is loading
        assert slot.engine.name == "tiny-base" and not any(future.done() for future in cold)
        release.set()
        slots = {future.result()[1] for future in cold}
    assert len(slots) == 1 and opened == ["tiny-base", str(sft)]


def test_writes_from_another_site_and_foreign_host_names_are_refused(served_project):
    state = make_state(served_project)
    client = TestClient(create_app(state))
    body = {"model": "rag", "messages": QUESTION}
    refused = client.post("/v1/chat/completions", json=body, headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "cross_origin"
    assert client.post("/v1/chat/completions", json=body, headers={"Origin": "http://testserver"}).status_code == 200
    state.allowed_hosts = ["127.0.0.1", "localhost"]
    guarded = TestClient(create_app(state))
    assert guarded.get("/healthz").status_code == 400  # Host: testserver, as a DNS-rebinding page would send
    assert guarded.get("/healthz", headers={"Host": "127.0.0.1:8000"}).status_code == 200


def test_a_full_queue_answers_503_and_developer_messages_count_as_system(served_project):
    state = make_state(served_project)
    client = TestClient(create_app(state))
    conversation = [{"role": "developer", "content": "Be brief."}, *QUESTION]
    assert client.post("/v1/chat/completions", json={"model": "rag", "messages": conversation}).status_code == 200
    _, slot = state.catalog.runtime(state.catalog.get("rag"))
    assert slot.engine.prompts[-1][0]["content"].endswith("Be brief.")
    slot.max_waiting = 0
    busy = client.post("/v1/chat/completions", json={"model": "rag", "messages": QUESTION})
    assert busy.status_code == 503 and busy.json()["error"]["code"] == "server_busy" and busy.headers["Retry-After"]


def test_chat_decoding_defaults_to_the_server_penalty_and_takes_the_request_s(served_project):
    state = make_state(served_project)
    client = TestClient(create_app(state))
    assert client.post("/v1/chat/completions", json={"model": "rag", "messages": QUESTION}).status_code == 200
    _, slot = state.catalog.runtime(state.catalog.get("rag"))
    assert state.repetition_penalty is None and slot.engine.configs[-1].repetition_penalty == CHAT_REPETITION_PENALTY
    asked = {"model": "rag", "messages": QUESTION, "repetition_penalty": 1.0, "frequency_penalty": 0.4,
             "presence_penalty": 0.2}
    assert client.post("/v1/chat/completions", json=asked).status_code == 200
    config = slot.engine.configs[-1]
    assert (config.repetition_penalty, config.frequency_penalty, config.presence_penalty) == (1.0, 0.4, 0.2)
    slot.engine.decodes_remotely = True  # an OpenAI-compatible server: its own decoding, unless the server says
    assert client.post("/v1/chat/completions", json={"model": "rag", "messages": QUESTION}).status_code == 200
    assert slot.engine.configs[-1].repetition_penalty == 1.0
    state.repetition_penalty = 1.3  # serve --repetition-penalty 1.3
    assert client.post("/v1/chat/completions", json={"model": "rag", "messages": QUESTION}).status_code == 200
    assert slot.engine.configs[-1].repetition_penalty == 1.3
