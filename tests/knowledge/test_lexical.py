"""The BM25 index's own build gives bm25s's scores, so every ranking stays bm25s's."""

from __future__ import annotations

import bm25s
import numpy as np
from scipy import sparse

from ragtune.knowledge.lexical import FastBuildBM25, tokenize

TEXTS = ["Mauna Kea is the tallest volcano when measured from its base on the ocean floor.",
         "The volcano Mauna Loa erupted in 2022; its lava flows reached the saddle road.",
         "Coronaviruses are enveloped RNA viruses; the spike protein binds the ACE2 receptor.",
         "", "volcano volcano volcano: a text that repeats one term to test term frequency."]


def score_matrix(model: bm25s.BM25) -> np.ndarray:
    scores = model.scores
    return sparse.csc_matrix((scores["data"], scores["indices"], scores["indptr"]),
                             shape=(scores["num_docs"], len(scores["indptr"]) - 1)).toarray()


def test_the_sparse_build_scores_as_bm25s_does_on_text_and_on_random_term_ids():
    rng = np.random.default_rng(0)
    random_ids = [rng.integers(0, 300, size=rng.integers(0, 60)).tolist() for _ in range(400)]
    for corpus in (tokenize(TEXTS, as_ids=True), (random_ids, {str(i): i for i in range(300)})):
        reference, fast = bm25s.BM25(), FastBuildBM25()
        reference.index(corpus, show_progress=False)
        fast.index(corpus, show_progress=False)
        expected, built = score_matrix(reference), score_matrix(fast)
        assert np.count_nonzero(expected) > len(expected)  # documents share terms: IDF and length norms matter
        # bm25s leaves out trailing terms no document holds (the empty token); those columns are empty here
        np.testing.assert_allclose(built[:, :expected.shape[1]], expected, rtol=1e-6)
        assert not built[:, expected.shape[1]:].any()
        assert fast.vocab_dict == reference.vocab_dict


def test_repeated_terms_count_as_term_frequency():
    fast = FastBuildBM25()
    fast.index(tokenize(TEXTS, as_ids=True), show_progress=False)
    volcano = fast.get_scores([("volcano")])
    assert volcano.argmax() == 4 and volcano[2] == 0 and volcano[3] == 0
