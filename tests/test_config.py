import pytest

from ragtune.config import load_config
from ragtune.errors import RagtuneError
from ragtune.workspace import Workspace


def test_defaults_file_and_overrides(tmp_path):
    (tmp_path / "ragtune.yaml").write_text("retrieval:\n  k: 7\nchunking:\n  chunk_tokens: 128\n")
    config = load_config(tmp_path, {"retrieval": {"mode": "dense"}})
    assert (config.retrieval.k, config.retrieval.mode, config.chunking.chunk_tokens) == (7, "dense", 128)
    assert config.models.generator == "smollm2-135m"


def test_bad_config_names_the_key(tmp_path):
    (tmp_path / "ragtune.yaml").write_text("retrieval:\n  k: -1\n  bogus: 3\n")
    with pytest.raises(RagtuneError) as error:
        load_config(tmp_path)
    assert "retrieval.k" in str(error.value) and "retrieval.bogus" in str(error.value)


def test_workspace_creates_config(tmp_path):
    workspace = Workspace.open(tmp_path / "p")
    assert (tmp_path / "p" / "ragtune.yaml").exists()
    assert workspace.database_path.parent.name == ".ragtune"
