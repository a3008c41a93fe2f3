from ragtune.knowledge.chunking import Chunker, split_sentences


def test_sentences_respect_abbreviations():
    text = "Smith et al. found it. Dr. Who agreed, e.g. in 2020. Then it ended!"
    spans = [text[s:e] for s, e in split_sentences(text)]
    assert spans == ["Smith et al. found it.", "Dr. Who agreed, e.g. in 2020.", "Then it ended!"]


def test_chunks_fit_budget_and_overlap(embedder):
    sentences = [f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(80)]
    text = " ".join(sentences)
    chunker = Chunker(embedder.tokenizer, chunk_tokens=64, overlap_tokens=16)
    chunks = chunker.chunk(text)
    assert len(chunks) > 5
    assert all(c.token_count <= 64 for c in chunks)
    for previous, current in zip(chunks, chunks[1:]):
        assert current.start_char < previous.end_char, "consecutive chunks overlap"
        assert current.start_char > previous.start_char
    for chunk in chunks:
        assert text[chunk.start_char:chunk.end_char] == chunk.text
        assert chunk.text.startswith("Sentence") and chunk.text.endswith(".")


def test_headings_start_new_chunks(embedder):
    text = "# Intro\n\nShort intro. Two sentences.\n\n## Methods\n\nWe measured things. Carefully."
    chunks = Chunker(embedder.tokenizer, chunk_tokens=200, overlap_tokens=20).chunk(text)
    assert [c.heading for c in chunks] == ["Intro", "Methods"]
    assert chunks[1].text.startswith("## Methods")


def test_overlong_sentence_split_on_token_boundaries(embedder):
    text = " ".join(["immunofluorescence"] * 300)
    chunks = Chunker(embedder.tokenizer, chunk_tokens=50, overlap_tokens=0).chunk(text)
    assert len(chunks) > 1
    assert all(c.token_count <= 50 for c in chunks)
    assert all(c.text.startswith("immuno") for c in chunks)
