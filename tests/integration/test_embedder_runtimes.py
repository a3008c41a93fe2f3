"""The OpenVINO runtime on the real packaged embedder retrieves what the packaged torch model retrieves."""

from __future__ import annotations

import pytest

from ragtune.demo import demo_corpus_dir, demo_questions
from ragtune.project import Project

pytestmark = pytest.mark.integration


def test_openvino_runtime_finds_the_same_top_hit_as_torch(tmp_path):
    questions = [row["question"] for row in demo_questions()]
    top_hits = {}
    for runtime in ("torch", "openvino"):
        project = Project(tmp_path / runtime, {"models": {"embedder_runtime": runtime},
                                               "retrieval": {"mode": "dense"}})
        project.ingest([str(demo_corpus_dir())])
        assert project.status()["models"]["embedder_runtime"] == runtime
        top_hits[runtime] = [hits[0].chunk_id for hits in project.search_batch(questions, k=1)]
        project.close()
    same = sum(a == b for a, b in zip(top_hits["torch"], top_hits["openvino"])) / len(questions)
    assert len(questions) >= 100 and same >= 0.95, f"same top hit for {same:.1%} of {len(questions)} questions"
