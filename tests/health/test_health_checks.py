"""Every health check on real documents and the packaged embedder: a clean corpus raises no warning, a corpus with
one defect of each kind planted has each one found and named, drift is seen on a shifted corpus only, and served
traffic (answers, feedback, questions outside the documents) shows up as coverage gaps and feedback."""

from __future__ import annotations

import json
import sqlite3
import time
from http.server import BaseHTTPRequestHandler

import numpy as np
import pytest
from health_corpora import DISHES, covid_corpus, off_topic_documents, planted_corpus

from ragtune.demo import demo_questions
from ragtune.errors import RagtuneError
from ragtune.health.drift import mmd_test
from ragtune.health.report import check_health
from ragtune.health.snapshots import take_snapshot
from ragtune.knowledge.knowledge_base import KnowledgeBase
from ragtune.knowledge.store import SCHEMA_VERSION, KnowledgeStore
from ragtune.project import Project
from ragtune.rag import Answer
from ragtune.serve.answer_log import AnswerLog

OUT_OF_DOCUMENTS = ["What is the capital of Australia?", "How do I reset my router password?",
                    "Who won the 1998 football world cup?", "What is a good recipe for banana bread?"]


@pytest.fixture(scope="module")
def open_project(embedder):
    """Open a project that reuses the session's embedder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(KnowledgeBase, "embedder", embedder, raising=False)
        opened = []

        def open_(root, overrides=None):
            opened.append(Project(root, overrides))
            return opened[-1]

        yield open_
        for project in opened:
            project.close()


@pytest.fixture(scope="module")
def clean(tmp_path_factory, open_project):
    root = tmp_path_factory.mktemp("clean")
    project = open_project(root / "project")
    project.ingest([str(covid_corpus(root / "docs"))])
    return project


@pytest.fixture(scope="module")
def planted(tmp_path_factory, open_project):
    root = tmp_path_factory.mktemp("planted")
    docs, defects = planted_corpus(root / "docs")
    project = open_project(root / "project")
    project.ingest([str(docs)])
    (docs / defects["gone"]).unlink()
    # chunked at 200 tokens; a smaller setting now makes the long chunks oversized; 3 French chunks in 250 a mix
    reopened = open_project(root / "project", {"chunking": {"chunk_tokens": 190}, "health": {"language_share": 0.01}})
    return check_health(reopened), defects


def by_check(report) -> dict:
    """The report's findings by check (the last one where a check found several things)."""
    return {finding.check: finding for finding in report.findings}


def test_a_clean_corpus_raises_no_warning(clean):
    report = check_health(clean)
    assert report.at_least("warning") == [], [f.title for f in report.at_least("warning")]
    assert report.counts["documents"] == 13 and report.metrics["content"]["languages"].get("en", 0) > 200
    assert report.metrics["consistency"]["vector_index"]["entries"] == report.counts["chunks"]


@pytest.mark.parametrize("check, planted_key", [
    ("rejected_sources", "rejected"), ("skipped_sources", "skipped"), ("garbled_chunks", "garbled_chunk"),
    ("boilerplate", "boilerplate"), ("language_mix", None), ("near_duplicate_documents", "superseded"),
    ("superseded_documents", "superseded"), ("crowding", "superseded"), ("stale_documents", "stale"),
    ("gone_from_origin", "gone"), ("oversized_chunks", None)])
def test_each_planted_defect_is_found_and_named(planted, check, planted_key):
    report, defects = planted
    findings = [finding for finding in report.findings if finding.check == check]
    assert findings, f"{check} not found; found {sorted(by_check(report))}"
    assert all(f.severity in ("warning", "info") and f.action and f.evidence for f in findings)
    examples = [example for finding in findings for example in finding.examples]
    if planted_key:
        assert any(defects[planted_key] in example for example in examples), examples
    finding = findings[0]
    if check == "superseded_documents":
        assert any(example.startswith(defects["superseded"]) and defects["current"] in example
                   for example in examples)
    if check == "language_mix":
        assert finding.evidence["other_languages"].keys() == {"fr"}


