"""Incremental, idempotent ingest: discover sources, skip the unchanged, clean, deduplicate, chunk, embed in
large batches, and write each batch of sources in one transaction; optionally prune sources that disappeared."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ragtune.config import ChunkingConfig, IngestConfig
from ragtune.errors import SourceError
from ragtune.knowledge.chunking import Chunker
from ragtune.knowledge.cleaning import NearDuplicateIndex, content_hash, garbled_reason, normalize_text
from ragtune.knowledge.embedder import Embedder
from ragtune.knowledge.sources import discover_sources
from ragtune.knowledge.store import KnowledgeStore
from ragtune.knowledge.store_base import PreparedDocument, StoredSource
from ragtune.knowledge.types import SourceItem
from ragtune.progress import ProgressReporter, SilentProgress

EMBED_BATCH_CHUNKS = 512  # chunks embedded (and sources committed) together


@dataclass
class IngestReport:
    """What one ingest run did, source by source."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # stored, gone from the directories given, kept without --prune
    skipped: list[dict] = field(default_factory=list)  # sources stored without a document: {source, status, reason}
    rejected: list[dict] = field(default_factory=list)
    unreadable_paths: list[str] = field(default_factory=list)  # paths given that could not be read at all
    skipped_documents: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    documents: int = 0
    chunks: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def failed(self) -> bool:
        """Whether the run should end in failure for a script: a path it was given could not be read at all, or
        every source it found was rejected. A rejected file among good ones is reported, not a failure."""
        usable = self.added or self.updated or self.unchanged or self.skipped
        return bool(self.unreadable_paths or (self.rejected and not usable))


@dataclass
class _PendingSource:
    item: SourceItem
    is_new: bool
    documents: list[PreparedDocument]
    skipped: list[str]  # why each of its documents that is not stored was left out

    def status(self) -> tuple[str, str | None]:
        """The source's status and note as stored: 'indexed'; 'duplicate' when every document duplicated another
        source's; 'skipped' when none was usable (garbled, empty)."""
        if self.documents:
            return "indexed", ("; ".join(self.skipped) or None)
        if self.skipped and all("duplicate of" in reason for reason in self.skipped):
            return "duplicate", "; ".join(self.skipped)
        return "skipped", "; ".join(self.skipped) or "no text"


