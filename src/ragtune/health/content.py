"""Content: what the chunks are made of (garbled, empty, oversized, boilerplate, languages, lengths), which documents
copy one another (near-duplicate chunks found by searching the vector index with a sample of chunks) and whether
such families of copies crowd the top results."""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from ragtune.config import ProjectConfig
from ragtune.health.findings import EXAMPLES, Finding
from ragtune.health.languages import language_of
from ragtune.knowledge.cleaning import garbled_reason
from ragtune.knowledge.store import KnowledgeStore
from ragtune.knowledge.vectors import VectorIndex

MIN_LINE_CHARS = 25  # shorter repeated lines ("Abstract", "Methods") are headings, not boilerplate
JUDGED_CHARS = 200  # shorter chunks (a heading, a caption) are too short to call garbled or a duplicate passage
CHUNK_MIN_LETTER_SHARE = 0.1  # a chunk of a readable document may be a table of numbers; junk has no letters
MAX_CANDIDATE_PAIRS = 20_000  # document pairs checked chunk by chunk for being copies
NEIGHBOURS = 6
CROWDED_QUESTIONS = 0.05  # a family crowding more than this share of questions is reported
LENGTH_BINS = 20


@dataclass
class Families:
    """Documents joined by near-duplicate chunks: `family[document id]` is its family's smallest document id."""

    family: dict[int, int]
    members: dict[int, list[int]]  # family id -> documents (only families of two or more)

    def of(self, document_id: int) -> int:
        return self.family.get(document_id, document_id)


def content_findings(store: KnowledgeStore, config: ProjectConfig, documents: dict[int, dict],
                     ) -> tuple[list[Finding], dict]:
    """Findings and measurements from one pass over the sources, chunks and documents (no index needed)."""
    findings = _source_findings(store)
    if not documents:
        findings.append(Finding("content", "empty", "info", "the knowledge base holds no documents yet",
                                "ingest some: ragtune ingest DIR --project PROJECT"))
    chunk_findings, metrics = _chunk_findings(store, config, documents)
    findings += chunk_findings
    findings += _boilerplate_findings(store, config, documents)
    return findings, metrics


def document_label(document: dict) -> str:
    """How findings name a document: its source key, with the part for a source of several documents."""
    return f"{document['source']}#{document['part']}" if document["part"] else document["source"]


def _label(documents: dict[int, dict], document_id: int) -> str:
    document = documents.get(document_id)
    return document_label(document) if document else f"document {document_id} (added during the check)"


def _source_findings(store: KnowledgeStore) -> list[Finding]:
    by_status = defaultdict(list)
    for source in store.source_list():
        by_status[source["status"]].append(source)
    findings = []
    if rejected := by_status["rejected"]:
        findings.append(Finding("content", "rejected_sources", "warning",
                                f"{len(rejected)} sources could not be read and are not searchable",
                                "fix or convert them as each reason says, then ingest again (they are retried)",
                                {"sources": len(rejected)}, [f"{s['source']}: {s['note']}" for s in rejected]))
    for status, why in (("skipped", "had no usable text (garbled or empty)"),
                        ("duplicate", "duplicated other sources and were not indexed again")):
        if sources := by_status[status]:
            findings.append(Finding("content", f"{status}_sources", "info", f"{len(sources)} sources {why}",
                                    "nothing, unless one of them should be searchable: then fix it at the origin",
                                    {"sources": len(sources)}, [f"{s['source']}: {s['note']}" for s in sources]))
    return findings


class _Examples:
    """A count and the first EXAMPLES examples (a check over 100,000 chunks keeps no more)."""

    def __init__(self):
        self.count, self.examples = 0, []

    def add(self, example: str) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(example)


