"""Typed project configuration: built-in defaults < the project's ragtune.yaml < command-line overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragtune.errors import RagtuneError

CONFIG_FILE = "ragtune.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChunkingConfig(_Section):
    chunk_tokens: int = Field(200, ge=16, description="Maximum tokens per chunk (embedder tokenizer).")
    overlap_tokens: int = Field(40, ge=0, description="Tokens repeated between consecutive chunks.")


class IngestConfig(_Section):
    json_text_field: str = "text"
    near_duplicate_threshold: float = Field(0.9, gt=0, le=1, description="MinHash Jaccard for near-duplicates.")
    min_chars: int = Field(20, ge=1, description="Documents shorter than this are reported as empty.")
    max_file_mb: float = Field(200, gt=0, description="Files larger than this are rejected.")
    embed_batch_size: int = Field(64, ge=1)


class RetrievalConfig(_Section):
    mode: Literal["dense", "lexical", "hybrid"] = "hybrid"
    k: int = Field(5, ge=0)
    # Fusion defaults measured on COVID-QA (BENCHMARKS.md): the classic rrf_k=60 with equal weights made hybrid
    # worse than lexical alone; a small constant with lexical counted twice beats both retrievers.
    rrf_k: int = Field(1, ge=0, description="Reciprocal-rank-fusion constant.")
    dense_weight: float = Field(1.0, ge=0, description="Weight of the dense ranking in the fusion.")
    lexical_weight: float = Field(2.0, ge=0, description="Weight of the lexical ranking in the fusion.")
    candidates: int = Field(50, ge=1, description="Hits taken from each retriever before fusion.")
    query_from: str = Field("last-user-turn", pattern=r"^(last-user-turn|recent-user-turns|[\w.]+:\w+)$",
                            description="How a conversation becomes the retrieval query: last-user-turn, "
                                        "recent-user-turns (the last three user messages joined, so a follow-up "
                                        "such as 'and in children?' keeps its subject), or package.module:function, "
                                        "a function of the messages returning the query.")


class ModelsConfig(_Section):
    generator: str = "smollm2-135m"
    embedder: str = "minilm-l6"
    embedder_runtime: Literal["auto", "openvino", "torch"] = Field(
        "auto", description="How the embedder runs: auto takes OpenVINO where it is faster here and matches the "
                            "original (checked once), torch is sentence-transformers as packaged. A knowledge base "
                            "keeps the runtime it was embedded with.")


# Chat decoding: small greedy models loop; this penalty, chosen on the bundled questions by repeated n-grams and F1
# (benchmarks/bench_chat_decoding.py, BENCHMARKS.md), is the chat default of `ragtune serve` and `ragtune ask` for the
# engines ragtune runs itself (models.base.chat_repetition_penalty). `compare` decodes without it
# (generation.repetition_penalty, 1 by default), as every strategy is measured alike.
CHAT_REPETITION_PENALTY = 1.1


class GenerationSettings(_Section):
    max_new_tokens: int = Field(160, ge=1)
    temperature: float = Field(0.0, ge=0)
    repetition_penalty: float = Field(1.0, ge=1.0, le=2.0, description="Above 1 discourages repeating tokens "
                                      "(`ragtune serve` and `ask` set their own chat default); the same for every "
                                      "strategy.")
    context_tokens: int = Field(2048, ge=256, description="Model context window used for prompts.")


class HealthConfig(_Section):
    """Thresholds of `ragtune health`; the defaults were measured on the bundled COVID-QA corpus (BENCHMARKS.md)."""

    stale_after_days: float = Field(365, gt=0, description="Documents not modified for longer are reported stale.")
    near_duplicate_similarity: float = Field(0.9, gt=0, le=1, description="Cosine similarity at which chunks of "
                                             "two documents count as near-duplicates (minilm-l6: at most 0.81 between "
                                             "different COVID-QA articles, 0.94 median for an edited copy's chunks).")
    family_overlap: float = Field(0.3, gt=0, le=1, description="Share of a document's chunks near-duplicated in "
                                  "another that makes the two one family (copies, versions).")
    crowded_share: float = Field(0.6, gt=0, le=1, description="A question is crowded when one family of "
                                 "near-duplicate documents holds at least this share of its top results.")
    boilerplate_documents: int = Field(3, ge=2, description="A line repeated in this many documents (and in "
                                       "boilerplate_share of them) is boilerplate.")
    boilerplate_share: float = Field(0.02, ge=0, le=1, description="Share of the documents a line must repeat in to "
                                     "be boilerplate (a line in 3 of 100,000 documents is not).")
    language_share: float = Field(0.05, gt=0, le=1, description="Chunks in other languages above this share are "
                                  "reported as a language mix.")
    weak_similarity: float = Field(0.30, ge=-1, le=1, description="A served question whose closest chunk has a "
                                   "lower cosine similarity is a coverage gap (minilm-l6: catches 97% of off-topic "
                                   "questions, flags 7% of answerable ones).")
    weak_share: float = Field(0.2, gt=0, le=1, description="Warn when more served questions than this are gaps.")
    no_citation_share: float = Field(0.3, gt=0, le=1, description="Warn when more answers than this cite nothing.")
    thumbs_down_share: float = Field(0.3, gt=0, le=1, description="Warn when more rated answers are thumbs-down.")
    latency_p95_s: float = Field(30, gt=0, description="Warn when the 95th percentile answer latency is higher.")
    min_answers: int = Field(20, ge=1, description="Served answers needed before shares of them raise warnings.")
    drift_alpha: float = Field(0.05, gt=0, lt=1, description="Significance level of the drift tests.")
    drift_baseline: Literal["first", "previous"] = Field("previous", description="The snapshot the latest one is "
                                                         "compared with: previous reports a change once, first "
                                                         "every change since the first ingest.")
    sample_chunks: int = Field(5000, ge=10, description="Chunks searched for near-duplicates and crowding.")
    max_questions: int = Field(2000, ge=10, description="Most recent served questions embedded for coverage.")
    probe_set: str | None = Field(None, description="JSONL of probe questions with their known `source`: retrieval "
                                  "recall@k on it is recorded at every health run.")
    check_urls: bool = Field(True, description="Ask URL sources' servers whether they still answer.")


class StorageConfig(_Section):
    url: str | None = Field(None, description="Where the knowledge base lives: unset for the project's SQLite file "
                            "(or RAGTUNE_STORE_URL where that is set), postgresql://user:password@host:port/database "
                            "for a shared PostgreSQL with pgvector (RAGTUNE_STORE_URL overrides it, and keeps the "
                            "password out of the file), or sqlite for the project's file whatever the environment "
                            "says.")


class ProjectConfig(_Section):
    chunking: ChunkingConfig = ChunkingConfig()
    ingest: IngestConfig = IngestConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    models: ModelsConfig = ModelsConfig()
    generation: GenerationSettings = GenerationSettings()
    health: HealthConfig = HealthConfig()
    storage: StorageConfig = StorageConfig()


def _deep_merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml_mapping(path: Path, *, syntax_hint: str = "fix the syntax",
                      mapping_hint: str = "write one `key: value` per line") -> dict[str, Any]:
    """The mapping in the YAML file `path` ({} for an empty file); a clear error for bad YAML or another type."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise RagtuneError(f"{path}: not valid YAML ({exc})", syntax_hint) from exc
    if not isinstance(data, dict):
        raise RagtuneError(f"{path}: expected a mapping of settings", mapping_hint)
    return data


def validation_problems(exc: ValidationError) -> str:
    """A pydantic validation error as `dotted.key: message; ...`."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


def load_config(project_dir: Path, overrides: dict[str, Any] | None = None) -> ProjectConfig:
    """Read `ragtune.yaml` from the project (if present) and apply `overrides` (nested dict) on top."""
    path = project_dir / CONFIG_FILE
    data: dict = {}
    if path.exists():
        data = read_yaml_mapping(path, syntax_hint="fix the syntax or delete the file",
                                 mapping_hint="see README for the config layout")
    data = _deep_merge(data, overrides or {})
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise RagtuneError(f"{path}: invalid configuration: {validation_problems(exc)}",
                           "correct the named keys") from exc


def save_config(project_dir: Path, config: ProjectConfig) -> Path:
    """Write the full config to the project's `ragtune.yaml`."""
    path = project_dir / CONFIG_FILE
    path.write_text(yaml.safe_dump(config.model_dump(), sort_keys=False), encoding="utf-8")
    return path
