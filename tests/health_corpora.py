"""Corpora for the health checks: the bundled COVID-QA articles as a clean corpus, the same with one defect of each
kind planted, and off-topic documents that shift the corpus."""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

from ragtune.demo import demo_corpus_dir

YEAR = 365 * 86_400
FOOTER = "This document is confidential and intended solely for internal use by hospital staff."
FRENCH = [
    "Le coronavirus se transmet principalement par les gouttelettes respiratoires émises lorsqu'une personne "
    "infectée tousse, éternue ou parle. Les mesures barrières, comme le port du masque et le lavage régulier des "
    "mains, réduisent fortement le risque de contamination dans les lieux publics.",
    "Les patients présentant une forme grave de la maladie ont souvent besoin d'une oxygénothérapie et parfois d'une "
    "ventilation mécanique. Les unités de soins intensifs ont dû augmenter leur capacité d'accueil pendant les "
    "premières vagues de l'épidémie, ce qui a mis les équipes soignantes sous une forte pression.",
    "La période d'incubation du virus varie généralement entre deux et quatorze jours. Pendant cette période, une "
    "personne peut être contagieuse sans présenter de symptômes, ce qui complique le dépistage et le traçage des "
    "contacts par les autorités sanitaires régionales.",
    "Les vaccins autorisés ont montré une efficacité élevée contre les formes graves de la maladie. Les campagnes de "
    "vaccination ont d'abord ciblé les personnes âgées et les soignants, puis se sont étendues à l'ensemble de la "
    "population adulte au cours de l'année suivante.",
    "Les enfants développent le plus souvent des formes légères de la maladie, mais ils peuvent transmettre le virus "
    "à leur entourage. La fermeture des écoles a donc été débattue, car elle protège les familles tout en pénalisant "
    "fortement l'apprentissage et le bien-être des élèves.",
    "Les tests antigéniques rapides donnent un résultat en quelques minutes, tandis que les tests par amplification "
    "génique sont plus sensibles mais exigent un laboratoire. Le choix du test dépend donc du contexte, de l'urgence "
    "et des ressources disponibles sur place.",
]
DISHES = ["lemon tart", "mushroom risotto", "apple crumble", "vegetable curry", "sourdough loaf", "pumpkin soup",
          "chocolate mousse", "paella", "ratatouille", "banana bread", "lasagne", "falafel", "pancakes", "gazpacho"]
STEPS = ["Preheat the oven and butter a deep tin.", "Whisk the eggs with the sugar until pale and fluffy.",
         "Fold in the flour gently with a large metal spoon.", "Simmer the onions slowly in olive oil until golden.",
         "Season with salt, pepper and a pinch of smoked paprika.", "Knead the dough for ten minutes on a floured board.",
         "Let it rest in a warm kitchen until doubled in size.", "Stir in the grated cheese and a knob of butter.",
         "Serve warm with a spoonful of thick cream or yoghurt.", "Chop the herbs finely and scatter them on top.",
         "Roast the vegetables until their edges caramelise.", "Blend until smooth, then chill for an hour."]


HANDBOOK = """# Ward handbook

## Visiting

Visitors book a slot at the front desk and wear a surgical mask on the ward. Children under twelve visit only with
an adult, and nobody visits intensive care without the nurse in charge agreeing first.

## Bed occupancy by week

| week | beds | occupied | share |
|------|------|----------|-------|
| 1 | 120 | 96 | 0.80 |
| 2 | 120 | 104 | 0.87 |
| 3 | 120 | 111 | 0.93 |
| 4 | 120 | 117 | 0.98 |
| 5 | 120 | 108 | 0.90 |
| 6 | 120 | 99 | 0.83 |
| 7 | 120 | 93 | 0.78 |
| 8 | 120 | 90 | 0.75 |
"""


def covid_corpus(root: Path) -> Path:
    """The bundled COVID-QA articles, copied to `root`, with a Markdown handbook whose headings make chunks of their
    own and whose table is mostly numbers (neither is a defect)."""
    shutil.copytree(demo_corpus_dir(), root)
    (root / "handbook.md").write_text(HANDBOOK, encoding="utf-8")
    return root


def planted_corpus(root: Path) -> tuple[Path, dict[str, str]]:
    """The COVID-QA articles with one defect of each kind; returns the directory and the file of each defect."""
    covid_corpus(root)
    articles = sorted(root.glob("*.txt"))
    planted = {}
    original = articles[0]
    words = original.read_text(encoding="utf-8").split(" ")
    for i in range(0, len(words), 10):  # an archived, lightly edited copy of a current article
        words[i] = "formerly"
    archived = root / "archive" / f"old-{original.name}"
    archived.parent.mkdir()
    archived.write_text(" ".join(words) + "\nArchived edition.", encoding="utf-8")
    os.utime(archived, (time.time() - YEAR / 2,) * 2)
    planted["superseded"] = f"archive/{archived.name}"
    planted["current"] = original.name
    stale = articles[1]
    os.utime(stale, (time.time() - 3 * YEAR,) * 2)
    planted["stale"] = stale.name
    for article in articles[2:5]:
        article.write_text(article.read_text(encoding="utf-8") + f"\n\n{FOOTER}\n", encoding="utf-8")
    planted["boilerplate"] = FOOTER
    junk = " ".join(f"{n:05d}%%{n * 7 % 997:03d}##" for n in range(150))
    (root / "scan-with-junk.txt").write_text(articles[5].read_text(encoding="utf-8")[:5000] + "\n\n" + junk + "\n",
                                             encoding="utf-8")
    planted["garbled_chunk"] = "scan-with-junk.txt"
    (root / "french-notes.txt").write_text("\n\n".join(FRENCH), encoding="utf-8")
    planted["language"] = "french-notes.txt"
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    planted["rejected"] = "broken.pdf"
    (root / "table-dump.txt").write_text("### 0101 ### 2020 ### " * 200, encoding="utf-8")
    planted["skipped"] = "table-dump.txt"
    gone = root / "withdrawn-guidance.txt"
    gone.write_text("Visitors to the wards must book a slot in advance and wear a surgical mask at all times. Each "
                    "patient may receive one visitor a day for at most one hour; children under twelve may not visit "
                    "intensive care. These rules were withdrawn when the regional outbreak ended.", encoding="utf-8")
    planted["gone"] = gone.name
    return root, planted


def off_topic_documents(root: Path, count: int = 30, seed: int = 0) -> Path:
    """Recipes: documents about something else entirely, to shift a medical corpus."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        dish = rng.choice(DISHES)
        paragraphs = [f"# How to cook {dish} number {n}"]
        for _ in range(4):
            paragraphs.append(" ".join(rng.sample(STEPS, 6)) + f" This {dish} feeds {rng.randint(2, 12)} people.")
        (root / f"recipe-{n:02d}.md").write_text("\n\n".join(paragraphs), encoding="utf-8")
    return root
