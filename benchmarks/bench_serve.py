"""`ragtune serve`: the HTTP server's overhead, concurrent clients on one model, and memory per loaded model.

    python benchmarks/bench_serve.py --from-compare ragtune-demo [--questions 16] [--max-tokens 48]
                                     [--clients 8] [--out results.json]

On a finished comparison (`ragtune demo` writes one), with the bundled COVID-QA questions, greedy decoding,
--max-tokens new tokens, strategy `rag` (k = the project's):
  overhead     the same questions answered by the runtime called in this process (baseline: `StrategyRuntime.answer`)
               and through the HTTP API (`POST /v1/chat/completions`, non-streamed, a live uvicorn server on
               loopback in this process), alternating question by question so drift hits both alike; ratio =
               HTTP time / in-process time (issue 10's target: at most 1.05).
  concurrency  --clients clients streaming the questions at once against the same model (baseline: the same
               requests one after another): total completion tokens/s, latency p50/p95 and time to first token.
               Requests to one model are queued on its lock (one llama.cpp context decodes one request at a time).
  memory       the process's resident memory with 1 model loaded, and after loading every generator the
               comparison has (the base model and each run; up to 4) with the LRU limit raised to hold them all.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil

from reporting import emit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-compare", type=Path, required=True)
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from ragtune.demo import demo_questions
    from ragtune.rag import AnswerOptions
    from ragtune.serve.app import create_app
    from ragtune.serve.setup import open_server_state
    from serve_helpers import start_live

    state = open_server_state(Path("."), from_compare=args.from_compare, record_answers=False, max_loaded=4)
    questions = [row["question"] for row in demo_questions(args.questions)]
    base_url, server = start_live(create_app(state))
    process = psutil.Process()
    results = {"questions": len(questions), "max_tokens": args.max_tokens, "strategy": "rag"}
    try:
        runtime, _ = state.catalog.runtime(state.catalog.get("rag"))  # the server is idle between requests here
        results["memory_1_model_gb"] = round(process.memory_info().rss / 2 ** 30, 3)
        options = AnswerOptions(max_new_tokens=args.max_tokens, repetition_penalty=state.repetition_penalty)
        body = lambda question, stream=False: {"model": "rag", "max_tokens": args.max_tokens, "stream": stream,  # noqa: E731
                                                "messages": [{"role": "user", "content": question}]}
        with httpx.Client(timeout=300) as client:
            client.post(f"{base_url}/v1/chat/completions", json=body(questions[0]))  # warm-up
            local, remote = [], []
            for question in questions:
                started = time.perf_counter()
                expected = runtime.answer(question, options).answer
                local.append(time.perf_counter() - started)
                started = time.perf_counter()
                reply = client.post(f"{base_url}/v1/chat/completions", json=body(question)).json()
                remote.append(time.perf_counter() - started)
                assert reply["choices"][0]["message"]["content"] == expected, "HTTP and in-process answers differ"
        results["overhead"] = {"in_process_s": round(sum(local), 3), "http_s": round(sum(remote), 3),
                               "ratio_http_over_in_process": round(sum(remote) / sum(local), 4)}

        def stream(question: str) -> dict:
            started = time.perf_counter()
            first, tokens = None, 0
            with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body(question, True), timeout=600) as r:
                for line in r.iter_lines():
                    if not line.startswith("data: {"):
                        continue
                    chunk = json.loads(line[6:])
                    if chunk["choices"][0]["delta"].get("content") and first is None:
                        first = time.perf_counter() - started
                    tokens = chunk.get("usage", {}).get("completion_tokens", tokens)
            return {"latency": time.perf_counter() - started, "ttft": first or 0.0, "tokens": tokens}

        for mode, workers in (("sequential", 1), ("concurrent", args.clients)):
            started = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                runs = list(pool.map(stream, questions))
            wall = time.perf_counter() - started
            latencies = sorted(run["latency"] for run in runs)
            results[mode] = {"clients": workers, "wall_s": round(wall, 3),
                             "completion_tokens_per_s": round(sum(run["tokens"] for run in runs) / wall, 2),
                             "latency_p50_s": round(statistics.median(latencies), 3),
                             "latency_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3),
                             "ttft_p50_s": round(statistics.median(run["ttft"] for run in runs), 3)}
        results["concurrency_ratio_tokens_per_s"] = round(results["concurrent"]["completion_tokens_per_s"]
                                                          / results["sequential"]["completion_tokens_per_s"], 3)
        one_per_generator = {model.generator: model for model in state.catalog.models.values()}
        for model in list(one_per_generator.values())[:4]:
            state.catalog.runtime(model)
        results["memory_models"] = {"loaded": state.catalog.loaded(),
                                    "rss_gb": round(process.memory_info().rss / 2 ** 30, 3)}
    finally:
        server.should_exit = True
    emit(results, args.out)


if __name__ == "__main__":
    main()
