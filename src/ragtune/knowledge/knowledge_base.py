"""The knowledge base of a workspace: its store, embedder, vector index, ingest and retrieval."""

from __future__ import annotations

from functools import cached_property

from ragtune.errors import RagtuneError
from ragtune.health.snapshots import take_snapshot
from ragtune.knowledge.embedder import Embedder
from ragtune.knowledge.ingest import IngestReport, Ingestor
from ragtune.knowledge.lexical import LexicalIndex
from ragtune.knowledge.retrieval import Retriever
from ragtune.knowledge.storage import open_store
from ragtune.knowledge.vectors import open_vector_index
from ragtune.process_memory import release_freed_memory
from ragtune.progress import ProgressReporter
from ragtune.workspace import Workspace


class KnowledgeBase:
    """Entry point for ingest, search and status of one workspace."""

    def __init__(self, workspace: Workspace):
        self.workspace = workspace
        self.config = workspace.config
        self.store = open_store(workspace)
        self.index = open_vector_index(workspace.index_dir, self.store)
        self.lexical = LexicalIndex(workspace.index_dir)

    @cached_property
    def embedder(self) -> Embedder:
        """The configured embedder, through the runtime the stored vectors came from: a query embedded another way
        would be compared with vectors from a different function."""
        name, runtime = self.config.models.embedder, self.config.models.embedder_runtime
        if not self.store.counts()["chunks"]:
            return Embedder(name, self.config.ingest.embed_batch_size, runtime)
        built_with = self.store.get_meta("embedder")
        built_runtime = self._embedded_through()
        rebuild = f"or delete {self.workspace.state_dir} and ingest again to re-embed every chunk"
        if built_with and built_with != name:
            raise RagtuneError(
                f"the knowledge base in {self.workspace.root} was embedded with '{built_with}', "
                f"but the configuration asks for '{name}'",
                f"set models.embedder: {built_with} in ragtune.yaml, {rebuild}")
        if runtime not in ("auto", built_runtime):
            raise RagtuneError(
                f"the knowledge base in {self.workspace.root} was embedded through the {built_runtime} runtime, "
                f"but models.embedder_runtime asks for {runtime}: queries must be embedded the way the chunks were",
                f"set models.embedder_runtime: auto (or {built_runtime}) in ragtune.yaml, {rebuild}")
        try:
            return Embedder(name, self.config.ingest.embed_batch_size, built_runtime)
        except RagtuneError as error:
            raise RagtuneError(f"the knowledge base in {self.workspace.root} was embedded through {built_runtime}, "
                               f"and {error.message}",
                               f"install what it needs (pip install -e . in the ragtune checkout), {rebuild}") from error

    def ingest(self, paths: list[str], *, prune: bool = False, json_text_field: str | None = None,
               sql_query: str | None = None, progress: ProgressReporter | None = None) -> IngestReport:
        """Add, update (and with `prune`, remove) sources; see `Ingestor.run`."""
        ingestor = Ingestor(self.store, self.embedder, self.config.chunking, self.config.ingest)
        self.store.set_meta("embedder", self.embedder.name)
        self.store.set_meta("embedder_runtime", self.embedder.runtime)
        report = ingestor.run(paths, prune=prune, json_text_field=json_text_field, sql_query=sql_query,
                              progress=progress)
        self._after_write()
        take_snapshot(self.store)
        release_freed_memory()  # parsed pages and embedding batches: a long-lived process need not keep their heap
        return report

    def delete_source(self, root: str, key: str) -> int:
        """Remove one source with its documents, chunks and index entries (nothing else); returns its chunk count."""
        chunks = sum(entry["chunks"] for entry in self.store.source_list()
                     if (entry["root"], entry["source"]) == (root, key))
        if self.store.delete_sources([(root, key)]):
            self._after_write()
        return chunks

    def _after_write(self) -> None:
        """The indexes beside the store brought up to date where the writer keeps them
        (StoreBase.writer_updates_indexes); elsewhere each reader catches up at its next search."""
        if self.store.writer_updates_indexes:
            self.sync_indexes()

    def retriever(self, **hooks) -> Retriever:
        """A retriever over this knowledge base (`reranker=`, `rewrite_query=` hooks optional)."""
        return Retriever(self.store, self.index, self.lexical, self.embedder, self.config.retrieval, **hooks)

    def status(self) -> dict:
        """Counts of sources, documents and chunks, index sizes and the models in use."""
        self.sync_indexes()
        counts = self.store.counts()
        return {
            "project": str(self.workspace.root),
            "store": self.store.describe(),
            **counts,
            "vector_index": self.index.describe(),
            "lexical_index": self.lexical.describe(),
            "models": {"embedder": self.store.get_meta("embedder") or self.config.models.embedder,
                       "embedder_runtime": self._embedded_through() if counts["chunks"] else None,
                       "generator": self.config.models.generator},
            "last_ingest": self.store.last_run(),
        }

    def _embedded_through(self) -> str:
        """The runtime the stored vectors came from (torch for knowledge bases from before runtimes were recorded)."""
        return self.store.get_meta("embedder_runtime") or "torch"

    def sync_indexes(self) -> None:
        """Bring the derived vector and lexical indexes in line with the store."""
        self.index.sync(self.store)
        self.lexical.sync(self.store)

    def close(self) -> None:
        self.store.close()
