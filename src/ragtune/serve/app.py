"""The server: FastAPI routes for the OpenAI-compatible API (models, chat completions streamed or not, embeddings),
ragtune's search, feedback and monitoring, and the web pages (chat, arena, health), all over one project."""

from __future__ import annotations

import base64
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Iterator
from urllib.parse import urlsplit

import anyio
import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from markdown_it import MarkdownIt
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ragtune.errors import ModelNotAvailableError, RagtuneError
from ragtune.rag import Answer, AnswerOptions, Finished
from ragtune.arena.battles import ComparedAnswers
from ragtune.arena.store import ArenaStore
from ragtune.serve.answer_log import AnswerLog, UnknownResponse
from ragtune.serve.arena_routes import arena_router
from ragtune.serve.catalog import ALIAS, EngineBusy, EngineSlot, ModelCatalog, ServedModel, UnknownModel
from ragtune.serve.documents import MAX_UPLOAD_FILES, MB, documents_router
from ragtune.serve.monitoring_routes import monitoring_router
from ragtune.serve.schema import (ChatCompletionRequest, EmbeddingRequest, FeedbackRequest, RenderRequest,
                                  SearchRequest)

MAX_BODY_BYTES = 1024 ** 2  # JSON requests; uploads have their own limit (ingest.max_file_mb)
WEB_DIR = Path(__file__).parent / "web"
# The page runs only its own script and styles, and is never framed by another site.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


class ApiError(Exception):
    """An error answered with OpenAI's error body: {"error": {"message", "type", "code"}}."""

    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.code, self.kind = status, message, code, kind


@dataclass
class ServerState:
    """What the routes share: the project, its models, the answer log (None: not recording) and the limits."""

    project: object
    catalog: ModelCatalog
    api_key: str | None = None
    answer_log: AnswerLog | None = None
    max_tokens_cap: int = 1024
    repetition_penalty: float | None = None  # for requests that set none; None: each engine's chat default
    allowed_hosts: list[str] | None = None  # Host headers accepted (None: any); set when bound to loopback
    cors_origins: list[str] = field(default_factory=list)  # other sites' pages allowed to call the API
    started: int = field(default_factory=lambda: int(time.time()))
    arena: ArenaStore | None = None  # blind battles and votes (None: no arena)
    compared: ComparedAnswers | None = None  # the comparison served with --from-compare: its stored answers


def create_app(state: ServerState) -> FastAPI:
    """The FastAPI application serving `state`'s project."""
    app = FastAPI(title="ragtune", docs_url="/docs", redoc_url=None)
    app.state.ragtune = state
    _install_error_handlers(app)
    _install_body_limit(app)
    _install_origin_check(app, state.cors_origins)
    if state.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=state.cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    if state.allowed_hosts:  # a page on another site, through DNS rebinding, cannot reach a local server
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=state.allowed_hosts)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    guarded = [Depends(_authorize(state.api_key))]
    app.include_router(_api_router(state), prefix="/v1", dependencies=guarded)
    app.include_router(documents_router(state, ApiError), prefix="/v1", dependencies=guarded)
    if state.arena is not None:
        app.include_router(arena_router(state, ApiError), prefix="/v1", dependencies=guarded)
    app.include_router(monitoring_router(state, ApiError), prefix="/v1", dependencies=guarded)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def web_app() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers=PAGE_HEADERS)

    @app.get("/arena", include_in_schema=False)
    def arena_page() -> FileResponse:
        return FileResponse(WEB_DIR / "arena.html", headers=PAGE_HEADERS)

    @app.get("/health", include_in_schema=False)
    def health_page() -> FileResponse:
        return FileResponse(WEB_DIR / "health.html", headers=PAGE_HEADERS)

    return app


