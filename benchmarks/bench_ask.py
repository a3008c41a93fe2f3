"""End-to-end `ask` latency and tokens/s with the default model, against llama.cpp on the same model.

    python benchmarks/bench_ask.py [--questions 8] [--out results.json]

For each bundled question: ragtune's `Project.ask` (query embedding, hybrid retrieval, prompt, generation,
citations), then llama.cpp alone (`llama_cpp.Llama.create_completion`, same GGUF file, same threads, same
rendered prompt, greedy, same token limit). Tokens/s = completion tokens / wall time of the generation call.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import llama_cpp
import numpy as np

from ragtune.demo import demo_corpus_dir, demo_questions
from ragtune.models.llamacpp_engine import available_cpus
from ragtune.models.registry import resolve_generator
from ragtune.project import Project
from ragtune.prompts import build_messages
from reporting import emit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(tmp)
        project.ingest([str(demo_corpus_dir())])
        pipeline = project.pipeline()
        engine = pipeline.generator
        max_tokens = project.config.generation.max_new_tokens
        baseline = llama_cpp.Llama(model_path=str(resolve_generator(project.config.models.generator).location),
                                   n_ctx=project.config.generation.context_tokens, n_threads=available_cpus(),
                                   n_threads_batch=available_cpus(), verbose=False)
        pipeline.answer("warm up", k=1)
        rows = []
        for row in demo_questions(args.questions):
            answer = pipeline.answer(row["question"])
            prompt = engine.render(build_messages(row["question"], answer.passages))
            baseline.reset()
            started = time.perf_counter()
            raw = baseline.create_completion(prompt, max_tokens=max_tokens, temperature=0.0)
            raw_seconds = time.perf_counter() - started
            rows.append({"ask_total_s": answer.timings["total_s"],
                         "ragtune_tokens_per_s": answer.timings["tokens_per_second"],
                         "ragtune_completion_tokens": answer.timings["completion_tokens"],
                         "llamacpp_tokens_per_s": raw["usage"]["completion_tokens"] / raw_seconds,
                         "llamacpp_completion_tokens": raw["usage"]["completion_tokens"],
                         "retrieval_ms": answer.timings["retrieval_ms"],
                         "prompt_tokens": answer.timings["prompt_tokens"]})
        project.close()
    median = lambda key: round(float(np.median([r[key] for r in rows])), 2)  # noqa: E731
    results = {
        "questions": len(rows),
        "ask_total_s_p50": median("ask_total_s"),
        "ask_total_s_p95": round(float(np.percentile([r["ask_total_s"] for r in rows], 95)), 2),
        "retrieval_ms_p50": median("retrieval_ms"),
        "prompt_tokens_p50": median("prompt_tokens"),
        "ragtune_tokens_per_s_p50": median("ragtune_tokens_per_s"),
        "llamacpp_tokens_per_s_p50": median("llamacpp_tokens_per_s"),
        "ratio_ragtune_vs_llamacpp": round(median("ragtune_tokens_per_s") / median("llamacpp_tokens_per_s"), 3),
        "same_completion_lengths": all(r["ragtune_completion_tokens"] == r["llamacpp_completion_tokens"] for r in rows),
    }
    emit(results, args.out)


if __name__ == "__main__":
    main()
