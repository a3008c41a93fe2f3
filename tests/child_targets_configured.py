"""A child-process target whose module configures logging when it is imported, as some libraries do (absl), before
the child's own set-up runs."""

from __future__ import annotations

import logging

logging.basicConfig()  # the bare `WARNING:name:message` format


def warns_after_a_library_configured_logging(*, progress):
    logging.getLogger("ragtune.training.finetune").warning("3 of 9 rows removed while cleaning")
