"""Fine-tuning throughput and peak memory: ragtune `finetune()` vs a plain transformers Trainer + peft script.

    python benchmarks/bench_finetune_throughput.py [--rows closed-book|raft] [--methods lora,full]
                                                   [--lora-steps 20] [--full-steps 10] [--batch-size 8]
                                                   [--repeats 4] [--out results.json]

Both sides train SmolLM2-135M (the trainable checkpoint ragtune converts from the packaged GGUF) on the same rows:
the bundled COVID-QA questions as closed-book chat SFT rows (ragtune's closed-book prompt, rendered with the chat
template, prompt tokens masked), as ragtune's data preparation keeps them (normalised, duplicates removed; no
validation split, no length-outlier removal, so nothing is evaluated). `--rows raft` trains instead on RAFT rows
built as the demo's RAFT run builds them: the bundled documents ingested into a temporary knowledge base, then
ragtune's data preparation with objective raft (3 passages per row: the gold passage among distractors in 80 % of
rows, distractors only in the rest; RAG's prompt, prompt masked; max_seq_length 768 as the demo's budget; ~670
tokens a row). Those rows are written once as chat (`messages`) rows, which both sides then train on: ragtune
re-reads them with objective sft (the same encoding as a raft run, without the knowledge base and its embedder in
the measured process). Same batch size, max_steps, learning rate
(ragtune's method default), cosine schedule with 5% warmup, seed, bf16 autocast where ragtune's precision "auto"
picks it, and for LoRA the same config (r 16, alpha 32, dropout 0 on q/k/v/o/gate/up/down).

  ragtune  `ragtune.training.finetune(...)` with its defaults otherwise (timed checkpoints, JSONL log,
           TensorBoard, curves, GGUF export, the label-only loss and the automatic memory plan, which may split
           each step's rows into micro-batches with gradient accumulation: the plan is recorded). tokens/s =
           metadata tokens_seen / train_seconds.
  plain    the script a user would write: AutoModelForCausalLM + peft get_peft_model + Trainer with
           DataCollatorForSeq2Seq, no checkpoints, no evaluation, nothing saved. tokens/s = non-padding tokens fed
           to the model / wall time of trainer.train().

Model loading is excluded from throughput on both sides. Every measurement runs in its own process, so its peak RSS
(ru_maxrss) is that run's alone; the order alternates (ragtune, plain, plain, ragtune, ...: successive runs on
this machine tend to get faster, which would favour whichever side always ran second) and medians are reported.
`train_loop_seconds` is the same clock on both sides (a callback's on_train_begin -> on_train_end) as a cross-check;
`cpu_pressure_pct` is the share of it in which some task waited for a CPU (Linux PSI): other processes, or the
kernel writing checkpoints back to disk. Before each measurement the script waits (up to --quiet-wait seconds) for
the machine to be quiet, and takes a measurement again (up to --attempts tries) when its pressure was above
--max-pressure; discarded attempts are listed in the output.
The loss curves are compared too: the plain side logs at the steps ragtune logs (every step up to 10 steps),
and `loss_curve_max_abs_diff` is the largest difference of the logged training losses of the first repeat of each
side (same rows, same seed: the same curve up to float rounding and the bf16 autocast).
Targets (issue 9): ragtune/plain LoRA tokens per second >= 1.5 on RAFT rows, >= 1.1 on closed-book rows; the loss
curve unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

from reporting import emit  # noqa: E402

LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
IGNORE = -100
PSI = Path("/proc/pressure/cpu")


def cpu_stall_seconds() -> float:
    """Seconds (since boot) in which some task waited for a CPU (Linux PSI); 0 where PSI is unavailable."""
    if not PSI.exists():
        return 0.0
    return int(PSI.read_text().split()[4].removeprefix("total=")) / 1e6


def wait_for_quiet(threshold_pct: float, limit_s: float) -> float:
    """Wait (up to `limit_s`) until the CPU pressure of the last 10 s is below `threshold_pct`; seconds waited."""
    started = time.perf_counter()
    while PSI.exists() and time.perf_counter() - started < limit_s:
        if float(PSI.read_text().split()[1].removeprefix("avg10=")) < threshold_pct:
            break
        time.sleep(5)
    return time.perf_counter() - started


def rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (ru_maxrss is in kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare_rows(tmp: Path, tokenizer, rows: str) -> tuple[Path, Path, list]:
    """The data files: `train.jsonl` for ragtune and `plain.jsonl` for the plain script (the same rows as chat
    messages in the order ragtune's preparation of train.jsonl puts them, so that both Trainers see the same
    batches). Closed-book rows: the bundled questions as ragtune's data preparation keeps them (normalised,
    duplicates removed). RAFT rows: see `raft_examples`. Returns both paths and the examples in ragtune's order."""
    from ragtune.data import DatasetSpec, prepare_data
    from ragtune.demo import demo_questions

    options = bench_recipe("lora", 1, 1, rows).data.model_copy(update={"objective": "sft"})
    raw, train, plain = tmp / "questions.jsonl", tmp / "train.jsonl", tmp / "plain.jsonl"
    write_rows(raw, [{"id": r["id"], "question": r["question"], "answer": r["answer"]} for r in demo_questions()])
    if rows == "raft":
        write_rows(train, [{"id": e.id, "messages": e.messages} for e in raft_examples(tmp, raw, tokenizer, options)])
    else:
        kept = prepare_data([DatasetSpec(str(raw))], options=options, tokenizer=tokenizer).train
        write_rows(train, [{"id": e.id, "question": e.question, "answer": e.answer} for e in kept])
    ordered = prepare_data([DatasetSpec(str(train))], options=options, tokenizer=tokenizer).train  # what ragtune does
    write_rows(plain, [{"messages": e.messages} for e in ordered])
    return train, plain, ordered


