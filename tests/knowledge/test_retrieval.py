from ragtune.knowledge.retrieval import reciprocal_rank_fusion


def test_rrf_hand_computed():
    dense = [(1, 0.9), (2, 0.8), (3, 0.1)]
    lexical = [(3, 12.0), (1, 5.0)]
    fused = reciprocal_rank_fusion([dense, lexical], k=3, rrf_k=60)
    expected = {1: 1 / 61 + 1 / 62, 2: 1 / 62, 3: 1 / 63 + 1 / 61}
    assert [i for i, _ in fused] == [1, 3, 2]
    for chunk_id, score in fused:
        assert abs(score - expected[chunk_id]) < 1e-12


def test_weighted_rrf():
    fused = reciprocal_rank_fusion([[(1, 0.9), (2, 0.8)], [(2, 3.0), (1, 1.0)]], k=2, rrf_k=1, weights=[1, 2])
    assert fused == [(2, 1 / 3 + 2 / 2), (1, 1 / 2 + 2 / 3)]


def test_modes_find_the_relevant_document(project, corpus):
    project.ingest([str(corpus)])
    for mode in ("dense", "lexical", "hybrid"):
        hits = project.search("Which volcano is the tallest in the solar system?", k=2, mode=mode)
        assert hits[0].source == "space/mars.txt", mode
        assert len(hits) <= 2
    semantic = project.search("feline nutrition needs", k=1, mode="dense")
    assert semantic[0].source == "animals/cats.md"


def test_source_glob_filter(project, corpus):
    project.ingest([str(corpus)])
    for mode in ("dense", "lexical", "hybrid"):
        hits = project.search("Moon walk Armstrong fifteen", k=5, mode=mode, source_glob="animals/*")
        assert hits and all(h.source.startswith("animals/") for h in hits), mode


def test_batch_search_equals_single(project, corpus):
    project.ingest([str(corpus)])
    queries = ["cats sleep", "wolves domesticated", "iron oxide"]
    batch = project.search_batch(queries, k=3)
    single = [project.search(q, k=3) for q in queries]
    assert [[h.chunk_id for h in hits] for hits in batch] == [[h.chunk_id for h in hits] for hits in single]


def test_reranker_and_rewrite_hooks(project, corpus):
    project.ingest([str(corpus)])

    class Reverse:
        def rerank(self, query, hits):
            return list(reversed(hits))

    plain = project.kb.retriever().search("Mars volcano", k=3, mode="dense")
    reranked = project.kb.retriever(reranker=Reverse()).search("Mars volcano", k=3, mode="dense")
    assert reranked[0].chunk_id != plain[0].chunk_id
    rewritten = project.kb.retriever(rewrite_query=lambda q: "Neil Armstrong").search("xyz", k=1, mode="lexical")
    assert rewritten[0].source == "space/moon.html"


def test_empty_knowledge_base_and_k_zero(project):
    assert project.search("anything", k=5) == []
    assert project.search("anything", k=0) == []


POLICIES = [
    {"id": "leave", "department": "HR", "year": 2024, "public": True,
     "text": "Annual leave: every employee has 25 days of paid holiday a year, booked with their manager."},
    {"id": "parental", "department": "HR", "year": 2023, "public": False,
     "text": "Parental leave lasts 16 weeks at full pay for either parent."},
    {"id": "laptops", "department": "IT", "year": 2024, "public": True,
     "text": "Laptops are replaced every four years; request a new laptop through the IT portal."},
    {"id": "passwords", "department": "IT", "year": 2023, "public": False,
     "text": "Passwords must be 14 characters long and are never shared, not even with IT."},
]


def test_metadata_filters_are_executed_by_each_backend(project, tmp_path):
    import json

    import pytest

    from ragtune.errors import RagtuneError
    from ragtune.knowledge.types import ChunkFilter

    policies = tmp_path / "policies.jsonl"
    policies.write_text("".join(json.dumps(record) + "\n" for record in POLICIES))
    project.ingest([str(policies)])
    texts = {record["id"]: record["text"] for record in POLICIES}

    def found(metadata, mode="hybrid", source_glob=None) -> set[str]:
        hits = project.search("leave laptops passwords holiday", k=10, mode=mode, source_glob=source_glob,
                              metadata=metadata)
        return {name for name, text in texts.items() if any(hit.text == text for hit in hits)}

    for mode in ("dense", "lexical", "hybrid"):
        assert found({"department": "HR"}, mode) == {"leave", "parental"}
        assert found({"year": 2024, "public": True}, mode) == {"leave", "laptops"}
        assert found({"public": False, "department": "IT"}, mode) == {"passwords"}
    assert found({"year": "2024"}) == set()  # compared as JSON values: the string is not the number
    assert found({"year": 2024.0}) == {"leave", "laptops"}  # a number is a number
    assert found({"department": "HR"}, source_glob="other*") == set()
    assert found({"department": "HR"}, source_glob="polic*") == {"leave", "parental"}
    assert found({"department": "Finance"}) == set()
    assert project.kb.store.chunk_ids_matching(ChunkFilter(metadata={"department": "IT"})).size == 2
    with pytest.raises(RagtuneError, match="not a metadata key"):
        project.search("leave", metadata={"dept name'); DROP TABLE chunks; --": "HR"})
    with pytest.raises(RagtuneError, match="not a string, number or boolean"):
        project.search("leave", metadata={"department": ["HR", "IT"]})
    for number in (float("nan"), float("inf"), 2**70):
        with pytest.raises(RagtuneError, match="not a number a document can hold"):
            project.search("leave", metadata={"year": number})
    if project.kb.store.backend == "postgresql":  # the database runs the filter inside its vector search
        project.kb.store.chunk_ids_matching = None  # never asked for the ids: calling it would fail
        assert found({"department": "HR"}, mode="dense") == {"leave", "parental"}


def test_the_cli_reads_metadata_conditions(project, tmp_path):
    import json

    import pytest
    from typer.testing import CliRunner

    from ragtune.cli import app, metadata_filter
    from ragtune.errors import RagtuneError

    assert metadata_filter(["department=HR", "year=2024", "public=true", "ratio=0.5"]) == \
        {"department": "HR", "year": 2024, "public": True, "ratio": 0.5}
    assert metadata_filter(['year="2024"', "zip=02134", "count=1_000", "x=nan"]) == \
        {"year": "2024", "zip": "02134", "count": "1_000", "x": "nan"}
    with pytest.raises(RagtuneError, match="expected KEY=VALUE"):
        metadata_filter(["department"])
    policies = tmp_path / "policies.jsonl"
    policies.write_text("".join(json.dumps(record) + "\n" for record in POLICIES))
    project.ingest([str(policies)])
    result = CliRunner().invoke(app, ["search", "leave laptops passwords", "--where", "department=IT", "--where",
                                      "public=false", "--json", "--project", str(project.workspace.root)])
    assert result.exit_code == 0, result.output
    assert [hit["text"] for hit in json.loads(result.output)] == [POLICIES[3]["text"]]
