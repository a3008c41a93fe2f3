"""Evaluation answering: one question at a time (`generate`) vs batched (`generate_batch`) on the default engine.

    python benchmarks/bench_eval_batching.py [--questions 32] [--max-new-tokens 48] [--k 3]
                                             [--batch-sizes 4,8,16,32] [--rag-batch-sizes 8,16]
                                             [--rounds 1] [--kinds closed_book,rag] [--out results.json]

What `ragtune compare` does for each strategy, reduced to the generation: the first --questions bundled COVID-QA
questions, the prompts `ask` builds (`build_messages` after `fit_passages`, the budget `RagPipeline.answer` uses)
in two kinds:
  closed_book  no passages (strategies base, ft)
  rag          the --k passages `Project.search` returns (hybrid, the default) on the ingested demo corpus
               (strategies rag, ft+rag, raft)
answered greedily with --max-new-tokens (48, the demo's budget) by the project's generator
(`project.pipeline().generator`, smollm2-135m by default):
  sequential   `generate` over the questions one by one (what `evaluate` does today via `RagPipeline.answer`)
  batch_B      one `generate_batch` call over all questions on an engine with batch_size B (B sequences decoded
               together; each prompt is prefilled alone when its slot frees). B equal to the project engine's
               batch_size runs on that engine; the other sizes on a second LlamaCppEngine on the same GGUF.
               --batch-sizes for closed-book prompts, --rag-batch-sizes for RAG prompts (whose passes take
               ~10x longer; fewer sizes keep the default run near 15 minutes on 2 cores).
The modes run in ABBA order per prompt kind (sequential, batch_4, batch_8, ..., then the reverse; --rounds
times), so drift hits all alike; figures are means over the runs. Each engine is warmed up (one `generate`, one
2-prompt `generate_batch`, which creates the multi-sequence context: `batch_setup_s`) before timing.
Reported per mode: answers/s, completion tokens/s, mean per-answer latency. For batches the latency is a
conversation's time from the start of the call until it finished (`Generation.seconds`): with all questions
submitted at once this is not the latency one user asking one question would see. `texts_differ` counts batched
answers that differ from the sequential ones (exact string comparison). `cpu_pressure_pct` is the share of the
wall time in which a task waited for a CPU (Linux PSI); above ~10% other processes disturbed the figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from reporting import emit

from ragtune.demo import demo_corpus_dir, demo_questions
from ragtune.models.base import GenerationConfig
from ragtune.models.llamacpp_engine import LlamaCppEngine, available_cpus
from ragtune.models.registry import resolve_generator
from ragtune.project import Project
from ragtune.prompts import build_messages, fit_passages

PSI = Path("/proc/pressure/cpu")
PROMPT_MARGIN_TOKENS = 32  # as ragtune.rag._PROMPT_MARGIN_TOKENS


def cpu_stall_seconds() -> float:
    """Seconds (since boot) in which some task waited for a CPU; 0 where Linux PSI is unavailable."""
    if not PSI.exists():
        return 0.0
    return int(PSI.read_text().split()[4].removeprefix("total=")) / 1e6


def conversations(project: Project, engine, questions: list[str], k: int, max_new_tokens: int) -> dict:
    """{'closed_book': [...], 'rag': [...]}: the messages `RagPipeline.answer` builds for k = 0 and for k."""
    budget = project.config.generation.context_tokens - max_new_tokens - PROMPT_MARGIN_TOKENS
    rag = []
    for question in questions:
        passages = fit_passages(question, project.search(question, k=k), budget, engine.count_tokens)
        rag.append(build_messages(question, passages))
    return {"closed_book": [build_messages(q, []) for q in questions], "rag": rag}


def run_mode(engine, batch: bool, convs: list, config: GenerationConfig) -> dict:
    """One timed pass over all conversations; the texts and per-answer figures come back with it."""
    stall, start = cpu_stall_seconds(), time.perf_counter()
    if batch:
        generations = engine.generate_batch(convs, config)
    else:
        generations = [engine.generate(messages, config) for messages in convs]
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "stalled": cpu_stall_seconds() - stall,
            "texts": [g.text for g in generations],
            "latencies": [g.seconds for g in generations],
            "prompt_tokens": [g.prompt_tokens for g in generations],
            "completion_tokens": sum(g.completion_tokens for g in generations)}


def summarize(runs: list[dict], reference_texts: list[str] | None) -> dict:
    seconds = [r["seconds"] for r in runs]
    mean_s = statistics.mean(seconds)
    n = len(runs[0]["texts"])
    latencies = [x for r in runs for x in r["latencies"]]
    summary = {
        "runs_s": [round(s, 2) for s in seconds],
        "seconds_mean": round(mean_s, 3),
        "answers_per_s": round(n / mean_s, 3),
        "completion_tokens": runs[0]["completion_tokens"],
        "completion_tokens_per_s": round(runs[0]["completion_tokens"] / mean_s, 2),
        "latency_s_mean": round(statistics.mean(latencies), 3),
        "latency_s_p50": round(statistics.median(latencies), 3),
        "amortized_s_per_answer": round(mean_s / n, 3),
        "cpu_pressure_pct": round(100 * sum(r["stalled"] for r in runs) / sum(seconds), 1),
        "repeatable": all(r["texts"] == runs[0]["texts"] for r in runs),
    }
    if reference_texts is not None:
        texts = runs[0]["texts"]
        summary["texts_differ"] = sum(a != b for a, b in zip(texts, reference_texts))
        summary["texts_differ_after_strip"] = sum(a.strip() != b.strip() for a, b in zip(texts, reference_texts))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=48, help="48 = the demo's budget")
    parser.add_argument("--k", type=int, default=3, help="passages for the RAG prompts")
    parser.add_argument("--batch-sizes", default="4,8,16,32", help="batch sizes for closed-book prompts")
    parser.add_argument("--rag-batch-sizes", default="8,16", help="batch sizes for RAG prompts")
    parser.add_argument("--rounds", type=int, default=1, help="ABBA rounds: each mode runs 2 x rounds times")
    parser.add_argument("--kinds", default="closed_book,rag")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    kind_sizes = {"closed_book": [int(b) for b in args.batch_sizes.split(",") if b],
                  "rag": [int(b) for b in args.rag_batch_sizes.split(",") if b]}
    sizes = sorted({b for kind in kinds for b in kind_sizes[kind]})
    config = GenerationConfig(max_new_tokens=args.max_new_tokens)  # greedy
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(tmp)
        project.ingest([str(demo_corpus_dir())])
        engine = project.pipeline().generator
        if not isinstance(engine, LlamaCppEngine):
            sys.exit(f"the project's generator is {type(engine).__name__}, not the llama.cpp engine")
        spec = resolve_generator(project.config.models.generator)
        context_tokens = project.config.generation.context_tokens
        questions = [row["question"] for row in demo_questions(args.questions)]
        prompts = conversations(project, engine, questions, args.k, args.max_new_tokens)
        engines = {}
        for size in sizes:
            engines[size] = engine if size == engine.batch_size else LlamaCppEngine(
                spec.location, name=spec.name, context_tokens=context_tokens, batch_size=size)
        setup = {}
        for size, eng in engines.items():  # warm up both paths; the first generate_batch creates the batch context
            eng.generate(prompts["closed_book"][0], GenerationConfig(max_new_tokens=2))
            t = time.perf_counter()
            eng.generate_batch(prompts["closed_book"][:2], GenerationConfig(max_new_tokens=2))
            setup[size] = round(time.perf_counter() - t, 3)

        results, orders = {}, {}
        for kind in kinds:
            modes = [("sequential", engine, False)] + [(f"batch_{b}", engines[b], True) for b in kind_sizes[kind]]
            order = (modes + modes[::-1]) * args.rounds
            orders[kind] = [name for name, _, _ in order]
            runs: dict[str, list[dict]] = {name: [] for name, _, _ in modes}
            for name, eng, batch in order:
                runs[name].append(run_mode(eng, batch, prompts[kind], config))
                print(f"  {kind:11s} {name:10s} {runs[name][-1]['seconds']:7.2f} s", file=sys.stderr)
            reference = runs["sequential"][0]["texts"]
            table = {"sequential": summarize(runs["sequential"], None)}
            for name, _, _ in modes[1:]:
                table[name] = summarize(runs[name], reference)
                table[name]["throughput_ratio_vs_sequential"] = round(
                    table[name]["answers_per_s"] / table["sequential"]["answers_per_s"], 3)
            tokens = runs["sequential"][0]["prompt_tokens"]
            results[kind] = {"order": orders[kind], "prompt_tokens_min": min(tokens),
                             "prompt_tokens_mean": round(statistics.mean(tokens)), "prompt_tokens_max": max(tokens),
                             "modes": table}
        for size, eng in engines.items():
            if eng is not engine:
                eng.close()
        default_batch_size = engine.batch_size
        project.close()

    result = {"model": spec.name, "file": str(spec.location), "threads": available_cpus(),
              "questions": len(questions), "max_new_tokens": args.max_new_tokens, "k": args.k,
              "rounds": args.rounds,
              "project_engine_batch_size": default_batch_size, "batch_setup_s": setup, **results,
              "total_s": round(time.perf_counter() - started, 1)}

    print(f"\n{spec.name}, {len(questions)} questions, greedy, <= {args.max_new_tokens} new tokens, "
          f"{available_cpus()} threads", file=sys.stderr)
    header = (f"{'kind':11s} {'mode':10s} {'s/pass':>7s} {'ans/s':>6s} {'ratio':>6s} {'tok/s':>6s} "
              f"{'lat mean':>8s} {'lat p50':>8s} {'s/ans':>6s} {'differ':>6s} {'psi%':>5s}")
    print(header, file=sys.stderr)
    for kind in kinds:
        for name, r in results[kind]["modes"].items():
            print(f"{kind:11s} {name:10s} {r['seconds_mean']:7.2f} {r['answers_per_s']:6.2f} "
                  f"{r.get('throughput_ratio_vs_sequential', 1.0):6.3f} {r['completion_tokens_per_s']:6.1f} "
                  f"{r['latency_s_mean']:8.2f} {r['latency_s_p50']:8.2f} {r['amortized_s_per_answer']:6.3f} "
                  f"{r.get('texts_differ', '-'):>6} {r['cpu_pressure_pct']:5.1f}", file=sys.stderr)
        print(f"{kind:11s} prompt tokens {results[kind]['prompt_tokens_min']}-{results[kind]['prompt_tokens_max']} "
              f"(mean {results[kind]['prompt_tokens_mean']})", file=sys.stderr)
    emit(result, args.out)


if __name__ == "__main__":
    main()