def raft_examples(tmp: Path, questions: Path, tokenizer, options) -> list:
    """The demo's RAFT rows: the bundled documents ingested into a knowledge base in `tmp`, and the bundled
    questions prepared with objective raft as `ragtune demo` prepares them (the experiment's raft_k 3 and seed 0)."""
    from ragtune.data import DatasetSpec, prepare_data
    from ragtune.demo import demo_corpus_dir
    from ragtune.project import Project

    project = Project(tmp / "kb")
    try:
        project.ingest([str(demo_corpus_dir())])
        return prepare_data([DatasetSpec(str(questions))], tokenizer=tokenizer, knowledge_base=project.kb,
                            options=options.model_copy(update={"objective": "raft", "raft_k": 3})).train
    finally:
        project.close()


def write_rows(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def bench_recipe(method: str, steps: int, batch_size: int, rows: str = "closed-book"):
    """ragtune's recipe: the method's defaults, max_steps and batch size, no validation split, no outlier removal
    (RAFT rows: the demo's max_seq_length, 768)."""
    from ragtune.training.recipe import resolve_recipe

    data = {"val_fraction": 0.0, "length_percentile": None, **({"max_seq_length": 768} if rows == "raft" else {})}
    return resolve_recipe(method, overrides={"max_steps": steps, "batch_size": batch_size, "data": data})


def logging_steps(steps: int) -> int:
    """The steps between logged losses, as ragtune's training_arguments sets them without validation data."""
    return max(1, min(max(1, steps // 10), 10))


def plain_encode(rows: list[dict], tokenizer) -> list[dict]:
    """The plain script's tokenisation of chat rows: the chat template, labels only on the answer (the last
    message) and its end-of-turn token."""
    encoded = []
    for row in rows:
        prompt = row["messages"][:-1]
        full = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        prompt_len = len(tokenizer(tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True),
                                   add_special_tokens=False)["input_ids"])
        ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        labels = [IGNORE] * prompt_len + ids[prompt_len:]
        if full.endswith("\n"):  # the newline after <|im_end|> is not part of the answer
            labels[-1] = IGNORE
        encoded.append({"input_ids": ids, "labels": labels, "attention_mask": [1] * len(ids)})
    return encoded


class _Probe:
    """A TrainerCallback (built lazily) timing on_train_begin -> on_train_end and the peak RSS at each."""

    @staticmethod
    def make():
        from transformers import TrainerCallback

        class Probe(TrainerCallback):
            def __init__(self):
                self.began = self.ended = self.stall = self.step_ended = self.saving = 0.0
                self.rss_at_begin = self.rss_at_end = 0.0
                self.saves = 0

            def on_train_begin(self, args, state, control, **kwargs):
                self.began, self.rss_at_begin, self.stall = time.perf_counter(), rss_mb(), cpu_stall_seconds()

            def on_step_end(self, args, state, control, **kwargs):
                self.step_ended = time.perf_counter()

            def on_save(self, args, state, control, **kwargs):  # Trainer saves between on_step_end and on_save
                self.saving += time.perf_counter() - self.step_ended
                self.saves += 1

            def on_train_end(self, args, state, control, **kwargs):
                self.ended, self.rss_at_end = time.perf_counter(), rss_mb()
                self.stall = cpu_stall_seconds() - self.stall

            def pressure_pct(self) -> float:
                """Share of the training loop's wall time in which some task waited for a CPU."""
                return round(100 * self.stall / (self.ended - self.began), 1)

        return Probe()


def worker_ragtune(args) -> dict:
    from ragtune.data import DatasetSpec
    from ragtune.training.finetune import finetune

    started = time.perf_counter()
    from ragtune.training.callbacks import read_log
    from ragtune.training.runs import LOG_FILE

    recipe = bench_recipe(args.method, args.steps, args.batch_size, args.rows)
    probe = _Probe.make()
    result = finetune([DatasetSpec(str(args.data))], recipe, runs_dir=args.workdir / "runs", callbacks=[probe])
    total = time.perf_counter() - started
    meta = result.metadata
    curve = {record["step"]: record["loss"] for record in read_log(result.run_dir / LOG_FILE) if "loss" in record}
    return {"side": args.worker, "method": args.method, "tokens": meta["tokens_seen"],
            "train_seconds": meta["train_seconds"], "tokens_per_s": meta["tokens_seen"] / meta["train_seconds"],
            "train_loop_seconds": round(probe.ended - probe.began, 3), "cpu_pressure_pct": probe.pressure_pct(),
            "checkpoints": probe.saves, "checkpoint_seconds": round(probe.saving, 2),
            "steps": meta["steps"],
            "learning_rate": recipe.learning_rate, "precision": meta["precision"],
            "first_step_loss": meta["first_train_loss"], "loss_curve": curve,
            "memory_plan": meta["memory"], "peak_memory_gb": meta["peak_memory_gb"],
            "trainable_parameters": meta["trainable_parameters"], "rows": meta["rows"]["train"],
            "peak_rss_mb": round(rss_mb(), 1), "peak_rss_train_mb": round(probe.rss_at_end, 1),
            "rss_before_train_mb": round(probe.rss_at_begin, 1),
            "seconds_before_train": round(probe.began - started, 2),
            "seconds_after_train": round(total - (probe.ended - started), 2), "total_seconds": round(total, 2)}


def worker_plain(args) -> dict:
    import torch
    from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer,
                              TrainingArguments)

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
    rows = plain_encode([json.loads(line) for line in args.data.read_text().splitlines()], tokenizer)
    model = AutoModelForCausalLM.from_pretrained(args.checkpoint, dtype=torch.float32)
    if args.method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, **LORA))

    class CountingTrainer(Trainer):
        tokens = 0

        def compute_loss(self, model, inputs, *rest, **kwargs):
            CountingTrainer.tokens += int(inputs["attention_mask"].sum())
            return super().compute_loss(model, inputs, *rest, **kwargs)

    training_args = TrainingArguments(
        output_dir=str(args.workdir / "plain"), per_device_train_batch_size=args.batch_size, max_steps=args.steps,
        learning_rate=args.learning_rate, lr_scheduler_type="cosine", warmup_steps=0.05, seed=0, data_seed=0,
        bf16=args.bf16, use_cpu=True, eval_strategy="no", save_strategy="no", report_to="none", disable_tqdm=True,
        logging_steps=logging_steps(args.steps), logging_first_step=True, remove_unused_columns=False)
    probe = _Probe.make()
    trainer = CountingTrainer(model=model, args=training_args, train_dataset=rows,
                              data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True,
                                                                   label_pad_token_id=IGNORE),
                              callbacks=[probe])
    began = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - began
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    curve = {log["step"]: log["loss"] for log in trainer.state.log_history if "loss" in log}
    return {"side": "plain", "method": args.method, "tokens": CountingTrainer.tokens,
            "train_seconds": round(seconds, 3),
            "tokens_per_s": CountingTrainer.tokens / seconds, "train_loop_seconds": round(probe.ended - probe.began, 3),
            "cpu_pressure_pct": probe.pressure_pct(),
            "steps": output.global_step, "learning_rate": args.learning_rate,
            "precision": "bf16" if args.bf16 else "fp32", "first_step_loss": losses[0] if losses else None,
            "loss_curve": curve,
            "trainable_parameters": trainable, "rows": len(rows),
            "peak_rss_mb": round(rss_mb(), 1), "peak_rss_train_mb": round(probe.rss_at_end, 1),
            "rss_before_train_mb": round(probe.rss_at_begin, 1),
            "seconds_before_train": round(probe.began - started, 2)}


