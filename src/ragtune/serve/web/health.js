// ragtune's health page: the project's health report (GET /v1/monitoring): the findings by severity, the main
// measurements and a line chart per time series, drawn as SVG (helpers in common.js). Every string of the report
// (titles, examples, file names, questions users asked) is only ever set as textContent.
"use strict";

const SEVERITIES = [["error", "Errors"], ["warning", "Warnings"], ["info", "Notes"]];
const STATUS_TEXT = { ok: "Healthy", info: "Notes", warning: "Warnings", error: "Errors" };
// Series: [title, kind of value]; kinds decide the axis range and how values are written.
const SERIES = {
  answers: ["Answers served", "count"],
  latency_p50_s: ["Latency p50", "seconds"],
  latency_p95_s: ["Latency p95", "seconds"],
  no_citation_share: ["Answers citing nothing", "share"],
  thumbs_down_share: ["Thumbs-down share", "share"],
  weak_share: ["Coverage gap share", "share"],
  probe_recall: ["Probe recall", "share"],
  drift_mmd: ["Corpus drift (MMD²)", "number"],
  drift_p_value: ["Corpus drift p-value", "p"],
};
const SVG = "http://www.w3.org/2000/svg";

function formatNumber(value) {
  if (Number.isInteger(value)) return value.toLocaleString("en");
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString("en");
  return String(Number(value.toPrecision(3)));
}

function format(value, kind = "number") {
  if (value === null || value === undefined || (typeof value === "number" && !Number.isFinite(value))) return "—";
  if (typeof value !== "number") return typeof value === "string" ? value : JSON.stringify(value);
  if (kind === "share") return `${(100 * value).toFixed(value > 0 && value < 0.1 ? 1 : 0)}%`;
  if (kind === "seconds") {
    if (value === 0) return "0 s";
    if (value < 1) return `${formatNumber(Number((1000 * value).toPrecision(2)))} ms`;
    return `${value.toFixed(value < 10 ? 2 : 1)} s`;
  }
  if (kind === "p") return value.toFixed(3);
  return formatNumber(value);
}

function formatDate(seconds, options = { dateStyle: "medium", timeStyle: "short" }) {
  return new Date(seconds * 1000).toLocaleString(undefined, options);
}

function message(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
  $("message").hidden = !text;
}

function renderSummary(report) {
  const status = STATUS_TEXT[report.status] ? report.status : "info";
  const badge = $("status-badge");
  badge.textContent = STATUS_TEXT[status];
  badge.className = `badge sev-${status}`;
  const counts = report.counts || {};
  $("counts").textContent = ["sources", "documents", "chunks"]
    .map((name) => plural(counts[name] ?? 0, name.slice(0, -1))).join(" · ");
  $("generated").textContent = `Checked ${formatDate(report.generated_at)} · ${report.project}`;
}

function renderFindings(findings) {
  const box = $("findings");
  if (!findings.length) {
    box.replaceChildren(el("p", { class: "empty healthy", text: "No findings: the knowledge base looks healthy" }));
    return;
  }
  const groups = [];
  for (const [severity, heading] of SEVERITIES) {
    const members = findings.filter((f) => f.severity === severity);
    if (!members.length) continue;
    groups.push(el("section", { class: `group sev-${severity}`, "data-severity": severity },
      el("h3", { text: `${heading} (${members.length})` }), ...members.map(findingNode)));
  }
  box.replaceChildren(...groups);
}

function findingNode(finding) {
  const severity = SEVERITIES.some(([name]) => name === finding.severity) ? finding.severity : "info";
  const evidence = Object.entries(finding.evidence || {});
  const examples = finding.examples || [];
  const node = el("article", { class: `finding sev-${severity}` },
    el("div", { class: "meta" }, el("span", { class: `pill sev-${severity}`, text: severity }),
      el("span", { class: "area", text: finding.area }), el("code", { text: finding.check })),
    el("h4", { text: finding.title }),
    el("p", { class: "action" }, el("strong", { text: "What to do: " }), String(finding.action)));
  if (evidence.length) {
    node.append(el("dl", { class: "evidence" }, ...evidence.map(([key, value]) =>
      el("div", {}, el("dt", { text: `${key}:` }), " ", el("dd", { text: format(value) })))));
  }
  if (examples.length) {
    node.append(el("details", {}, el("summary", { text: `Examples (${examples.length})` }),
      el("ul", { class: "examples" }, ...examples.map((example) => el("li", { text: String(example) })))));
  }
  return node;
}

