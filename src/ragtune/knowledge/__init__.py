"""Sources → documents → chunks → index → retrieval."""