def run_worker(side: str, method: str, steps: int, lr: float, bf16: bool, args, data: dict[str, Path],
               checkpoint: Path, tmp: Path, index: int) -> dict:
    """One measurement in its own process; repeated (up to --attempts times) while other processes disturbed it
    (CPU pressure above --max-pressure); the discarded attempts are listed in the result."""
    discarded: list[dict] = []
    for attempt in range(args.attempts):
        workdir = tmp / f"{index:02d}-{side}-{method}-{attempt}"
        workdir.mkdir()
        waited = wait_for_quiet(args.quiet_pct, args.quiet_wait)
        command = [sys.executable, __file__, "--worker", side, "--method", method, "--steps", str(steps),
                   "--batch-size", str(args.batch_size), "--learning-rate", repr(lr),
                   "--data", str(data["plain" if side == "plain" else "ragtune"]),
                   "--checkpoint", str(checkpoint), "--workdir", str(workdir), "--rows", args.rows] + \
            (["--bf16"] if bf16 else [])
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.stderr.write(done.stderr[-5000:])
            raise SystemExit(f"{side} {method} worker failed ({done.returncode})")
        shutil.rmtree(workdir, ignore_errors=True)
        result = {**json.loads(done.stdout.strip().splitlines()[-1]), "waited_for_quiet_s": round(waited, 1)}
        print(f"{side:24s} {method:5s} {result['tokens']:6d} tokens / {result['train_seconds']:7.2f} s = "
              f"{result['tokens_per_s']:7.1f} tok/s, loop {result['train_loop_seconds']:.2f} s, "
              f"peak RSS {result['peak_rss_mb']:.0f} MB (training {result['peak_rss_train_mb']:.0f} MB), "
              f"cpu pressure {result['cpu_pressure_pct']}%", file=sys.stderr)
        if result["cpu_pressure_pct"] <= args.max_pressure or attempt == args.attempts - 1:
            return {**result, "discarded_attempts": discarded}
        discarded.append({"tokens_per_s": round(result["tokens_per_s"], 1),
                          "cpu_pressure_pct": result["cpu_pressure_pct"]})
    raise AssertionError("unreachable")


