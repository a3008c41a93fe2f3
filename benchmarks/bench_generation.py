"""Generation speed: raw llama.cpp vs ragtune's default engine (single and batched) on the same GGUF and prompts.

    python benchmarks/bench_generation.py [--model smollm2-135m] [--prompts 8] [--max-tokens 64] [--repeats 1]
                                          [--out results.json]

All modes decode greedily, with the same max tokens, the same prompts (3 COVID-QA passages + a question,
chat-templated, about 400-600 tokens) and the same thread count:
  (a) raw      llama_cpp.Llama.create_completion on the already-templated prompt (the baseline)
  (b) generate ragtune LlamaCppEngine.generate, one request at a time
  (c) batch    ragtune LlamaCppEngine.generate_batch, all prompts in one call (batch of 8)
  (d) hf_fp32  transformers generate in fp32 on the same GGUF (from_pretrained(dir, gguf_file=...)), a few
               prompts as a reference point, stopped once it has used its time budget
Time-to-first-token is measured on streaming requests for (a) and (b). (a) and (b) alternate prompt by
prompt so that background load hits both alike. Target: generate/raw tokens per second >= 0.7.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import llama_cpp  # noqa: E402

import ragtune  # noqa: E402
from ragtune.models.base import GenerationConfig  # noqa: E402
from ragtune.models.llamacpp_engine import LlamaCppEngine, available_cpus  # noqa: E402
from ragtune.models.prompting import PLAIN_STOPS  # noqa: E402
from ragtune.models.registry import resolve_generator  # noqa: E402

DEMO = Path(ragtune.__file__).parent / "demo_data" / "covidqa"
SYSTEM = "Answer the question using only the passages. If they do not contain the answer, say so."
PASSAGE_CHARS = 700


def rag_conversations(count: int) -> list[list[dict]]:
    """`count` RAG-style conversations: the answer's passage plus two passages from other articles."""
    questions = [json.loads(line) for line in (DEMO / "questions.jsonl").read_text().splitlines()]
    docs = {path.name: path.read_text(encoding="utf-8") for path in sorted((DEMO / "docs").glob("*.txt"))}
    names = sorted(docs)
    conversations = []
    for i, question in enumerate(questions[:: max(1, len(questions) // count)][:count]):
        source = docs[question["source"]]
        start = max(0, question["answer_start"] - PASSAGE_CHARS // 2)
        others = [docs[names[(names.index(question["source"]) + k) % len(names)]] for k in (1, 2)]
        passages = [others[0][:PASSAGE_CHARS], source[start: start + PASSAGE_CHARS], others[1][:PASSAGE_CHARS]]
        listed = "\n\n".join(f"[{n}] {' '.join(p.split())}" for n, p in enumerate(passages, 1))
        conversations.append([{"role": "system", "content": SYSTEM},
                              {"role": "user", "content": f"Passages:\n{listed}\n\nQuestion: {question['question']}"}])
    return conversations


def machine_load() -> dict:
    """Load average and, on Linux, the share of time runnable tasks waited for a CPU (PSI)."""
    load = {"loadavg": [round(x, 2) for x in os.getloadavg()]}
    psi = Path("/proc/pressure/cpu")
    if psi.exists():
        fields = dict(item.split("=") for item in psi.read_text().splitlines()[0].split()[1:])
        load["cpu_pressure_avg10_pct"] = float(fields["avg10"])
    return load


def summary(seconds: float, prompt_tokens: int, completion_tokens: int, **extra) -> dict:
    return {"seconds": round(seconds, 3), "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "completion_tokens_per_s": round(completion_tokens / seconds, 2),
            "all_tokens_per_s": round((prompt_tokens + completion_tokens) / seconds, 2), **extra}


def time_to_first(pieces) -> tuple[float, float]:
    """Seconds to the first non-empty piece and to the end of a stream."""
    start, first = time.perf_counter(), None
    for piece in pieces:
        if first is None and piece:
            first = time.perf_counter() - start
    return first or 0.0, time.perf_counter() - start


def bench_raw_and_engine(raw: llama_cpp.Llama, engine: LlamaCppEngine, conversations, max_tokens: int) -> dict:
    config = GenerationConfig(max_new_tokens=max_tokens)
    eos = raw.detokenize([raw.token_eos()], special=True).decode()
    stop = [eos] if engine.has_chat_template else list(PLAIN_STOPS)  # the stops the engine uses
    results = {"raw": [], "generate": []}

    def run_raw(prompt: str) -> tuple[str, int, int, float]:
        start = time.perf_counter()
        out = raw.create_completion(prompt, max_tokens=max_tokens, temperature=0.0, stop=stop)
        usage = out["usage"]
        return out["choices"][0]["text"], usage["prompt_tokens"], usage["completion_tokens"], time.perf_counter() - start

    def run_engine(messages) -> tuple[str, int, int, float]:
        g = engine.generate(messages, config)
        return g.text, g.prompt_tokens, g.completion_tokens, g.seconds

    for i, messages in enumerate(conversations):
        prompt = engine.render(messages)
        order = [("raw", lambda: run_raw(prompt)), ("generate", lambda: run_engine(messages))]
        for mode, run in order if i % 2 == 0 else order[::-1]:
            results[mode].append(run())
    ttft = {"raw": [], "generate": []}
    for messages in conversations:
        prompt = engine.render(messages)
        raw_stream = (c["choices"][0]["text"] for c in raw.create_completion(
            prompt, max_tokens=max_tokens, temperature=0.0, stop=stop, stream=True))
        ttft["raw"].append(time_to_first(raw_stream))
        ttft["generate"].append(time_to_first(engine.stream(messages, config)))
    report = {}
    for mode, rows in results.items():
        completion = sum(r[2] for r in rows)
        decode_seconds = sum(total - first for first, total in ttft[mode])
        report[mode] = summary(
            sum(r[3] for r in rows), sum(r[1] for r in rows), completion,
            ttft_s_mean=round(sum(first for first, _ in ttft[mode]) / len(rows), 3),
            decode_tokens_per_s=round((completion - len(rows)) / decode_seconds, 2),
            texts=[r[0] for r in rows])
    return report


def bench_batch(engine: LlamaCppEngine, conversations, max_tokens: int) -> dict:
    start = time.perf_counter()
    generations = engine.generate_batch(conversations, GenerationConfig(max_new_tokens=max_tokens))
    return summary(time.perf_counter() - start, sum(g.prompt_tokens for g in generations),
                   sum(g.completion_tokens for g in generations), batch_size=engine.batch_size,
                   texts=[g.text for g in generations])


def bench_transformers(gguf: Path, prompts: list[str], max_tokens: int, budget_s: float) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    kwargs = {"gguf_file": gguf.name, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs).eval()
    load_seconds = time.perf_counter() - start
    rows = []
    for prompt in prompts:
        if time.perf_counter() - start > budget_s:
            break
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        began = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False,
                                    pad_token_id=tokenizer.eos_token_id)
        new = output[0, inputs["input_ids"].shape[1]:]
        rows.append((inputs["input_ids"].shape[1], len(new), time.perf_counter() - began))
    return summary(sum(r[2] for r in rows), sum(r[0] for r in rows), sum(r[1] for r in rows),
                   prompts=len(rows), load_seconds=round(load_seconds, 2), torch_threads=torch.get_num_threads())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="a GGUF generator name or path")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--context", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=1, help="runs of (a)-(c); the fastest of each is kept")
    parser.add_argument("--hf-prompts", type=int, default=3, help="prompts for (d); 0 skips it")
    parser.add_argument("--hf-budget", type=float, default=120.0, help="seconds (d) may take, loading included")
    parser.add_argument("--out", default="-", help="JSON output path (default: stdout)")
    args = parser.parse_args()

    spec = resolve_generator(args.model)
    conversations = rag_conversations(args.prompts)
    threads = available_cpus()
    load_before = machine_load()
    raw = llama_cpp.Llama(model_path=spec.location, n_ctx=args.context, n_threads=threads,
                          n_threads_batch=threads, seed=0, verbose=False)
    engine = LlamaCppEngine(spec.location, name=spec.name, context_tokens=args.context,
                            batch_size=args.prompts, n_threads=threads)
    raw.create_completion("Hello", max_tokens=2, temperature=0.0)  # warm up both paths
    engine.generate_batch(conversations[:2], GenerationConfig(max_new_tokens=2))

    best: dict[str, dict] = {}
    for _ in range(args.repeats):
        single = bench_raw_and_engine(raw, engine, conversations, args.max_tokens)
        runs = {"raw": single["raw"], "generate": single["generate"],
                "batch": bench_batch(engine, conversations, args.max_tokens)}
        for mode, report in runs.items():
            if mode not in best or report["seconds"] < best[mode]["seconds"]:
                best[mode] = report
    texts = {mode: report.pop("texts") for mode, report in best.items()}
    raw_speed = best["raw"]["completion_tokens_per_s"]
    result = {
        "model": spec.name, "file": spec.location, "threads": threads, "prompts": len(conversations),
        "max_new_tokens": args.max_tokens, "load_before": load_before,
        "repeats": args.repeats,
        "raw_llama_cpp": best["raw"], "ragtune_generate": best["generate"], "ragtune_generate_batch": best["batch"],
        "ratios": {"generate_vs_raw": round(best["generate"]["completion_tokens_per_s"] / raw_speed, 3),
                   "batch_vs_raw": round(best["batch"]["completion_tokens_per_s"] / raw_speed, 3)},
        "identical_outputs": {"generate_vs_raw": texts["generate"] == texts["raw"],
                              "batch_vs_generate": texts["batch"] == texts["generate"]},
    }
    hf_prompts = [engine.render(c) for c in conversations[: args.hf_prompts]]
    engine.close()
    raw.close()
    if hf_prompts:
        result["transformers_fp32"] = bench_transformers(Path(spec.location), hf_prompts, args.max_tokens,
                                                         args.hf_budget)
    result["load_after"] = machine_load()

    for mode in ("raw_llama_cpp", "ragtune_generate", "ragtune_generate_batch", "transformers_fp32"):
        if mode in result:
            r = result[mode]
            ttft = f", first token {r['ttft_s_mean']:.2f} s" if "ttft_s_mean" in r else ""
            print(f"{mode:24s} {r['completion_tokens_per_s']:7.1f} completion tok/s "
                  f"({r['completion_tokens']} tokens, {r['prompt_tokens']} prompt tokens, {r['seconds']:.1f} s{ttft})",
                  file=sys.stderr)
    print(f"ratios {result['ratios']}  identical {result['identical_outputs']}", file=sys.stderr)
    text = json.dumps(result, indent=2)
    if args.out == "-":
        print(text)
    else:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
