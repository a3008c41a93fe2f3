"""The small corpus most tests ingest (text, Markdown and HTML in two folders)."""

from __future__ import annotations

from pathlib import Path

CORPUS = {
    "animals/cats.md": "# Cats\n\nCats are small carnivorous mammals. Domestic cats sleep for around fifteen hours "
                       "a day and hunt mice at night.\n\n## Diet\n\nCats need taurine, an amino acid found in meat.",
    "animals/dogs.txt": "Dogs were domesticated from wolves more than fifteen thousand years ago. "
                        "They are loyal companions and are trained to herd sheep and guide blind people.",
    "space/mars.txt": "Mars is the fourth planet from the Sun. Its red colour comes from iron oxide dust. "
                      "Olympus Mons on Mars is the tallest volcano in the solar system.",
    "space/moon.html": "<html><head><title>The Moon</title></head><body><h1>The Moon</h1><p>The Moon orbits the "
                       "Earth every 27.3 days. Neil Armstrong walked on the Moon in July 1969.</p>"
                       "<script>var x = 1;</script></body></html>",
}

# Questions and answers about four short notes (the comparison tests write one document per key).
FACTS = {
    "cats.txt": [("How long do cats sleep?", "fifteen hours"), ("What do cats hunt?", "mice"),
                 ("What amino acid do cats need?", "taurine")],
    "mars.txt": [("Which planet is fourth from the Sun?", "Mars"), ("What makes Mars red?", "iron oxide"),
                 ("What is the tallest volcano?", "Olympus Mons")],
    "moon.txt": [("How often does the Moon orbit the Earth?", "every 27.3 days"),
                 ("Who walked on the Moon in 1969?", "Neil Armstrong")],
    "dogs.txt": [("What were dogs domesticated from?", "wolves"), ("What do dogs herd?", "sheep")],
}


def write_corpus(root: Path, files: dict[str, str] = CORPUS) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
