"""The arena's API: blind battles between two strategies (from a comparison's stored answers, or answered live),
votes, and the leaderboard."""

from __future__ import annotations

import random
import time

import anyio

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from ragtune.arena.battles import CITED_PASSAGE_CHARS, live_item, new_battle_id, pick_battle
from ragtune.arena.ratings import judged_strategies, leaderboard
from ragtune.arena.store import AlreadyVoted, Battle, BattleNotFound, Vote
from ragtune.rag import AnswerOptions
from ragtune.serve.schema import BattleRequest, VoteRequest


def arena_router(state, api_error) -> APIRouter:
    """Routes under /v1/arena over `state.arena` (the store) and `state.compared` (a comparison, or None)."""
    router = APIRouter()
    rng = random.Random()

    @router.post("/arena/battles")
    async def new_battle(request: BattleRequest) -> dict:
        if request.question is not None:
            battle = await _live_battle(request.rater, request.question)
        elif state.compared is None:
            raise api_error(409, "this server has no comparison to draw questions from: send a 'question' to have "
                            "two strategies answer it now, or start the server with --from-compare DIR",
                            "no_comparison")
        else:
            battle = await run_in_threadpool(state.compared.next_battle, state.arena, request.rater, rng)
            if battle is None:
                raise api_error(409, f"{request.rater} has judged every question of the comparison for every pair "
                                "of strategies", "arena_exhausted")
        return battle.shown()

    async def _live_battle(rater: str, question: str) -> Battle:
        served = state.catalog.models
        item = live_item(question)
        chosen = await run_in_threadpool(pick_battle, state.arena, rater, list(served), {item: set(served)}, rng)
        if chosen is None:
            raise api_error(409, f"{rater} has already judged this question for every pair of strategies",
                            "arena_exhausted")
        _, left, right = chosen
        answers = []
        for model_id in (left, right):
            runtime, slot = await run_in_threadpool(state.catalog.runtime, served[model_id])
            async with slot.turn():
                with anyio.CancelScope(shield=True):  # the engine is never left decoding after its turn ends
                    answer = await run_in_threadpool(runtime.answer, [{"role": "user", "content": question}],
                                                     AnswerOptions(repetition_penalty=state.repetition_penalty,
                                                                   chat=True))
            answers.append(answer)
        battle = Battle(new_battle_id(), "live", item, question, rater, left, right, answers[0].answer,
                        answers[1].answer, _live_citations(answers[0]), _live_citations(answers[1]),
                        timings={"a_s": answers[0].timings["total_s"], "b_s": answers[1].timings["total_s"]})
        await run_in_threadpool(state.arena.add_battle, battle)
        return battle

    @router.post("/arena/battles/{battle_id}/vote")
    def vote(battle_id: str, request: VoteRequest) -> dict:
        try:
            battle = state.arena.vote(battle_id, Vote(**request.model_dump()))
        except BattleNotFound:
            raise api_error(404, f"no battle has the id '{battle_id}'", "battle_not_found") from None
        except AlreadyVoted as error:
            raise api_error(409, error.message, "already_voted") from None
        return {"battle_id": battle_id, "outcome": request.outcome, "stored": True,
                "strategies": {"A": battle.strategy_a, "B": battle.strategy_b}, "reference": battle.reference,
                "votes_by_rater": sum(1 for judgement in state.arena.judgements() if judgement.rater == battle.rater)}

    @router.get("/arena/leaderboard")
    def board() -> dict:
        judgements = state.arena.judgements()
        strategies = judged_strategies(judgements, state.compared.strategies if state.compared else [])
        started = time.perf_counter()
        result = leaderboard(judgements, strategies).to_dict()
        return {**result, "seconds": round(time.perf_counter() - started, 3)}

    return router


def _live_citations(answer) -> list[dict]:
    texts = {hit.chunk_id: hit.text for hit in answer.passages}
    return [{"number": citation["number"], "source": citation["source"],
             "text": texts.get(citation["chunk_id"], "")[:CITED_PASSAGE_CHARS]} for citation in answer.citations]