def _chunk_findings(store: KnowledgeStore, config: ProjectConfig, documents: dict[int, dict],
                    ) -> tuple[list[Finding], dict]:
    garbled, oversized, lengths = _Examples(), _Examples(), []
    documents_with_text: dict[bytes, set[int]] = defaultdict(set)
    excerpt: dict[bytes, str] = {}
    limit = config.chunking.chunk_tokens
    for chunk_id, document_id, tokens, text in store.iter_chunks():
        lengths.append(tokens)
        reason = "empty" if not text.strip() else (
            garbled_reason(text, 1, min_letter_share=CHUNK_MIN_LETTER_SHARE) if len(text) >= JUDGED_CHARS else None)
        if reason:
            garbled.add(f"chunk {chunk_id} of {_label(documents, document_id)}: {reason}")
        if tokens > limit:
            oversized.add(f"chunk {chunk_id} of {_label(documents, document_id)}: {tokens} tokens")
        if len(text) >= JUDGED_CHARS:  # a heading repeated in many documents is no duplicate passage
            digest = hashlib.blake2b(" ".join(text.lower().split()).encode(), digest_size=12).digest()
            documents_with_text[digest].add(document_id)
            excerpt.setdefault(digest, text[:120])
    findings = []
    if garbled.count:
        findings.append(Finding("content", "garbled_chunks", "warning",
                                f"{garbled.count} chunks are empty or garbled", "fix their documents at the origin "
                                "(OCR, encoding, extraction) and ingest again", {"chunks": garbled.count},
                                garbled.examples))
    if oversized.count:
        findings.append(Finding("content", "oversized_chunks", "warning",
                                f"{oversized.count} chunks exceed chunking.chunk_tokens ({limit}): they were cut "
                                "under an older setting, and embedders truncate long input",
                                "delete .ragtune and ingest again, so every document is chunked the same way",
                                {"chunks": oversized.count, "limit": limit}, oversized.examples))
    repeated = sorted(((digest, docs) for digest, docs in documents_with_text.items() if len(docs) >= 2),
                      key=lambda item: -len(item[1]))
    if repeated:
        findings.append(Finding(
            "content", "duplicate_chunks", "warning",
            f"{len(repeated)} passages appear in more than one document ({sum(len(d) for _, d in repeated)} "
            "copies): identical passages compete for the same top results",
            "keep one copy of the shared text (remove it from the others, or the duplicated documents)",
            {"passages": len(repeated)},
            [f"in {len(docs)} documents ({', '.join(sorted(_label(documents, d) for d in docs)[:3])}): "
             f"{excerpt[digest]!r}" for digest, docs in repeated[:EXAMPLES]]))
    lengths = np.asarray(lengths)
    metrics = {"chunks": int(len(lengths))}
    if len(lengths):
        counts, edges = np.histogram(lengths, bins=LENGTH_BINS)
        metrics["token_lengths"] = {
            **{f"p{q}": float(np.percentile(lengths, q)) for q in (5, 50, 95)},
            "histogram": {"edges": edges.tolist(), "counts": counts.tolist()}}
    return findings, metrics


def _boilerplate_findings(store: KnowledgeStore, config: ProjectConfig, documents: dict[int, dict]) -> list[Finding]:
    """Lines repeated across many documents (footers, disclaimers, navigation)."""
    documents_per_line: Counter = Counter()
    text_of: dict[int, str] = {}
    for _, text in store.iter_documents():
        for line in {" ".join(line.split()) for line in text.splitlines()}:
            if len(line) >= MIN_LINE_CHARS:
                key = hash(line)
                documents_per_line[key] += 1
                if documents_per_line[key] == 2:  # only the text of repeated lines is kept
                    text_of[key] = line[:120]
    minimum = max(config.health.boilerplate_documents, math.ceil(config.health.boilerplate_share * len(documents)))
    common = sorted(((key, count) for key, count in documents_per_line.items() if count >= minimum),
                    key=lambda item: -item[1])
    if not common:
        return []
    return [Finding("content", "boilerplate", "warning",
                    f"{len(common)} lines repeat in {minimum} or more of the {len(documents)} documents "
                    "(footers, disclaimers, navigation): they make unrelated documents look alike",
                    "remove them at the origin or before ingest, then ingest again",
                    {"lines": len(common), "most_documents": common[0][1]},
                    [f"in {count} documents: {text_of[key]!r}" for key, count in common[:EXAMPLES]])]


def sample_chunk_ids(store: KnowledgeStore, size: int, seed: int = 0) -> np.ndarray:
    """A random sample of at most `size` chunk ids, ascending."""
    ids = store.chunk_ids()
    if len(ids) <= size:
        return ids
    return np.sort(np.random.default_rng(seed).choice(ids, size=size, replace=False))


def near_duplicate_findings(store: KnowledgeStore, index: VectorIndex, config: ProjectConfig,
                            documents: dict[int, dict], document_of: dict[int, int], sample: list,
                            ) -> tuple[list[Finding], Families, dict]:
    """Near-duplicate chunks of different documents, found by searching the index with each sampled chunk (rows of
    chunk id, document id, tokens, text, embedding), and the families of documents that copy one another: a pair
    found that way is compared chunk by chunk, and joins a family when `health.family_overlap` of the shorter one's
    chunks have a near-copy in the other (a shared disclaimer does not make two documents copies)."""
    threshold = config.health.near_duplicate_similarity
    copied_chunks, pairs, examples = set(), set(), []
    if sample:
        vectors = np.stack([row[4] for row in sample])
        for row, hits in zip(sample, index.search(vectors, NEIGHBOURS)):
            for chunk_id, similarity in hits:
                other = document_of.get(chunk_id)
                if other is not None and other != row[1] and similarity >= threshold:
                    copied_chunks.add(row[0])
                    pair = (min(row[1], other), max(row[1], other))
                    if pair not in pairs and len(examples) < EXAMPLES:
                        examples.append(f"{_label(documents, row[1])} ~ {_label(documents, other)} "
                                        f"(cosine {similarity:.3f}): {row[3][:100]!r}")
                    pairs.add(pair)
    families = _families(store, sorted(pairs)[:MAX_CANDIDATE_PAIRS], threshold, config.health.family_overlap)
    findings = []
    if families.members:
        findings.append(Finding(
            "content", "near_duplicate_documents", "warning",
            f"{len(families.members)} groups of documents are near-copies of one another (archived copies, "
            "versions): their copies split and crowd the top results",
            "keep one version of each group (see the superseded documents under freshness) and ingest with --prune",
            {"groups": len(families.members), "documents": sum(map(len, families.members.values()))},
            [" ~ ".join(_label(documents, d) for d in group) for group in families.members.values()]))
    elif copied_chunks:
        findings.append(Finding("content", "near_duplicate_chunks", "info",
                                f"{len(copied_chunks)} of {len(sample)} sampled chunks have a near-copy in another "
                                "document", "nothing, unless the copies are unintended: then remove one of them",
                                {"chunks": len(copied_chunks), "sampled": len(sample)}, examples))
    languages = [language_of(row[3]) for row in sample]
    metrics = {"sampled_chunks": len(sample), "chunks_with_near_copies": len(copied_chunks),
               "families": len(families.members),
               "languages": dict(Counter(language or "unknown" for language in languages).most_common())}
    findings += _language_findings(config, languages, sample)
    return findings, families, metrics


