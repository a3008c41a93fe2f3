"""Named models → files; loading; generation engines."""
