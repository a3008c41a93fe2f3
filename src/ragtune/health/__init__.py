"""Knowledge-base health: findings about content, freshness, consistency, coverage, drift and served traffic."""