def test_the_store_and_its_indexes_out_of_step_are_errors(project, corpus):
    project.ingest([str(corpus)])
    assert [f for f in check_health(project).findings if f.area == "consistency"] == []
    store = project.kb.store
    store.db.execute("DELETE FROM chunks WHERE id = (SELECT MIN(id) FROM chunks)")  # behind the indexes' back
    found = by_check(check_health(project))
    assert found["index_out_of_step"].severity == "error" and found["index_out_of_step"].evidence["orphans"] == 1
    store.set_meta("embedder", "another-model")
    report = check_health(project)
    assert by_check(report)["embedder_mismatch"].severity == "error" and report.status == "error"
    assert "embedder_error" in report.metrics["consistency"] or report.metrics["traffic"]["answers"] == 0


def test_a_stale_index_is_information_and_the_next_search_mends_it(project, corpus):
    project.ingest([str(corpus)])
    project.kb.store.db.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
    assert by_check(check_health(project))["index_stale"].severity == "info"
    assert "index_stale" not in by_check(check_health(project))  # health's own search synced it


def test_an_older_store_is_migrated_and_a_newer_one_refused(tmp_path):
    path = tmp_path / "kb.sqlite"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     "INSERT INTO meta VALUES ('schema_version', '1'), ('generation', '3');"
                     "CREATE TABLE sources (id INTEGER PRIMARY KEY, key TEXT NOT NULL, root TEXT NOT NULL, kind TEXT "
                     "NOT NULL, fingerprint TEXT NOT NULL, size_bytes INTEGER NOT NULL DEFAULT 0, status TEXT NOT "
                     "NULL, note TEXT, ingested_at REAL NOT NULL, UNIQUE (root, key));"
                     "INSERT INTO sources (key, root, kind, fingerprint, status, ingested_at) "
                     "VALUES ('a.txt', '/r', 'text', 'f', 'indexed', 1.0);")
    db.commit()
    db.close()
    store = KnowledgeStore(path)
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION) and store.generation == 3
    assert store.source_list()[0]["modified_at"] is None and store.snapshots() == []
    store.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    store.close()
    with pytest.raises(RagtuneError, match="newer ragtune"):
        KnowledgeStore(path)


def test_drift_is_found_on_a_shifted_corpus_not_on_a_fresh_sample(clean, tmp_path):
    store = clean.kb.store
    assert take_snapshot(store) is False  # the ingest took one of this generation already
    snapshots = store.snapshots()
    assert len(snapshots) == 1 and "drift_mmd" not in check_health(clean).series
    # fresh samples of the same corpus: false alarms near the nominal 5 %
    _, embeddings = store.embeddings()
    rng = np.random.default_rng(0)
    alarms = [mmd_test(embeddings[rng.choice(len(embeddings), 80, replace=False)],
                       embeddings[rng.choice(len(embeddings), 80, replace=False)], permutations=200, seed=s).drifted
              for s in range(40)]
    assert np.mean(alarms) <= 0.125
    clean.ingest([str(off_topic_documents(tmp_path / "recipes"))])  # a corpus shifted towards cooking
    report = check_health(clean)
    drift = by_check(report)["corpus_drift"]
    assert drift.severity == "warning" and drift.evidence["p_value"] < 0.05
    assert any("cook" in example.lower() or "serve" in example.lower() for example in drift.examples)
    assert len(report.series["drift_mmd"]) == 1


def _answer(project, question: str, feedback: str | None = None) -> tuple[str, Answer]:
    hits = project.search(question, k=3)
    return question, Answer(answer="An answer [1].", citations=[{"number": 1, "source": hits[0].source,
                                                                   "chunk_id": hits[0].chunk_id}],
                            passages=hits, timings={"total_s": 1.5, "prompt_tokens": 100, "completion_tokens": 20})


