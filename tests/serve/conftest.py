"""A project with the small corpus ingested, for the server's tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def served_project(project, corpus):
    project.ingest([str(corpus)])
    return project
