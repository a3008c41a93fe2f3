"""Which battle comes next, and battles built from a finished comparison's stored answers or answered live."""

from __future__ import annotations

import hashlib
import random
import uuid
from pathlib import Path

from ragtune.arena.ratings import choose_pair
from ragtune.arena.store import ArenaStore, Battle
from ragtune.errors import RagtuneError

CITED_PASSAGE_CHARS = 600  # a citation shows the start of its passage


def pick_battle(store: ArenaStore, rater: str, strategies: list[str], items: dict[str, set[str]],
                rng: random.Random) -> tuple[str, str, str] | None:
    """(item, left, right) of the next battle for `rater`: the pair whose order is least certain first (see
    ratings.choose_pair), a question of `items` (id → strategies that can answer it) the rater was not given for
    that pair before, sides drawn at random. None when the rater has had every question for every pair."""
    judged = store.shown_to(rater)
    for pair in choose_pair(store.judgements(), strategies):
        open_items = sorted(item for item, answering in items.items()
                            if set(pair) <= answering and (item, frozenset(pair)) not in judged)
        if open_items:
            left, right = rng.sample(list(pair), 2)
            return rng.choice(open_items), left, right
    return None


def live_item(question: str) -> str:
    """A live question's id: the same question typed again is the same item."""
    return "live-" + hashlib.sha256(" ".join(question.lower().split()).encode()).hexdigest()[:16]


def new_battle_id() -> str:
    return f"battle-{uuid.uuid4().hex}"


class ComparedAnswers:
    """The test questions of a finished `ragtune compare` and every strategy's stored answer to them."""

    def __init__(self, directory: Path):
        from ragtune.evaluation.results import Results

        self.directory = Path(directory)
        if not (self.directory / "results.json").is_file():
            raise RagtuneError(f"{self.directory / 'results.json'} does not exist",
                               "point --from-compare at the --out directory of a finished `ragtune compare`")
        self.results = Results.load(self.directory)
        self.strategies = list(self.results.strategies)
        self.rows = {row.id: row for row in self.results.per_question}
        if len(self.strategies) < 2 or not self.rows:
            raise RagtuneError(f"{self.directory} compares {len(self.strategies)} strategies on {len(self.rows)} "
                               "questions; a battle needs two strategies' answers to a question",
                               "run the comparison with at least two strategies")

    def items(self) -> dict[str, set[str]]:
        return {item: set(row.answers) for item, row in self.rows.items()}

    def battle(self, item: str, left: str, right: str, rater: str) -> Battle:
        row = self.rows[item]
        answer_a, answer_b = row.answers[left], row.answers[right]
        return Battle(new_battle_id(), "compare", item, row.question, rater, left, right, answer_a.answer,
                      answer_b.answer, _citations(answer_a.passages), _citations(answer_b.passages),
                      reference=row.reference, timings={"a_s": answer_a.latency_s, "b_s": answer_b.latency_s})

    def next_battle(self, store: ArenaStore, rater: str, rng: random.Random) -> Battle | None:
        """The next battle for `rater`, stored, or None when every question and pair is judged."""
        chosen = pick_battle(store, rater, self.strategies, self.items(), rng)
        if chosen is None:
            return None
        battle = self.battle(*chosen, rater)
        store.add_battle(battle)
        return battle


def _citations(passages) -> list[dict]:
    return [{"number": number, "source": passage.source, "text": passage.text[:CITED_PASSAGE_CHARS]}
            for number, passage in enumerate(passages, 1)]