def test_served_traffic_coverage_gaps_and_feedback(clean, tmp_path):
    log = AnswerLog(clean.kb.store.path)
    questions = [q["question"] for q in demo_questions(20)] + OUT_OF_DOCUMENTS
    for number, question in enumerate(questions):
        _, answer = _answer(clean, question)
        log.record(f"r{number}", "smollm2-135m", "rag", [{"role": "user", "content": question}], answer)
    log.add_feedback("r20", "down", "nothing about Australia here")
    log.add_feedback("r0", "up", None)
    log.close()
    report = check_health(clean)
    found = by_check(report)
    gaps = found["coverage_gaps"]
    assert gaps.evidence["questions"] >= len(OUT_OF_DOCUMENTS) - 1 and gaps.evidence["of"] == len(questions)
    assert sum(any(q in example for example in gaps.examples) for q in OUT_OF_DOCUMENTS) >= 3
    assert gaps.evidence["questions"] <= len(OUT_OF_DOCUMENTS) + 3  # few answerable questions taken for gaps
    down = found["thumbs_down"]
    assert down.evidence == {"down": 1, "recent_rated": 2} and "nothing about Australia here" in down.examples[0]
    traffic = report.metrics["traffic"]
    assert traffic["answers"] == len(questions) and traffic["latency_p95_s"] == pytest.approx(1.5)
    assert traffic["no_citation_share"] == 0 and report.series["answers"][0][1] == len(questions)
    assert report.metrics["coverage"]["never_retrieved_share"] > 0


def test_probe_recall_is_recorded_at_every_run(clean, tmp_path):
    probe = tmp_path / "probe.jsonl"
    probe.write_text("\n".join(f'{{"question": "{q["question"]}", "source": "{q["source"]}"}}'
                               for q in demo_questions(15)), encoding="utf-8")
    first = check_health(clean, probe_set=probe)
    time.sleep(0.01)
    second = check_health(clean, probe_set=probe)
    recall = second.metrics["coverage"]["recall_at_5"]
    assert 0.6 <= recall <= 1 and len(second.series["probe_recall"]) == 2
    assert first.metrics["coverage"]["recall_at_5"] == recall
    probe.write_text('{"question": "What?"}\n', encoding="utf-8")
    with pytest.raises(RagtuneError, match=r"probe.jsonl:1: field 'source'"):
        check_health(clean, probe_set=probe)


class _Notes(BaseHTTPRequestHandler):
    """A JSON API of notes that can be withdrawn (then it answers 404)."""

    withdrawn = False

    def do_GET(self):  # noqa: N802 (http.server API)
        notes = [{"id": 1, "text": "Masks must be worn in every ward of the hospital, by staff and visitors alike."}]
        self.send_response(404 if self.withdrawn else 200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(notes).encode())

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


def test_a_url_source_that_fails_is_gone_from_its_origin(project, loopback):
    url = f"{loopback(_Notes)}/notes"
    project.ingest([url])
    assert "gone_from_origin" not in by_check(check_health(project))
    _Notes.withdrawn = True
    gone = by_check(check_health(project))["gone_from_origin"]
    assert gone.examples == [f"{url}: HTTP 404"] and gone.severity == "warning"


def test_questions_that_move_to_another_subject_are_query_drift(clean):
    log = AnswerLog(clean.kb.store.path)
    before = [q["question"] for q in demo_questions(60)[20:50]]
    after = [f"How long should I bake the {dish} for {n} people?" for n in (2, 4) for dish in DISHES][:30]
    for number, question in enumerate(before + after):
        _, answer = _answer(clean, question)
        log.record(f"drift{number}", "smollm2-135m", "rag", [{"role": "user", "content": question}], answer)
    log.close()
    report = check_health(clean)
    drift = by_check(report)["query_drift"]
    assert drift.area == "drift" and drift.evidence["p_value"] < 0.05
    assert report.metrics["coverage"]["query_drift"]["drifted"]
