"""The OpenAI-compatible engine against a small fake server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from http.server import BaseHTTPRequestHandler

import pytest

from ragtune.errors import RagtuneError
from ragtune.models.base import GenerationConfig
from ragtune.models.openai_engine import OpenAIEngine

ANSWER_PIECES = ["Paris", " is the", " capital", "."]
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]


class FakeOpenAI(BaseHTTPRequestHandler):
    """Answers /v1/chat/completions like an OpenAI-compatible server.

    Model "broken" gets HTTP 500; model "no-usage" gets an answer without token usage.
    """

    requests: list[dict] = []

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOpenAI.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if self.path != "/v1/chat/completions":
            return self._send(404, "application/json", b'{"error": "not found"}')
        if body["model"] == "broken":
            return self._send(500, "application/json", b'{"error": {"message": "model crashed"}}')
        if body.get("stream"):
            events = [{"choices": [{"delta": {"role": "assistant"}}]}]
            events += [{"choices": [{"delta": {"content": piece}}]} for piece in ANSWER_PIECES]
            stream = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
            return self._send(200, "text/event-stream", stream.encode())
        answer = {
            "choices": [{"message": {"role": "assistant", "content": "".join(ANSWER_PIECES)},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 21, "completion_tokens": 5, "total_tokens": 26},
        }
        if body["model"] == "no-usage":
            del answer["usage"]
        self._send(200, "application/json", json.dumps(answer).encode())

    def _send(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture(scope="module")
def base_url(loopback):
    return loopback(FakeOpenAI) + "/v1"


@pytest.fixture
def engine(base_url, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    FakeOpenAI.requests.clear()
    engine = OpenAIEngine("tiny", base_url)
    yield engine
    engine.close()


def test_request_body_and_key(engine):
    engine.generate(MESSAGES, GenerationConfig(max_new_tokens=7, temperature=0.5, top_p=0.9, seed=3, stop=["\n"]))
    request = FakeOpenAI.requests[-1]
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer sk-test"
    assert request["body"] == {"model": "tiny", "messages": MESSAGES, "max_tokens": 7, "temperature": 0.5,
                               "top_p": 0.9, "seed": 3, "stream": False, "stop": ["\n"]}


def test_non_streaming_answer_and_usage(engine):
    result = engine.generate(MESSAGES, GenerationConfig())
    assert result.text == "Paris is the capital."
    assert (result.prompt_tokens, result.completion_tokens, result.finish_reason) == (21, 5, "stop")
    assert result.seconds > 0


def test_usage_is_estimated_when_the_server_omits_it(base_url):
    result = OpenAIEngine("no-usage", base_url).generate(MESSAGES, GenerationConfig())
    assert result.text == "Paris is the capital."
    assert result.completion_tokens == 5  # 21 characters / 4
    assert result.prompt_tokens == 7  # "Be brief.Capital of France?" is 27 characters


def test_streaming_sse(engine):
    assert list(engine.stream(MESSAGES, GenerationConfig())) == ANSWER_PIECES
    assert FakeOpenAI.requests[-1]["body"]["stream"] is True


def test_batch_loops_over_requests(engine):
    results = engine.generate_batch([MESSAGES, MESSAGES], GenerationConfig())
    assert [r.text for r in results] == ["Paris is the capital."] * 2
    assert len(FakeOpenAI.requests) == 2


def test_error_status_names_url_and_detail(base_url):
    engine = OpenAIEngine("broken", base_url)
    with pytest.raises(RagtuneError) as err:
        engine.generate(MESSAGES, GenerationConfig())
    assert f"{base_url}/chat/completions answered HTTP 500" in err.value.message
    assert "model crashed" in err.value.message
    with pytest.raises(RagtuneError, match="HTTP 500"):
        list(engine.stream(MESSAGES, GenerationConfig()))


def test_wrong_base_url_gives_a_404_hint(base_url):
    engine = OpenAIEngine("tiny", base_url.removesuffix("/v1"))
    with pytest.raises(RagtuneError) as err:
        engine.generate(MESSAGES, GenerationConfig())
    assert "HTTP 404" in err.value.message and "/v1" in err.value.hint


def test_unreachable_server():
    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = OpenAIEngine("tiny", f"http://127.0.0.1:{port}/v1")
    for call in (lambda: engine.generate(MESSAGES, GenerationConfig()),
                 lambda: list(engine.stream(MESSAGES, GenerationConfig()))):
        with pytest.raises(RagtuneError) as err:
            call()
        assert f"http://127.0.0.1:{port}/v1/chat/completions" in err.value.message
        assert "start the server" in err.value.hint


def test_token_estimate_without_a_tokenizer(engine):
    assert engine.count_tokens("") == 0
    assert engine.count_tokens("abcd" * 10) == 10
