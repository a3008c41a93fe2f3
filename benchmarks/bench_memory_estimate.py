"""Training memory: ragtune's estimate (metadata `memory`) against the measured training peak (`peak_memory_gb`).

    python benchmarks/bench_memory_estimate.py [--cells sft-lora,raft-full,...] [--batch-size 8]
                                               [--sft-steps 3] [--raft-steps 2] [--cpt-steps 2] [--out results.json]

SmolLM2-135M (the trainable checkpoint ragtune converts from the packaged GGUF), `finetune()` with its defaults
(bf16 autocast where precision "auto" picks it, the label-only loss, the automatic memory plan under the default
CPU limit) and the demo's budget (batch 8, max_seq_length 768), no validation split and no length-outlier removal,
on three kinds of rows × {full, lora}:

  sft   the bundled COVID-QA questions as closed-book chat rows (~70 tokens)
  raft  the demo's RAFT rows (bundled documents ingested, 3 passages per question; ~670 tokens), built as
        bench_finetune_throughput.py --rows raft builds them
  cpt   continued pretraining on the bundled documents (text cut into 768-token blocks)

Each cell runs in its own process (its peak is its own). Issue 9's target: the estimate's total within ±25 % of
the measured peak in every cell. Also printed: the estimate's parts (baseline = the process's resident memory when
the plan is made, optimizer = gradients + AdamW moments, activations) and what the process held when training
began, so a miss can be traced to the part that misses.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

from reporting import emit  # noqa: E402

CELLS = ("sft-lora", "sft-full", "raft-lora", "raft-full", "cpt-lora", "cpt-full")
TARGET = 0.25


def rss_gb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 1024 ** 3


def worker(args) -> dict:
    from transformers import TrainerCallback

    from ragtune.data import DatasetSpec
    from ragtune.training.finetune import finetune
    from ragtune.training.recipe import resolve_recipe

    kind, method = args.worker.split("-")
    steps = {"sft": args.sft_steps, "raft": args.raft_steps, "cpt": args.cpt_steps}[kind]
    recipe = resolve_recipe(method, overrides={
        "objective": "cpt" if kind == "cpt" else "sft", "max_steps": steps, "batch_size": args.batch_size,
        **({"memory_limit_gb": args.memory_limit_gb} if args.memory_limit_gb else {}),
        "data": {"val_fraction": 0.0, "length_percentile": None, "max_seq_length": 768}})

    class Probe(TrainerCallback):
        rss_at_begin = 0.0

        def on_train_begin(self, *_, **__):
            Probe.rss_at_begin = rss_gb()

    started = time.perf_counter()
    result = finetune([DatasetSpec(str(args.data))], recipe, runs_dir=args.workdir / "runs", callbacks=[Probe()])
    meta = result.metadata
    plan = meta["memory"]
    estimate, measured = plan["estimate"]["total_gb"], meta["peak_memory_gb"]
    return {"cell": args.worker, "rows": meta["rows"]["train"], "steps": meta["steps"],
            "tokens_seen": meta["tokens_seen"], "train_seconds": meta["train_seconds"],
            "micro_batch_size": plan["micro_batch_size"], "gradient_accumulation": plan["gradient_accumulation"],
            "gradient_checkpointing": plan["gradient_checkpointing"], "fits": plan["fits"],
            "limit_gb": plan["limit_gb"], "estimate": plan["estimate"], "estimate_gb": estimate,
            "measured_peak_gb": measured, "rss_at_train_begin_gb": round(Probe.rss_at_begin, 3),
            "error_pct": round(100 * (estimate - measured) / measured, 1),
            "measured_added_gb": round(measured - plan["estimate"]["baseline_gb"], 3),
            "estimated_added_gb": round(plan["estimate"]["optimizer_gb"] + plan["estimate"]["activations_gb"], 3),
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", default=",".join(CELLS))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sft-steps", type=int, default=3)
    parser.add_argument("--raft-steps", type=int, default=2)
    parser.add_argument("--cpt-steps", type=int, default=2)
    parser.add_argument("--memory-limit-gb", type=float, help="recipe memory_limit_gb (default: ragtune's)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    from transformers import AutoTokenizer

    from bench_finetune_throughput import prepare_rows
    from ragtune.demo import demo_corpus_dir
    from ragtune.training.checkpoint import trainable_checkpoint

    tokenizer = AutoTokenizer.from_pretrained(trainable_checkpoint("smollm2-135m"))
    cells = args.cells.split(",")
    results: dict = {"model": "smollm2-135m", "batch_size": args.batch_size, "max_seq_length": 768,
                     "date": time.strftime("%Y-%m-%d"), "target_pct": 100 * TARGET, "cells": []}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp_name:
        tmp = Path(tmp_name)
        data = {"cpt": demo_corpus_dir()}
        for kind in ("sft", "raft"):
            if any(cell.startswith(kind) for cell in cells):
                folder = tmp / kind
                folder.mkdir()
                data[kind] = prepare_rows(folder, tokenizer, "raft" if kind == "raft" else "closed-book")[0]
        for cell in cells:
            workdir = tmp / f"run-{cell}"
            workdir.mkdir()
            command = [sys.executable, __file__, "--worker", cell, "--data", str(data[cell.split("-")[0]]),
                       "--workdir", str(workdir), "--batch-size", str(args.batch_size),
                       "--sft-steps", str(args.sft_steps), "--raft-steps", str(args.raft_steps),
                       "--cpt-steps", str(args.cpt_steps)] + \
                (["--memory-limit-gb", str(args.memory_limit_gb)] if args.memory_limit_gb else [])
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.stderr.write(done.stderr[-5000:])
                results["cells"].append({"cell": cell, "failed": done.returncode})
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            results["cells"].append(row)
            e = row["estimate"]
            print(f"{cell:10s} plan {row['micro_batch_size']}x{row['gradient_accumulation']}"
                  f"{' +gc' if row['gradient_checkpointing'] else ''}: estimate {row['estimate_gb']:.2f} GB "
                  f"(baseline {e['baseline_gb']:.2f} + optimizer {e['optimizer_gb']:.2f} + activations "
                  f"{e['activations_gb']:.2f}), measured {row['measured_peak_gb']:.2f} GB "
                  f"(rss at train begin {row['rss_at_train_begin_gb']:.2f}): {row['error_pct']:+.1f} %",
                  file=sys.stderr, flush=True)
            shutil_rmtree(workdir)
    measured = [row for row in results["cells"] if "error_pct" in row]
    results["all_within_target"] = bool(measured) and len(measured) == len(results["cells"]) and all(
        abs(row["error_pct"]) <= 100 * TARGET for row in measured)
    emit(results, args.out)


def shutil_rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
