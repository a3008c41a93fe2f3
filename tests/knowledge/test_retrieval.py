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
