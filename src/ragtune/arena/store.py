"""Battles and votes in the project's records database (see LockedDatabase), and their exchange as JSONL between
raters' machines."""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ragtune.arena.ratings import Judgement
from ragtune.errors import RagtuneError
from ragtune.locked_database import LockedDatabase

OUTCOMES = ("a", "b", "tie", "both_bad")
RATER_PATTERN = r"^[\w .@'-]{1,64}$"  # a rater's name or handle: letters, digits, space and . @ ' - _
RATER_NAME = re.compile(RATER_PATTERN)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS arena_battles (
    id TEXT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL,
    origin TEXT NOT NULL,            -- 'compare' (a comparison's stored answers) or 'live' (answered now)
    item TEXT NOT NULL,              -- the question's id (a comparison's) or a digest of its text (live)
    question TEXT NOT NULL,
    reference TEXT,                  -- the comparison's reference answer, shown after the vote
    rater TEXT NOT NULL,
    strategy_a TEXT NOT NULL,        -- shown on the left
    strategy_b TEXT NOT NULL,
    answer_a TEXT NOT NULL,
    answer_b TEXT NOT NULL,
    citations_a TEXT NOT NULL,       -- [{"number", "source", "text"}] (JSON)
    citations_b TEXT NOT NULL,
    timings TEXT NOT NULL            -- {"a_s", "b_s"}: seconds each answer took (JSON)
);
CREATE TABLE IF NOT EXISTS arena_votes (
    battle_id TEXT PRIMARY KEY REFERENCES arena_battles(id),
    voted_at DOUBLE PRECISION NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('a', 'b', 'tie', 'both_bad')),
    reason TEXT,
    rating_a INTEGER CHECK (rating_a BETWEEN 1 AND 5),
    rating_b INTEGER CHECK (rating_b BETWEEN 1 AND 5),
    seconds_to_vote DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS arena_battles_rater ON arena_battles(rater, item);
"""


@dataclass
class Battle:
    """One question answered by two strategies, shown as A (left) and B (right)."""

    id: str
    origin: str
    item: str
    question: str
    rater: str
    strategy_a: str
    strategy_b: str
    answer_a: str
    answer_b: str
    citations_a: list[dict] = field(default_factory=list)
    citations_b: list[dict] = field(default_factory=list)
    reference: str | None = None
    timings: dict = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)

    def shown(self) -> dict:
        """What a rater sees before voting: no strategy names."""
        return {"battle_id": self.id, "question": self.question,
                "answers": [{"slot": "A", "content": self.answer_a, "citations": self.citations_a},
                            {"slot": "B", "content": self.answer_b, "citations": self.citations_b}]}


@dataclass
class Vote:
    outcome: str
    reason: str | None = None
    rating_a: int | None = None
    rating_b: int | None = None
    seconds_to_vote: float | None = None
    voted_at: float = field(default_factory=time.time)


class BattleNotFound(LookupError):
    """No battle has this id."""


class AlreadyVoted(RagtuneError):
    """A battle takes one vote."""


def votes_database(project: Path | None, from_compare: Path | None) -> Path | str:
    """Where the arena's votes are kept: the project's records database (default the current directory), or with
    `from_compare` the file of the comparison's project."""
    from ragtune.knowledge.storage import records_location
    from ragtune.workspace import Workspace

    if project is not None and from_compare is not None:
        raise RagtuneError("--project and --from-compare both name where the votes are kept",
                           "pass one: a comparison keeps its votes in its own project")
    if project is None:
        project = Path(from_compare) / "project" if from_compare is not None else Path(".")
    Workspace.require(project, " (or --from-compare DIR, where `ragtune compare` wrote)")
    workspace = Workspace.open(project)
    return workspace.database_path if from_compare is not None else records_location(workspace)