class Ingestor:
    """Brings a knowledge store in line with a set of sources."""

    def __init__(self, store: KnowledgeStore, embedder: Embedder, chunking: ChunkingConfig, options: IngestConfig):
        self.store = store
        self.embedder = embedder
        self.options = options
        self.chunker = Chunker(embedder.tokenizer, min(chunking.chunk_tokens, embedder.max_tokens),
                               chunking.overlap_tokens)

    def run(self, paths: list[str], *, prune: bool = False, json_text_field: str | None = None,
            sql_query: str | None = None, progress: ProgressReporter | None = None) -> IngestReport:
        """Ingest `paths` (files, directories, JSON API URLs, database URLs with `sql_query`)."""
        started = time.perf_counter()
        progress = progress or SilentProgress()
        report = IngestReport()
        run_id = self.store.start_run()
        items, errors, report.unreadable_paths = discover_sources(
            paths, json_text_field=json_text_field or self.options.json_text_field, sql_query=sql_query,
            max_file_mb=self.options.max_file_mb)
        report.rejected.extend(_rejection(error) for error in errors)
        stored = self.store.sources()
        self._load_signatures()

        sources_task = progress.task("reading sources", len(items))
        chunks_task = progress.task("embedding chunks")
        with _Committer(self.store, report) as committer:
            self._read_and_embed(items, stored, report, sources_task, chunks_task, committer)

        gone = self._gone(paths, items, stored, errors)
        if prune:
            self.store.delete_sources(gone)
            report.removed = [key for _, key in gone]
        else:
            report.missing = [key for _, key in gone]
        report.seconds = time.perf_counter() - started
        self.store.finish_run(run_id, {k: v if isinstance(v, (int, float)) else len(v)
                                       for k, v in report.to_dict().items()})
        return report

    def _read_and_embed(self, items: list[SourceItem], stored: dict, report: IngestReport, sources_task,
                        chunks_task, committer: "_Committer") -> None:
        """Prepare the changed sources and embed them batch by batch; each batch is committed by `committer` while
        the next one is read and embedded."""
        pending: list[_PendingSource] = []
        pending_chunks = 0
        for item in items:
            previous = stored.get((item.root, item.key))
            if previous and previous.fingerprint == item.fingerprint:
                report.unchanged.append(item.key)
            else:
                if previous and previous.status == "rejected":
                    previous = None  # nothing of it was stored: reading it now adds it
                prepared = self._prepare(item, report, previous, committer)
                if prepared is not None:
                    pending.append(_PendingSource(item, previous is None, *prepared))
                    chunks = sum(len(d.chunks) for d in prepared[0])
                    chunks_task.add_total(chunks)
                    pending_chunks += chunks
                if pending_chunks >= EMBED_BATCH_CHUNKS:
                    committer.commit(*self._embed(pending, report, chunks_task))
                    pending, pending_chunks = [], 0
            sources_task.advance()
        if pending:
            committer.commit(*self._embed(pending, report, chunks_task))

    def _load_signatures(self) -> None:
        self.hash_owner: dict[str, tuple[str, str]] = {}
        self.near_duplicates = NearDuplicateIndex(self.options.near_duplicate_threshold)
        self.documents_of: dict[tuple[str, str], list[tuple[str, str]]] = {}  # source -> (label, hash)
        for root, key, part, digest, signature in self.store.document_signatures():
            self._remember((root, key), part, digest, signature)

    def _remember(self, source: tuple[str, str], part: str, digest: str, signature: bytes) -> None:
        label = f"{source[1]}#{part}" if part else source[1]
        self.hash_owner[digest] = source
        self.near_duplicates.add(label, signature)
        self.documents_of.setdefault(source, []).append((label, digest))

    def _forget(self, source: tuple[str, str]) -> None:
        for label, digest in self.documents_of.pop(source, []):
            self.near_duplicates.remove(label)
            self.hash_owner.pop(digest, None)

    def _prepare(self, item: SourceItem, report: IngestReport, previous: StoredSource | None,
                 committer: "_Committer") -> tuple[list[PreparedDocument], list[str]] | None:
        """Load, clean, deduplicate and chunk one source: (documents to store, why the others were left out); None
        when it cannot be read (recorded as rejected; a stored earlier version is kept)."""
        try:
            loaded = item.load()
        except SourceError as error:
            rejection = _rejection(error)
        except Exception as error:  # a parser bug must not take the batch down
            rejection = {"source": item.key, "reason": f"unexpected error: {error!r}",
                         "hint": "report this file to the ragtune maintainers"}
        else:
            rejection = None
        if rejection:
            report.rejected.append(rejection)
            committer.write(self.store.record_rejected, {"key": item.key, "root": item.root, "kind": item.kind,
                                                         "size_bytes": item.size_bytes, "note": rejection["reason"]},
                            keep_documents=previous is not None)
            return None
        report.warnings.extend({"source": item.key, "message": w} for w in loaded.warnings)
        source = (item.root, item.key)
        self._forget(source)
        prepared, skipped = [], []
        for raw in loaded.documents:
            where = f"{item.key}#{raw.part}" if raw.part else item.key
            text = normalize_text(raw.text)
            reason = garbled_reason(text, self.options.min_chars)
            digest = content_hash(text)
            signature = self.near_duplicates.signature(text) if reason is None else b""
            if reason is None and digest in self.hash_owner:
                reason = f"exact duplicate of {self.hash_owner[digest][1]}"
            if reason is None and (twin := self.near_duplicates.find(signature)):
                reason = f"near-duplicate of {twin}"
            if reason:
                report.skipped_documents.append({"source": where, "reason": reason})
                skipped.append(f"{raw.part}: {reason}" if raw.part else reason)
                continue
            self._remember(source, raw.part, digest, signature)
            raw.text = text
            prepared.append(PreparedDocument(raw, text, digest, signature, self.chunker.chunk(text)))
        return prepared, skipped

    def _embed(self, pending: list[_PendingSource], report: IngestReport, chunks_task
               ) -> tuple[list[_PendingSource], list[tuple[dict, list[PreparedDocument]]]]:
        """Embed the pending sources' chunks in one batch: (the sources, their rows as replace_sources takes them)."""
        documents = [d for p in pending for d in p.documents]
        texts = [c.text for d in documents for c in d.chunks]
        embed_started = time.perf_counter()
        vectors = self.embedder.encode(texts, on_batch=chunks_task.advance)
        report.embed_seconds += time.perf_counter() - embed_started
        offset = 0
        for document in documents:
            document.embeddings = vectors[offset:offset + len(document.chunks)]
            offset += len(document.chunks)
        batch = []
        for p in pending:
            status, note = p.status()
            batch.append(({"key": p.item.key, "root": p.item.root, "kind": p.item.kind,
                           "fingerprint": p.item.fingerprint, "size_bytes": p.item.size_bytes,
                           "status": status, "note": note, "modified_at": p.item.modified_at}, p.documents))
        return pending, batch

    @staticmethod
    def _gone(paths: list[str], items: list[SourceItem], stored: dict,
              errors: list[SourceError]) -> list[tuple[str, str]]:
        """Stored sources under the given directories that no longer exist there. A file or directory that could not
        be read this time (now over the size limit, unreadable, a directory that cannot be listed) is not gone:
        pruning must not delete it."""
        roots = {str(Path(p).expanduser().resolve()) for p in paths if Path(p).expanduser().is_dir()}
        present = {(item.root, item.key) for item in items}
        unread = {error.source for error in errors}  # keys or folders relative to their root; "." or a root: all

        def unread_now(root: str, key: str) -> bool:
            parts = key.split("/")
            return root in unread or "." in unread or any("/".join(parts[:depth]) in unread
                                                          for depth in range(1, len(parts) + 1))

        return [source for source in stored
                if source[0] in roots and source not in present and not unread_now(*source)]