def summarise(results: list[dict]) -> dict:
    median = lambda key: statistics.median(r[key] for r in results)
    first = results[0]
    return {"tokens_per_s": round(median("tokens_per_s"), 1),
            "tokens_per_s_runs": [round(r["tokens_per_s"], 1) for r in results],
            "cpu_pressure_pct_runs": [r["cpu_pressure_pct"] for r in results],
            "discarded_attempts": [d for r in results for d in r["discarded_attempts"]],
            "tokens": first["tokens"], "train_seconds": round(median("train_seconds"), 2),
            "train_loop_seconds": round(median("train_loop_seconds"), 2),
            "loop_tokens_per_s": round(statistics.median(r["tokens"] / r["train_loop_seconds"] for r in results), 1),
            "peak_rss_mb": round(median("peak_rss_mb"), 1), "peak_rss_train_mb": round(median("peak_rss_train_mb"), 1),
            "rss_before_train_mb": round(median("rss_before_train_mb"), 1),
            "seconds_before_train": round(median("seconds_before_train"), 2),
            **({"seconds_after_train": round(median("seconds_after_train"), 2),
                "checkpoints": first["checkpoints"], "checkpoint_seconds": round(median("checkpoint_seconds"), 2)}
               if first["side"] != "plain" else {}),
            "steps": first["steps"], "rows": first["rows"], "precision": first["precision"],
            "learning_rate": first["learning_rate"], "trainable_parameters": first["trainable_parameters"],
            "first_step_loss": first["first_step_loss"],
            "loss_curve": {int(step): loss for step, loss in first["loss_curve"].items()},
            **({"memory_plan": first["memory_plan"], "peak_memory_gb_runs": [r["peak_memory_gb"] for r in results]}
               if first["side"] != "plain" else {})}