function renderMeasurements(report) {
  const metrics = report.metrics || {};
  const traffic = metrics.traffic || {};
  const coverage = metrics.coverage || {};
  const drift = metrics.drift || {};
  const areas = [
    ["Traffic", [["Answers served", traffic.answers, "count"], ["Latency p50", traffic.latency_p50_s, "seconds"],
                 ["Latency p95", traffic.latency_p95_s, "seconds"],
                 ["Answers citing nothing", traffic.no_citation_share, "share"],
                 ["Thumbs-down share", traffic.thumbs_down_share, "share",
                  traffic.rated ? `of ${plural(traffic.rated, "rated answer")}` : "no rated answers"]]],
    ["Coverage", [["Coverage gap share", coverage.weak_share, "share",
                   coverage.questions_checked ? `of ${plural(coverage.questions_checked, "served question")}`
                     : "no served questions yet"]]],
    ["Drift", [["Snapshots", drift.snapshots, "count"]]],
  ];
  if (drift.mmd && drift.mmd.p_value !== undefined) {
    areas[2][1].push(["Latest drift p-value", drift.mmd.p_value, "p", drift.mmd.drifted ? "drifted" : "no drift"]);
  }
  $("measurements").replaceChildren(...areas.map(([area, tiles]) => el("div", { class: "area-row" },
    el("h4", { text: area }),
    el("div", { class: "tiles" }, ...tiles.map(([label, value, kind, note]) => el("div", { class: "tile" },
      el("span", { class: "label", text: label }), el("strong", { text: format(value, kind) }),
      note ? el("span", { class: "note", text: note }) : ""))))));
}

const charts = new Map();  // figure -> [name, points]: drawn again at their width when the page is resized

function renderCharts(series) {
  const known = Object.keys(SERIES);
  const rank = (name) => (known.includes(name) ? known.indexOf(name) : known.length);
  const names = Object.keys(series || {}).filter((name) => Array.isArray(series[name]))
    .sort((a, b) => rank(a) - rank(b));
  charts.clear();
  if (!names.length) {
    $("charts").replaceChildren(el("p", { class: "empty", text: "No time series yet: they appear once the server has "
      + "recorded answers, and once the knowledge base has been ingested again after a change." }));
    return;
  }
  $("charts").replaceChildren(...names.map((name) => {
    const [title] = SERIES[name] || [name];
    const figure = el("figure", { class: "chart", "data-series": name },
      el("figcaption", {}, el("span", { text: title })));
    charts.set(figure, [name, series[name]]);
    return figure;
  }));
  drawCharts();
}

function drawCharts() {
  for (const [figure, [name, points]] of charts) drawChart(figure, name, points);
}

// The smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10 times a power of ten at or above `value` (> 0).
function niceCeil(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  return power * [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10].find((step) => step * power >= value * (1 - 1e-9));
}

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== null) node.textContent = text;
  return node;
}