def _authorize(api_key: str | None):
    def check(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, supplied = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(supplied.encode(), api_key.encode()):
            raise ApiError(401, "a valid API key is required: send it as 'Authorization: Bearer KEY'",
                           "invalid_api_key")
    return check


def _api_router(state: ServerState) -> APIRouter:
    router = APIRouter()
    catalog = state.catalog

    @router.get("/models")
    def models() -> dict:
        return {"object": "list", "data": [model.describe(state.started) for model in catalog.models.values()]
                + [{**catalog.default.describe(state.started), "id": ALIAS, "alias_of": catalog.default.id}]}

    @router.get("/models/{model_id:path}")
    def model(model_id: str) -> dict:
        return catalog.get(model_id).describe(state.started)

    @router.post("/chat/completions")
    async def chat_completions(request: ChatCompletionRequest):
        unsupported = request.unsupported()
        if unsupported:
            raise ApiError(400, f"not supported by this server: {', '.join(unsupported)}", "unsupported_parameter")
        served = catalog.get(request.model)
        try:
            stop = request.stop_sequences()
        except ValueError as error:
            raise ApiError(400, str(error), "invalid_stop") from None
        wanted = request.max_completion_tokens or request.max_tokens
        options = AnswerOptions(k=request.k, source_glob=request.source_glob, metadata=request.metadata_filter,
                                temperature=request.temperature, top_p=request.top_p, stop=stop, seed=request.seed,
                                max_new_tokens=min(wanted, state.max_tokens_cap) if wanted else None,
                                repetition_penalty=request.repetition_penalty or state.repetition_penalty,
                                frequency_penalty=request.frequency_penalty, presence_penalty=request.presence_penalty,
                                chat=True)
        messages = [message.model_dump() for message in request.messages]
        if messages[-1]["role"] != "user":
            raise ApiError(400, "the last message must come from the user (role 'user'): it is the question",
                           "invalid_messages")
        runtime, slot = await run_in_threadpool(catalog.runtime, served)
        response_id = f"chatcmpl-{uuid.uuid4().hex}"
        if request.stream:
            slot.check_room()
            events = await run_in_threadpool(runtime.stream, messages, options)  # checked and retrieved now
            return StreamingResponse(_stream(state, served, slot, events, messages, response_id),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        async with slot.turn():
            with anyio.CancelScope(shield=True):  # the engine is never left decoding after its turn ends
                answer = await run_in_threadpool(runtime.answer, messages, options)
        _record(state, response_id, served, messages, answer)
        return {"id": response_id, "object": "chat.completion", "created": int(time.time()), "model": served.id,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.answer},
                             "finish_reason": answer.finish_reason}],
                "usage": _usage(answer), "citations": _citations(answer)}

    @router.post("/embeddings")
    def embeddings(request: EmbeddingRequest) -> dict:
        embedder = state.project.kb.embedder
        if request.model not in (None, embedder.name, ALIAS):
            raise ApiError(404, f"the embedding model '{request.model}' does not exist; this server embeds with "
                           f"'{embedder.name}'", "model_not_found")
        texts = request.texts()
        vectors = embedder.encode(texts)
        tokens = sum(len(embedder.tokenizer.encode(text).ids) for text in texts)
        return {"object": "list", "model": embedder.name,
                "data": [{"object": "embedding", "index": i,
                          "embedding": _encode_vector(vector, request.encoding_format)}
                         for i, vector in enumerate(vectors)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @router.post("/search")
    def search(request: SearchRequest) -> dict:
        hits = state.project.search(request.query, k=request.k, mode=request.mode, source_glob=request.source_glob,
                                    metadata=request.metadata_filter)
        return {"object": "list", "data": [hit.to_dict() for hit in hits]}

    @router.post("/render")
    def render(request: RenderRequest) -> dict:
        """Markdown to HTML for the web app, with raw HTML disabled: nothing from a document or a model can
        inject markup or script."""
        return {"html": MARKDOWN.render(request.markdown)}

    @router.post("/feedback")
    def feedback(request: FeedbackRequest) -> dict:
        if state.answer_log is None:
            raise ApiError(409, "answers are not recorded on this server (started with --no-log), so feedback "
                           "has nothing to attach to", "logging_disabled")
        try:
            state.answer_log.add_feedback(request.response_id, request.rating, request.comment)
        except UnknownResponse:
            raise ApiError(404, f"no recorded answer has the id '{request.response_id}'", "response_not_found") \
                from None
        return {"response_id": request.response_id, "rating": request.rating, "stored": True}

    return router


async def _stream(state: ServerState, served: ServedModel, slot: EngineSlot, events: Iterator,
                  messages: list[dict], response_id: str) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk format; the last chunk carries finish reason, usage and citations.
    Each decoding step runs in a worker thread, shielded, so a client that leaves mid-answer stops the answer
    between two steps, never with the engine still decoding after its turn is given up."""
    created = int(time.time())

    def chunk(delta: dict, **extra) -> str:
        body = {"id": response_id, "object": "chat.completion.chunk", "created": created, "model": served.id,
                "choices": [{"index": 0, "delta": delta, "finish_reason": extra.pop("finish_reason", None)}],
                **extra}
        return f"data: {json.dumps(body)}\n\n"

    async with slot.turn():
        yield chunk({"role": "assistant", "content": ""})
        try:
            while True:
                with anyio.CancelScope(shield=True):
                    event = await run_in_threadpool(next, events, None)
                if event is None or isinstance(event, Finished):
                    break
                yield chunk({"content": event.text})
        except Exception as error:  # the status line is sent already: the error goes in the stream
            message = error.message if isinstance(error, RagtuneError) else f"{type(error).__name__}: {error}"
            yield f"data: {json.dumps(_error_body(message, 'server_error', 'generation_failed'))}\n\n"
            yield "data: [DONE]\n\n"
            return
        finally:
            events.close()
    _record(state, response_id, served, messages, event.answer)
    yield chunk({}, finish_reason=event.answer.finish_reason, usage=_usage(event.answer),
                citations=_citations(event.answer))
    yield "data: [DONE]\n\n"


def _encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


def _record(state: ServerState, response_id: str, served: ServedModel, messages: list[dict], answer: Answer) -> None:
    if state.answer_log is not None:
        state.answer_log.record(response_id, served.id, served.strategy.name, messages, answer)


def _usage(answer: Answer) -> dict:
    prompt, completion = answer.timings["prompt_tokens"], answer.timings["completion_tokens"]
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _citations(answer: Answer) -> list[dict]:
    return [{"number": citation["number"], "source": citation["source"], "chunk_id": citation["chunk_id"],
             "text": citation["text"], "score": round(float(answer.passages[citation["number"] - 1].score), 6)}
            for citation in answer.citations]


def _error_body(message: str, kind: str, code: str) -> dict:
    return {"error": {"message": message, "type": kind, "code": code}}


def _install_error_handlers(app: FastAPI) -> None:
    def respond(status: int, message: str, code: str, kind: str = "invalid_request_error") -> JSONResponse:
        return JSONResponse(_error_body(message, kind, code), status_code=status)

    @app.exception_handler(ApiError)
    def api_error(request: Request, error: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        response = respond(error.status, error.message, error.code, error.kind)
        response.headers.update(headers or {})
        return response

    @app.exception_handler(EngineBusy)
    def busy(request: Request, error: EngineBusy) -> JSONResponse:
        response = respond(503, str(error).replace("\n  hint:", ";"), "server_busy", "server_error")
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(ModelNotAvailableError)
    def unavailable(request: Request, error: ModelNotAvailableError) -> JSONResponse:
        return respond(503, str(error).replace("\n  hint:", ";"), "model_unavailable", "server_error")

    @app.exception_handler(UnknownModel)
    def unknown_model(request: Request, error: UnknownModel) -> JSONResponse:
        return respond(404, str(error).replace("\n  hint:", ";"), "model_not_found")

    @app.exception_handler(RagtuneError)
    def ragtune_error(request: Request, error: RagtuneError) -> JSONResponse:
        return respond(400, str(error).replace("\n  hint:", ";"), "invalid_request")

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = []
        for problem in error.errors():
            if problem["type"] == "json_invalid":
                return respond(400, f"the request body is not valid JSON ({problem.get('ctx', {}).get('error')})",
                               "invalid_json")
            where = ".".join(str(part) for part in problem["loc"] if part != "body")
            problems.append(f"{where}: {problem['msg']}" if where else problem["msg"])
        return respond(400, "invalid request: " + "; ".join(problems), "invalid_request")

    @app.exception_handler(HTTPException)
    def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return respond(error.status_code, str(error.detail), "not_found" if error.status_code == 404 else "http_error")


def _install_body_limit(app: FastAPI) -> None:
    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        limit = MAX_BODY_BYTES
        if request.url.path.startswith("/v1/documents"):
            limit = int(app.state.ragtune.project.config.ingest.max_file_mb * MB * MAX_UPLOAD_FILES) + MB
        if limit and length and length.isdigit() and int(length) > limit:
            return JSONResponse(_error_body(f"request body over {limit // 1024} KiB", "invalid_request_error",
                                            "request_too_large"), status_code=413)
        return await call_next(request)


def _install_origin_check(app: FastAPI, cors_origins: list[str]) -> None:
    """Requests that change something (upload, delete, feedback, answers) from a page of another site are refused:
    browsers send such forms and posts without asking first, so without this any site could write to a server
    running without a key on a colleague's laptop."""
    @app.middleware("http")
    async def same_origin_writes(request: Request, call_next):
        origin = request.headers.get("origin")
        if request.method not in ("GET", "HEAD", "OPTIONS") and origin and origin not in cors_origins \
                and urlsplit(origin).netloc != request.headers.get("host"):
            return JSONResponse(_error_body(f"requests from {origin} are not allowed; list it with --cors-origin",
                                            "invalid_request_error", "cross_origin"), status_code=403)
        return await call_next(request)


def api_key_from(file: Path | None, environment: dict) -> str | None:
    """The API key from `file` (its first line), else from RAGTUNE_API_KEY; None when neither is set."""
    if file is not None:
        try:
            key = file.read_text(encoding="utf-8").strip().splitlines()[0].strip()
        except (OSError, IndexError):
            raise RagtuneError(f"cannot read an API key from {file}", "write the key on its first line") from None
        if not key:
            raise RagtuneError(f"{file} holds no API key", "write the key on its first line")
        return key
    return environment.get("RAGTUNE_API_KEY") or None