def _families(store: KnowledgeStore, pairs: list[tuple[int, int]], threshold: float, overlap: float) -> Families:
    """Group the document pairs that are copies (see near_duplicate_findings) into families (union-find)."""
    embeddings = store.document_embeddings({d for pair in pairs for d in pair}) if pairs else {}
    parent: dict[int, int] = {}

    def root(document: int) -> int:
        while parent.get(document, document) != document:
            document = parent[document]
        return document

    for first, second in pairs:
        if first not in embeddings or second not in embeddings:
            continue  # removed while the check ran
        similarity = embeddings[first] @ embeddings[second].T
        shared = max((similarity.max(axis=1) >= threshold).mean(), (similarity.max(axis=0) >= threshold).mean())
        if shared >= overlap:
            a, b = root(first), root(second)
            if a != b:
                parent[max(a, b)] = min(a, b)
    members = defaultdict(list)
    for document in set(parent) | set(parent.values()):
        members[root(document)].append(document)
    return Families({d: family for family, group in members.items() for d in group},
                    {family: sorted(group) for family, group in members.items()})


def _language_findings(config: ProjectConfig, languages: list[str | None], sample: list) -> list[Finding]:
    """A mix of languages among the sampled chunks (`languages`: each one's language, None where unsure)."""
    known = Counter(language for language in languages if language)
    if not known:
        return []
    main = max(known, key=known.get)
    others = {language: count for language, count in known.items() if language != main}
    share = sum(others.values()) / max(len(sample), 1)
    if share < config.health.language_share:
        return []
    examples = [f"{language}: {row[3][:100]!r}" for row, language in zip(sample, languages) if language in others]
    return [Finding("content", "language_mix", "warning",
                    f"{share:.0%} of the sampled chunks are not in {main} ({', '.join(others)}): the embedder "
                    f"'{config.models.embedder}' may place them poorly",
                    "use a multilingual embedder (models.embedder), or keep one knowledge base per language",
                    {"main_language": main, "other_languages": others, "share": round(share, 4)}, examples)]


def crowding_findings(index: VectorIndex, config: ProjectConfig, documents: dict[int, dict], families: Families,
                      queries: np.ndarray, query_ids: list[int] | None, document_of: dict[int, int],
                      source: str) -> tuple[list[Finding], dict]:
    """Questions whose top results one family of near-copies mostly holds. `queries` are question embeddings, or
    sampled chunks' (then `query_ids` are their chunk ids, left out of their own results)."""
    if not families.members or not len(queries):
        return [], {"crowding": {"crowded_questions": 0, "questions": int(len(queries)), "from": source}}
    k = max(config.retrieval.k, 1)
    crowded = Counter()
    results = index.search(queries, k + 1)
    for position, hits in enumerate(results):
        hits = [h for h in hits if query_ids is None or h[0] != query_ids[position]][:k]
        holders = Counter(families.of(document_of[chunk]) for chunk, _ in hits if chunk in document_of)
        if holders:
            family, slots = holders.most_common(1)[0]
            if family in families.members and slots >= config.health.crowded_share * len(hits):
                crowded[family] += 1
    metrics = {"crowding": {"crowded_questions": sum(crowded.values()), "questions": len(queries), "from": source}}
    findings = []
    for family, count in crowded.most_common():
        if count / len(queries) < CROWDED_QUESTIONS:
            break
        names = [_label(documents, d) for d in families.members[family]]
        findings.append(Finding(
            "content", "crowding", "warning",
            f"one group of near-copies ({len(names)} documents) holds most of the top {k} results for "
            f"{count / len(queries):.0%} of {source}", "keep one of these documents and ingest with --prune, so other "
            "documents can reach the top results", {"questions": count, "of": len(queries), "documents": len(names)},
            names))
    return findings, metrics