def curve_difference(ours: dict, baseline: dict) -> dict:
    """The training losses both sides logged at the same steps, and their largest absolute difference."""
    steps = sorted(set(ours) & set(baseline))
    diffs = [abs(ours[step] - baseline[step]) for step in steps]
    return {"steps_compared": steps, "loss_curve_max_abs_diff": round(max(diffs), 5) if diffs else None,
            "loss_curve_max_rel_diff": round(max(d / abs(baseline[s]) for d, s in zip(diffs, steps)), 5)
            if diffs else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", choices=["closed-book", "raft"], default="closed-book",
                        help="closed-book Q&A rows (~70 tokens) or the demo's RAFT rows (~670 tokens)")
    parser.add_argument("--methods", default="lora,full")
    parser.add_argument("--lora-steps", type=int, default=20)
    parser.add_argument("--full-steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=4, help="measurements per side and method (even: each side "
                                                              "runs first equally often)")
    parser.add_argument("--quiet-pct", type=float, default=5.0,
                        help="before each measurement, wait until CPU pressure (PSI avg10) is below this")
    parser.add_argument("--quiet-wait", type=float, default=120.0, help="longest wait for quiet, in seconds")
    parser.add_argument("--max-pressure", type=float, default=10.0,
                        help="a measurement with more CPU pressure than this (%%) is taken again")
    parser.add_argument("--attempts", type=int, default=3, help="most tries per measurement")
    parser.add_argument("--out", type=Path)
    # worker mode (one measurement, in its own process)
    parser.add_argument("--worker", choices=["ragtune", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--learning-rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = (worker_plain if args.worker == "plain" else worker_ragtune)(args)
        print(json.dumps(result))
        return

    import torch
    from transformers import AutoTokenizer

    from ragtune.data import encode_examples
    from ragtune.training.checkpoint import trainable_checkpoint
    from ragtune.training.recipe import default_recipe
    from ragtune.training.trainer_setup import use_bf16

    checkpoint = trainable_checkpoint("smollm2-135m")  # converted once and cached: not part of any measurement
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    bf16 = use_bf16("auto")
    results: dict = {"model": "smollm2-135m", "rows_kind": args.rows, "checkpoint": str(checkpoint),
                     "batch_size": args.batch_size,
                     "repeats": args.repeats, "torch_threads": torch.get_num_threads(),
                     "precision": "bf16" if bf16 else "fp32", "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as tmp_name:
        tmp = Path(tmp_name)
        train, plain, ordered = prepare_rows(tmp, tokenizer, args.rows)
        data = {"ragtune": train, "plain": plain}
        results["rows"] = len(ordered)
        ragtune_rows = encode_examples(ordered, tokenizer, bench_recipe("lora", 1, 1, args.rows).data.max_seq_length)
        plain_rows = plain_encode([json.loads(line) for line in plain.read_text().splitlines()], tokenizer)
        results["identical_token_rows"] = len(ragtune_rows) == len(plain_rows) and all(
            r["input_ids"] == p["input_ids"] and r["labels"] == p["labels"] for r, p in zip(ragtune_rows, plain_rows))
        results["tokens_per_row_mean"] = round(sum(len(r["input_ids"]) for r in plain_rows) / len(plain_rows), 1)
        index = 0
        for method in args.methods.split(","):
            steps = args.lora_steps if method == "lora" else args.full_steps
            lr = default_recipe(method).learning_rate
            runs: dict[str, list[dict]] = {"ragtune": [], "plain": []}
            for repeat in range(args.repeats):
                for side in (["ragtune", "plain"] if repeat % 2 == 0 else ["plain", "ragtune"]):
                    index += 1
                    runs[side].append(run_worker(side, method, steps, lr, bf16, args, data, checkpoint, tmp, index))
            ours, baseline = summarise(runs["ragtune"]), summarise(runs["plain"])
            results[method] = {
                "steps": steps, "ragtune": ours, "plain": baseline, "same_tokens": ours["tokens"] == baseline["tokens"],
                "ratio_tokens_per_s": round(ours["tokens_per_s"] / baseline["tokens_per_s"], 3),
                "ratio_loop_tokens_per_s": round(ours["loop_tokens_per_s"] / baseline["loop_tokens_per_s"], 3),
                "ratio_peak_rss": round(ours["peak_rss_mb"] / baseline["peak_rss_mb"], 3),
                "ratio_peak_rss_training": round(ours["peak_rss_train_mb"] / baseline["peak_rss_train_mb"], 3),
                **curve_difference(ours["loss_curve"], baseline["loss_curve"])}
            print(f"{method}: ragtune/plain tokens/s {results[method]['ratio_tokens_per_s']}, "
                  f"peak RSS {results[method]['ratio_peak_rss']}, "
                  f"loss curve max |diff| {results[method]['loss_curve_max_abs_diff']}", file=sys.stderr)
    emit(results, args.out)


if __name__ == "__main__":
    main()
