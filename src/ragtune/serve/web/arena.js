// ragtune's arena: blind battles between two strategies, voted with the keyboard, revealed after the vote (helpers
// in common.js). Text from documents and models is only ever set as textContent.
"use strict";

const state = { rater: localStorage.getItem("ragtune-rater") || "", battle: null, shownAt: 0, voted: false,
                busy: false };
const KEYS = { a: "a", b: "b", t: "tie", x: "both_bad" };

async function askRater() {
  $("rater").value = state.rater;
  await askDialog("rater-dialog", "rater-form", () => {
    state.rater = $("rater").value.trim();
    localStorage.setItem("ragtune-rater", state.rater);
  });
  $("rater-button").textContent = `Rater: ${state.rater}`;
}

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function newBattle(question) {
  if (state.busy) return;  // one request at a time: a vote or a battle in flight finishes first
  state.busy = true;
  try { await drawBattle(question); } finally { state.busy = false; }
}

async function drawBattle(question) {
  status(question ? "Both strategies are answering…" : "Drawing the next battle…");
  $("battle").hidden = true;
  try {
    const body = { rater: state.rater };
    if (question) body.question = question;
    show(await apiJson("/v1/arena/battles", { method: "POST", body: JSON.stringify(body) }));
    status("");
  } catch (error) {
    state.battle = null;
    status(error.code === "no_comparison" ? "Type a question above: two strategies will answer it." : error.message,
           error.code !== "no_comparison");
  }
}

function show(battle) {
  state.battle = battle;
  state.voted = false;
  state.shownAt = performance.now();
  $("battle-question").textContent = battle.question;
  for (const answer of battle.answers) {
    const side = $(`side-${answer.slot}`);
    side.classList.remove("winner");
    side.querySelector("h3").textContent = answer.slot;
    side.querySelector(".answer").textContent = answer.content;
    side.querySelector(".rating").value = "";
    side.querySelector(".citations").replaceChildren(...answer.citations.map((c) =>
      el("li", {}, el("details", {}, el("summary", { text: `[${c.number}] ${c.source}` }), el("p", { text: c.text })))));
  }
  $("reason").value = "";
  $("reveal").hidden = true;
  $("vote-bar").hidden = false;
  $("battle").hidden = false;
}

async function vote(outcome) {
  if (!state.battle || state.voted || state.busy) return;
  state.voted = true;
  state.busy = true;
  const battle = state.battle;
  const rating = (slot) => $(`side-${slot}`).querySelector(".rating").value;
  const body = { outcome, reason: $("reason").value.trim() || null,
                 rating_a: rating("A") ? Number(rating("A")) : null, rating_b: rating("B") ? Number(rating("B")) : null,
                 seconds_to_vote: Math.round(performance.now() - state.shownAt) / 1000 };
  try {
    const result = await apiJson(`/v1/arena/battles/${encodeURIComponent(battle.battle_id)}/vote`,
                             { method: "POST", body: JSON.stringify(body) });
    if (state.battle === battle) reveal(result);
    loadBoard();
  } catch (error) {
    state.voted = false;
    status(error.message, true);
  } finally {
    state.busy = false;
  }
}

function reveal(result) {
  for (const slot of ["A", "B"]) $(`side-${slot}`).querySelector("h3").textContent = `${slot}: ${result.strategies[slot]}`;
  if (result.outcome === "a") $("side-A").classList.add("winner");
  if (result.outcome === "b") $("side-B").classList.add("winner");
  const parts = [el("strong", { text: `A was ${result.strategies.A}, B was ${result.strategies.B}.` })];
  if (result.reference) parts.push(el("p", { text: `Reference answer: ${result.reference}` }));
  parts.push(el("p", { text: "Next battle: N or Enter." }));
  $("reveal").replaceChildren(...parts);
  $("reveal").hidden = false;
  $("vote-bar").hidden = true;
  $("count").textContent = `${result.votes_by_rater} vote${result.votes_by_rater === 1 ? "" : "s"} by ${state.rater}`;
}

async function loadBoard() {
  try {
    const board = await apiJson("/v1/arena/leaderboard");
    $("leaderboard").tBodies[0].replaceChildren(...board.ratings.map((r, i) => el("tr", {},
      el("td", { text: String(i + 1) }), el("td", { text: r.strategy }),
      el("td", { text: r.battles ? r.score.toFixed(0) : "—" }),
      el("td", { text: r.battles ? `[${r.ci_low.toFixed(0)}, ${r.ci_high.toFixed(0)}]` : "no battles yet" }),
      el("td", { text: String(r.battles) }))));
    $("hint").textContent = `${board.votes} vote${board.votes === 1 ? "" : "s"}. ${board.stopping_hint}`;
  } catch (error) {
    $("hint").textContent = error.message;
  }
}

document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, textarea, select, dialog") || event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key.toLowerCase();
  if (state.battle && !state.voted && KEYS[key]) { event.preventDefault(); vote(KEYS[key]); }
  else if ((key === "n" || key === "enter") && (state.voted || !state.battle)) { event.preventDefault(); newBattle(); }
});

async function start() {
  for (const button of document.querySelectorAll("#vote-buttons button")) button.onclick = () => vote(button.dataset.outcome);
  $("next").onclick = () => newBattle();
  $("rater-button").onclick = askRater;
  $("live").onsubmit = (event) => {
    event.preventDefault();
    const question = $("live-question").value.trim();
    if (question) { $("live-question").value = ""; newBattle(question); }
  };
  if (!state.rater) await askRater(); else $("rater-button").textContent = `Rater: ${state.rater}`;
  await loadBoard();
  await newBattle();
}
start();