class ArenaStore(LockedDatabase):
    """The arena tables of the records database at `location` (a SQLite file or a PostgreSQL URL), safe to use from a
    server's threads."""

    RECORDS = "arena"
    SCHEMA = _SCHEMA

    def add_battle(self, battle: Battle) -> None:
        with self._lock:
            self._insert_battle(battle)

    def _insert_battle(self, battle: Battle) -> None:
        """Insert the battle's row; the caller holds the lock."""
        row = asdict(battle)
        for key in ("citations_a", "citations_b", "timings"):
            row[key] = json.dumps(row[key])
        self._db.execute(f"INSERT INTO arena_battles ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                         list(row.values()))

    def _insert_vote(self, battle_id: str, vote: Vote) -> None:
        """Insert the vote's row; the caller holds the lock."""
        self._db.execute("INSERT INTO arena_votes VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (battle_id, vote.voted_at, vote.outcome, vote.reason, vote.rating_a, vote.rating_b,
                          vote.seconds_to_vote))

    def battle(self, battle_id: str) -> Battle:
        with self._lock:
            cursor = self._db.execute("SELECT * FROM arena_battles WHERE id = ?", (battle_id,))
            row = cursor.fetchone()
            names = [column[0] for column in cursor.description]
        if row is None:
            raise BattleNotFound(battle_id)
        return _battle_of(dict(zip(names, row)))

    def vote(self, battle_id: str, vote: Vote) -> Battle:
        """Store the vote on a battle (one per battle) and return the battle, for the reveal."""
        if vote.outcome not in OUTCOMES:
            raise RagtuneError(f"unknown outcome {vote.outcome!r}", f"vote one of {', '.join(OUTCOMES)}")
        battle = self.battle(battle_id)
        try:
            with self._lock:
                self._insert_vote(battle_id, vote)
        except self._db.error as error:
            if self._db.is_duplicate(error):
                raise AlreadyVoted(f"battle {battle_id} already has a vote", "ask for a new battle") from None
            raise RagtuneError(f"invalid vote on battle {battle_id}: {error}", "ratings are whole numbers 1-5") \
                from None
        return battle

    def shown_to(self, rater: str) -> set[tuple[str, frozenset[str]]]:
        """(item, pair of strategies) of every battle this rater was given, voted or not (skipped, or still open in
        another window): none is given to them again."""
        with self._lock:
            rows = self._db.execute("SELECT item, strategy_a, strategy_b FROM arena_battles WHERE rater = ?",
                                    (rater,)).fetchall()
        return {(item, frozenset((a, b))) for item, a, b in rows}

    def judgements(self) -> list[Judgement]:
        """Every vote, in the order cast, as the ratings read it."""
        with self._lock:
            rows = self._db.execute("SELECT b.strategy_a, b.strategy_b, v.outcome, b.rater, b.item FROM arena_votes v "
                                    "JOIN arena_battles b ON v.battle_id = b.id ORDER BY v.voted_at, b.id").fetchall()
        return [Judgement(*row) for row in rows]

    def voted(self) -> list[tuple[Battle, Vote]]:
        with self._lock:
            cursor = self._db.execute("SELECT b.*, v.voted_at AS v_voted_at, v.outcome AS v_outcome, v.reason AS "
                                      "v_reason, v.rating_a AS v_rating_a, v.rating_b AS v_rating_b, "
                                      "v.seconds_to_vote AS v_seconds_to_vote FROM arena_battles b JOIN arena_votes v "
                                      "ON v.battle_id = b.id ORDER BY v.voted_at, b.id")
            names = [column[0] for column in cursor.description]
            rows = [dict(zip(names, row)) for row in cursor.fetchall()]
        pairs = []
        for row in rows:
            vote = Vote(**{key[2:]: row.pop(key) for key in list(row) if key.startswith("v_")})
            pairs.append((_battle_of(row), vote))
        return pairs

    def export_jsonl(self, path: Path) -> int:
        """Write every voted battle with its vote, one JSON object per line; returns how many."""
        pairs = self.voted()
        Path(path).write_text("".join(json.dumps({"battle": asdict(battle), "vote": asdict(vote)},
                                                 ensure_ascii=False) + "\n" for battle, vote in pairs),
                              encoding="utf-8")
        return len(pairs)

    def import_jsonl(self, path: Path) -> tuple[int, int]:
        """Merge the voted battles of an export: (added, already here). Every line is checked before anything is
        written, and all of them are written in one transaction, so a bad file changes nothing."""
        records = list(_read_export(Path(path)))
        added = skipped = 0
        with self._lock:
            try:
                with self._db.transaction():
                    for battle, vote in records:
                        if self._db.execute("SELECT 1 FROM arena_votes WHERE battle_id = ?", (battle.id,)).fetchone():
                            skipped += 1
                            continue
                        if not self._db.execute("SELECT 1 FROM arena_battles WHERE id = ?", (battle.id,)).fetchone():
                            self._insert_battle(battle)
                        self._insert_vote(battle.id, vote)
                        added += 1
            except self._db.error as error:
                raise RagtuneError(f"{path}: the votes could not be stored ({error})",
                                   "nothing was imported; check the file was written by `ragtune arena export`") \
                    from None
        return added, skipped