// A line chart of [[unix time, value], ...] at the figure's width: three value ticks, dates along the time axis.
function drawChart(figure, name, points) {
  const [title, kind] = SERIES[name] || [name, "number"];
  const valid = points.filter((p) => Array.isArray(p) && Number.isFinite(p[0]) && Number.isFinite(p[1]));
  const caption = figure.querySelector("figcaption");
  for (const old of figure.querySelectorAll(":scope > svg, :scope > .empty, figcaption .latest")) old.remove();
  if (!valid.length) {
    figure.append(el("p", { class: "empty", text: "No data yet" }));
    return;
  }
  caption.append(el("span", { class: "latest", text: `latest ${format(valid[valid.length - 1][1], kind)}` }));
  const inner = figure.clientWidth - parseFloat(getComputedStyle(figure).paddingLeft)
    - parseFloat(getComputedStyle(figure).paddingRight);
  const [W, H, left, right, top, bottom] = [Math.max(200, Math.floor(inner || 300)), 140, 48, 14, 10, 24];
  let [t0, t1] = [valid[0][0], valid[valid.length - 1][0]];
  if (t1 <= t0) { t0 -= 1800; t1 += 1800; }  // one point: in the middle
  const values = valid.map((p) => p[1]);
  const bounded = kind === "share" || kind === "p";
  const lo = Math.min(0, ...values);
  let hi = bounded ? Math.max(1, ...values) : Math.max(...values);
  if (hi <= lo) hi = lo + 1;
  else if (!bounded) hi = lo + niceCeil(hi - lo);
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (W - left - right);
  const y = (v) => top + (1 - (v - lo) / (hi - lo)) * (H - top - bottom);
  const span = t1 - t0;
  const dateOptions = span < 2 * 86400
    ? { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" }
    : span < 300 * 86400 ? { month: "short", day: "numeric" } : { year: "numeric", month: "short" };
  const drawing = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img",
                               "aria-label": `${title}: ${plural(valid.length, "point")}` });
  for (const v of [lo, (lo + hi) / 2, hi]) {
    drawing.append(svg("line", { class: "grid", x1: left, x2: W - right, y1: y(v), y2: y(v) }),
      svg("text", { class: "tick", x: left - 5, y: y(v) + 4, "text-anchor": "end" },
          kind === "p" ? formatNumber(v) : format(v, kind)));
  }
  const room = Math.max(1, Math.floor((W - left - right) / 90));  // date labels that fit side by side
  const count = Math.min(valid.length, room, 4);
  const ticks = count === 1 ? [valid.length === 1 ? valid[0][0] : t1]
    : Array.from({ length: count }, (_, i) => t0 + (i * (t1 - t0)) / (count - 1));
  ticks.forEach((t, i) => {
    const anchor = count === 1 ? "middle" : i === 0 ? "start" : i === count - 1 ? "end" : "middle";
    drawing.append(svg("text", { class: "tick", x: x(t), y: H - 6, "text-anchor": anchor },
                       formatDate(t, dateOptions)));
  });
  drawing.append(svg("line", { class: "axis", x1: left, x2: W - right, y1: H - bottom, y2: H - bottom }));
  if (valid.length > 1) {
    drawing.append(svg("polyline", { class: "line", points: valid.map((p) => `${x(p[0])},${y(p[1])}`).join(" ") }));
  }
  for (const [t, v] of valid) {
    const dot = svg("circle", { class: "dot", cx: x(t), cy: y(v), r: valid.length > 30 ? 1.5 : 2.5 });
    dot.append(svg("title", {}, `${formatDate(t)}: ${format(v, kind)}`));
    drawing.append(dot);
  }
  figure.append(drawing);
}

function render(report) {
  renderSummary(report);
  renderFindings(report.findings || []);
  renderMeasurements(report);
  renderCharts(report.series);
  document.body.dataset.generatedAt = String(report.generated_at);
}

async function load(refresh = false) {
  const button = $("refresh");
  button.disabled = true;
  button.textContent = "Checking…";
  if (refresh || !document.body.dataset.generatedAt) message("Running the health checks…");
  try {
    render(await apiJson(`/v1/monitoring${refresh ? "?refresh=true" : ""}`));
    message("");
  } catch (error) {
    message(`Could not run the health checks: ${error.message}`, true);
  } finally {
    button.disabled = false;
    button.textContent = "Refresh";
  }
}

let drawnWidth = 0;
new ResizeObserver(() => {  // the charts are drawn at their width, in pixels: draw them again when it changes
  if ($("charts").clientWidth !== drawnWidth) { drawnWidth = $("charts").clientWidth; drawCharts(); }
}).observe($("charts"));
$("refresh").onclick = () => load(true);
load();
