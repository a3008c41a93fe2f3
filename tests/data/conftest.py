"""Fixtures for the data tests: tiny tokenizers with and without a chat template."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

for helpers in (Path(__file__).parent, Path(__file__).parents[1]):  # data_helpers, tiny_models
    if str(helpers) not in sys.path:
        sys.path.insert(0, str(helpers))

from tiny_models import build_tiny_llama  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny Llama folder whose tokenizer has a ChatML template (like SmolLM2's)."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-chat"))


@pytest.fixture(scope="session")
def chat_tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def plain_tokenizer(tmp_path_factory):
    """A tokenizer without a chat template (a base model): conversations use the plain prompt."""
    return AutoTokenizer.from_pretrained(build_tiny_llama(tmp_path_factory.mktemp("tiny-plain"), chat_template=False))