def _battle_of(row: dict) -> Battle:
    for key in ("citations_a", "citations_b", "timings"):
        row[key] = json.loads(row[key])
    return Battle(**row)


def _read_export(path: Path):
    """(battle, vote) of each line of an export, or a RagtuneError naming the first bad line and field."""
    if not path.is_file():
        raise RagtuneError(f"{path} does not exist", "pass a file written by `ragtune arena export`")
    battle_fields = set(Battle.__dataclass_fields__)
    vote_fields = set(Vote.__dataclass_fields__)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except ValueError as error:
            raise RagtuneError(f"{where}: not valid JSON ({error})", "fix or remove the line; nothing was imported") \
                from None
        if not isinstance(record, dict) or not isinstance(record.get("battle"), dict) or \
                not isinstance(record.get("vote"), dict):
            raise RagtuneError(f"{where}: a line needs a 'battle' and a 'vote' object",
                               "import files written by `ragtune arena export`; nothing was imported")
        battle, vote = record["battle"], record["vote"]
        missing = [f"battle.{name}" for name in ("id", "item", "question", "rater", "strategy_a", "strategy_b",
                                                 "answer_a", "answer_b", "origin") if not isinstance(battle.get(name), str)]
        if vote.get("outcome") not in OUTCOMES:
            missing.append(f"vote.outcome (one of {', '.join(OUTCOMES)})")
        if battle.get("rater") is not None and not RATER_NAME.match(str(battle["rater"])):
            missing.append("battle.rater (letters, digits, spaces and . @ ' - _, at most 64)")
        for side in ("rating_a", "rating_b"):
            value = vote.get(side)
            if value is not None and (type(value) is not int or not 1 <= value <= 5):
                missing.append(f"vote.{side} (a whole number 1-5)")
        for name, record in (("battle.created_at", battle), ("vote.voted_at", vote)):
            if type(record.get(name.split(".")[1])) not in (int, float):
                missing.append(f"{name} (a time in seconds)")
        if vote.get("seconds_to_vote") is not None and type(vote["seconds_to_vote"]) not in (int, float):
            missing.append("vote.seconds_to_vote (seconds)")
        for side in ("citations_a", "citations_b"):
            if not isinstance(battle.get(side, []), list):
                missing.append(f"battle.{side} (a list)")
        unknown = sorted(set(battle) - battle_fields) + sorted(f"vote.{key}" for key in set(vote) - vote_fields)
        if missing or unknown:
            problem = f"missing or invalid {', '.join(missing)}" if missing else f"unknown fields {', '.join(unknown)}"
            raise RagtuneError(f"{where}: {problem}", "fix the line; nothing was imported")
        yield Battle(**battle), Vote(**vote)