class _Committer:
    """Commits embedded batches in order, one transaction each, on a thread of its own, so that the store's work
    (a database server's index maintenance above all) overlaps the embedding of the next batch. At most one batch
    is in flight: its commit is awaited (and its error raised) before the next starts, and at the end."""

    def __init__(self, store, report: IngestReport):
        self.store, self.report = store, report
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragtune-ingest-commit")
        self.in_flight = None

    def __enter__(self) -> "_Committer":
        return self

    def commit(self, pending: list[_PendingSource], batch: list[tuple[dict, list[PreparedDocument]]]) -> None:
        self.wait()
        self.in_flight = self.thread.submit(self._commit, pending, batch)

    def write(self, action, *args, **kwargs) -> None:
        """Another write to the store, after the batch in flight (one connection, one writer at a time)."""
        self.wait()
        action(*args, **kwargs)

    def wait(self) -> None:
        if self.in_flight is not None:
            in_flight, self.in_flight = self.in_flight, None
            in_flight.result()

    def _commit(self, pending: list[_PendingSource], batch: list[tuple[dict, list[PreparedDocument]]]) -> None:
        self.store.replace_sources(batch)
        report = self.report
        for (source, documents), p in zip(batch, pending):
            if p.documents:
                (report.added if p.is_new else report.updated).append(p.item.key)
            else:
                report.skipped.append({"source": p.item.key, "status": source["status"], "reason": source["note"]})
            report.documents += len(documents)
            report.chunks += sum(len(d.chunks) for d in documents)

    def __exit__(self, kind, error, trace) -> None:
        try:
            if kind is None:
                self.wait()
        finally:
            self.thread.shutdown(wait=True)  # a batch being committed when the run stops completes (or not) whole


def _rejection(error: SourceError) -> dict:
    return {"source": error.source, "reason": error.reason, "hint": error.hint}
