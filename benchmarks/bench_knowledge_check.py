"""Does fine-tuning learn? LoRA SFT on closed-book COVID-QA questions, then the same questions asked closed book.

    python benchmarks/bench_knowledge_check.py [--train-questions 40] [--val-questions 10] [--max-words 6]
                                               [--epochs 15] [--learning-rate 2e-3] [--batch-size 8]
                                               [--curves benchmarks/results/knowledge_check_curves.png]
                                               [--keep-runs DIR] [--out results.json]

Questions: bundled COVID-QA questions whose answers have at most --max-words words (duplicate questions
removed), shuffled with seed 0; the first --train-questions are trained on, the next --val-questions (other
questions) are the validation file.
Training: `ragtune.training.finetune` with LoRA (ragtune's defaults otherwise: r 16, alpha 32, cosine schedule,
bf16 where the CPU has it, about 10 evaluations per run) on SmolLM2-135M, closed-book SFT rows (the prompt `ask`
uses with k = 0), patience 0 so early stopping never ends the run. Two runs with the same recipe, data and seed:
  with validation     records the validation-loss curve (curves.png is copied to --curves); as ragtune does
                      whenever there is validation data, the run finishes with its best-validation checkpoint;
  without validation  the same training, finishing with the last step's weights: what memorising the training
                      questions gives. (With LoRA dropout, the default 0, each evaluation's random draw would
                      shift the dropout masks; both training-loss curves are reported.)
Answering: greedy, closed book (`build_messages(question, [])`), --max-new-tokens, through `load_generator`: the
base model `smollm2-135m` (the baseline) and each finished run directory (llama.cpp with the run's LoRA GGUF
adapter). Scores: exact match and token F1 (SQuAD normalisation) on the training questions (memorisation) and on
the validation questions (held out, for reference).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from reporting import emit

from ragtune.data import DatasetSpec
from ragtune.demo import demo_questions
from ragtune.evaluation.metrics import exact_match, normalize_answer, token_f1
from ragtune.models.base import GenerationConfig
from ragtune.models.loading import load_generator
from ragtune.prompts import build_messages
from ragtune.training import runs
from ragtune.training.callbacks import read_log
from ragtune.training.finetune import finetune
from ragtune.training.recipe import resolve_recipe

BASE = "smollm2-135m"
PSI = Path("/proc/pressure/cpu")


def pick_questions(max_words: int, train_count: int, val_count: int) -> tuple[list[dict], list[dict]]:
    """Short-answer questions (one per distinct question), shuffled with seed 0: (train, validation)."""
    seen, short = set(), []
    for row in demo_questions():
        key = normalize_answer(row["question"])
        if len(row["answer"].split()) <= max_words and key not in seen:
            seen.add(key)
            short.append(row)
    random.Random(0).shuffle(short)
    if len(short) < train_count + val_count:
        raise SystemExit(f"only {len(short)} questions have answers of at most {max_words} words")
    return short[:train_count], short[train_count:train_count + val_count]


def write_rows(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps({"id": r["id"], "question": r["question"], "answer": r["answer"]}) + "\n"
                            for r in rows), encoding="utf-8")


def answer(model: str, rows: list[dict], max_new_tokens: int) -> list[dict]:
    """Closed-book greedy answers of `model` (a generator name or run directory), scored against the references."""
    engine = load_generator(model)
    started = time.perf_counter()
    generations = engine.generate_batch([build_messages(row["question"], []) for row in rows],
                                        GenerationConfig(max_new_tokens=max_new_tokens))
    seconds = time.perf_counter() - started
    return [{"id": row["id"], "question": row["question"], "reference": row["answer"], "answer": g.text.strip(),
             "exact_match": exact_match(g.text, row["answer"]), "f1": token_f1(g.text, row["answer"]),
             "seconds": seconds / len(rows)} for row, g in zip(rows, generations)]


def scores(answers: list[dict]) -> dict:
    return {"exact_match": round(statistics.mean(a["exact_match"] for a in answers), 3),
            "f1": round(statistics.mean(a["f1"] for a in answers), 3),
            "exact": sum(int(a["exact_match"]) for a in answers), "questions": len(answers)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-questions", type=int, default=40)
    parser.add_argument("--val-questions", type=int, default=10)
    parser.add_argument("--max-words", type=int, default=6, help="longest reference answer, in words")
    parser.add_argument("--epochs", type=float, default=15)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--curves", type=Path, default=Path("benchmarks/results/knowledge_check_curves.png"))
    parser.add_argument("--keep-runs", type=Path, help="copy the finished run directories into this folder")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    train_rows, val_rows = pick_questions(args.max_words, args.train_questions, args.val_questions)
    base_train = answer(BASE, train_rows, args.max_new_tokens)
    base_val = answer(BASE, val_rows, args.max_new_tokens)
    recipe = resolve_recipe("lora", overrides={"epochs": args.epochs, "learning_rate": args.learning_rate,
                                               "batch_size": args.batch_size, "patience": 0,
                                               "data": {"val_fraction": 0.0}})
    with tempfile.TemporaryDirectory(prefix="bench-knowledge-") as tmp_name:
        tmp = Path(tmp_name)
        write_rows(tmp / "train.jsonl", train_rows)
        write_rows(tmp / "val.jsonl", val_rows)
        train = [DatasetSpec(str(tmp / "train.jsonl"))]
        with_val = train_run(train, [DatasetSpec(str(tmp / "val.jsonl"))], recipe, tmp / "runs")
        last = train_run(train, None, recipe, tmp / "runs")
        args.curves.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(with_val["run_dir"] / runs.CURVES_FILE, args.curves)
        for run in (with_val, last):
            run["train"] = answer(str(run["run_dir"]), train_rows, args.max_new_tokens)
            run["val"] = answer(str(run["run_dir"]), val_rows, args.max_new_tokens)
            if args.keep_runs:
                shutil.copytree(run["run_dir"], args.keep_runs / run["run_dir"].name)

    curve = lambda run, key: [(r["step"], r[key]) for r in run["history"] if key in r]  # noqa: E731
    base = scores(base_train)
    results = {
        "model": BASE, "date": time.strftime("%Y-%m-%d"), "method": "lora", "objective": "sft (closed book)",
        "train_questions": len(train_rows), "val_questions": len(val_rows), "max_answer_words": args.max_words,
        "recipe": {"epochs": args.epochs, "learning_rate": args.learning_rate, "batch_size": args.batch_size,
                   "patience": 0, "lora_rank": recipe.lora_rank, "lora_alpha": recipe.lora_alpha,
                   "scheduler": recipe.scheduler, "warmup": recipe.warmup},
        "run_with_validation": run_summary(with_val),
        "run_without_validation": run_summary(last),
        "val_loss_curve": [{"step": step, "epoch": round(epoch, 2), "eval_loss": round(loss, 4)}
                           for step, epoch, loss in ((r["step"], r["epoch"] or 0.0, r["eval_loss"])
                                                     for r in with_val["history"] if "eval_loss" in r)],
        "train_loss_curve": [{"step": step, "with_validation": round(loss, 4), "without_validation": round(other, 4)}
                             for (step, loss), (_, other) in zip(curve(with_val, "loss"), curve(last, "loss"))],
        "train_questions_closed_book": {
            "base": base, "run_with_validation (best-val checkpoint)": scores(with_val["train"]),
            "run_without_validation (last step)": scores(last["train"]),
            "exact_match_gain_last_step": round(scores(last["train"])["exact_match"] - base["exact_match"], 3)},
        "val_questions_closed_book": {"base": scores(base_val),
                                      "run_with_validation (best-val checkpoint)": scores(with_val["val"]),
                                      "run_without_validation (last step)": scores(last["val"])},
        "curves": str(args.curves),
        "answers": [{"question": b["question"], "reference": b["reference"], "base": b["answer"],
                     "best_val_checkpoint": v["answer"], "last_step": t["answer"]}
                    for b, v, t in zip(base_train, with_val["train"], last["train"])],
        "val_answers": [{"question": b["question"], "reference": b["reference"], "base": b["answer"],
                         "best_val_checkpoint": v["answer"], "last_step": t["answer"]}
                        for b, v, t in zip(base_val, with_val["val"], last["val"])],
    }
    closed = results["train_questions_closed_book"]
    print("training questions, closed book (EM / F1): " + ";  ".join(
        f"{name} {s['exact_match']} / {s['f1']}" for name, s in closed.items() if isinstance(s, dict)),
        file=sys.stderr)
    print("validation loss by step: " + ", ".join(f"{r['step']}:{r['eval_loss']:.3f}"
                                                   for r in results["val_loss_curve"]), file=sys.stderr)
    emit(results, args.out)


def train_run(train: list[DatasetSpec], val: list[DatasetSpec] | None, recipe, runs_dir: Path) -> dict:
    """One ragtune fine-tune; its run directory, metadata, log, wall time and CPU pressure (PSI) during it."""
    stall, started = cpu_stall_seconds(), time.perf_counter()
    result = finetune(train, recipe, runs_dir=runs_dir, val=val)
    seconds = time.perf_counter() - started
    return {"run_dir": result.run_dir, "meta": result.metadata, "seconds": seconds,
            "cpu_pressure_pct": round(100 * (cpu_stall_seconds() - stall) / seconds, 1),
            "history": read_log(result.run_dir / runs.LOG_FILE)}


def run_summary(run: dict) -> dict:
    meta = run["meta"]
    keys = ("train_seconds", "steps", "epochs", "tokens_seen", "tokens_per_second", "precision", "rows",
            "first_train_loss", "last_train_loss", "initial_val_loss", "best_val_loss", "best_checkpoint_step",
            "stopped_early", "peak_memory_gb")
    return {**{key: meta[key] for key in keys}, "finetune_call_seconds": round(run["seconds"], 1),
            "cpu_pressure_pct": run["cpu_pressure_pct"]}


def cpu_stall_seconds() -> float:
    """Seconds (since boot) in which some task waited for a CPU (Linux PSI); 0 where PSI is unavailable."""
    if not PSI.exists():
        return 0.0
    return int(PSI.read_text().split()[4].removeprefix("total=")) / 1e6


if __name__ == "__main__":
    main()
