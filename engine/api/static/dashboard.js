// The esm dashboard: polls the engine's /dashboard/api every two seconds (no other server, no internet).
"use strict";

const POLL_MS = 2000;
const state = { selected: null, charts: {}, treeRoot: null };

const $ = (sel) => document.querySelector(sel);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
};
const time = (epoch) => new Date(epoch * 1000).toISOString().slice(11, 23);
const short = (uuid) => uuid.slice(0, 8);
// a 56-digit sequence number in a cell: its head and tail (the whole in the tooltip)
const item = (s) => (s && s.length > 18 ? `${s.slice(0, 6)}…${s.slice(-8)}` : s ?? "");
const span = (r) => (r.first_item ? (r.first_item === r.last_item ? item(r.first_item) : `${item(r.first_item)} – ${item(r.last_item)}`) : "–");

async function getJson(path) {
  const resp = await fetch(path, { cache: "no-store" });
  if (!resp.ok) throw new Error(`${path}: ${resp.status}`);
  return resp.json();
}

function renderMappings(data) {
  const body = $("#mappings tbody");
  body.replaceChildren();
  const problems = data.mappings.filter((m) => (m.last_processing_result || "").startsWith("PROBLEM")).length;
  $("#summary").textContent = `${data.mappings.length} mapping${data.mappings.length === 1 ? "" : "s"}` +
    (problems ? `, ${problems} with a problem` : "");
  $("#no-mappings").hidden = data.mappings.length > 0;
  for (const m of data.mappings) {
    const result = m.last_processing_result || "";
    const row = el("tr", { className: m.uuid === state.selected ? "selected" : "" },
      el("td", { title: m.uuid }, el("code", {}, short(m.uuid))),
      el("td", { className: "wrap", title: m.source }, m.source),
      el("td", {}, m.function),
      el("td", { className: `state-${m.state}` }, m.state),
      el("td", { className: "wrap" + (result.startsWith("PROBLEM") ? " problem" : "") }, result || "–"),
      el("td", {}, m.state_transition_reason),
      el("td", { className: "num" }, m.records.toLocaleString()),
      el("td", { className: "num" }, m.invocations.toLocaleString()),
      el("td", { className: "num" + (m.errors ? " problem" : "") }, m.errors.toLocaleString()),
    );
    row.dataset.uuid = m.uuid;
    row.addEventListener("click", () => select(m));
    body.append(row);
  }
  if (!state.selected && data.mappings.length) select(data.mappings[0]);
  if (state.selected && !data.mappings.some((m) => m.uuid === state.selected)) {
    state.selected = null;
    $("#detail").hidden = true;
  }
}

function select(m) {
  if (state.selected !== m.uuid) {
    state.treeRoot = null;
    $("#tree-panel").hidden = true;
  }
  state.selected = m.uuid;
  $("#detail").hidden = false;
  $("#detail-uuid").textContent = m.uuid;
  $("#detail-source").textContent = `${m.source} → ${m.function}`;
  $("#lag-caption").textContent = m.kind.includes("kafka") ? "Offset lag (records behind)" :
    ["kinesis", "dynamodb"].includes(m.kind) ? "Iterator age (ms)" : "Queue depth (messages waiting)";
  for (const row of document.querySelectorAll("#mappings tbody tr")) {
    row.classList.toggle("selected", row.dataset.uuid === m.uuid);
  }
  refreshDetail();
}

function chart(id, series, columns) {
  const target = $(`#${id}`);
  const width = Math.max(260, target.clientWidth || 300);
  const existing = state.charts[id];
  if (existing && existing.width === width && existing.labels === series.map((s) => s.label).join()) {
    existing.plot.setData(columns);
    return;
  }
  if (existing) existing.plot.destroy();
  const plot = new uPlot({
    width, height: 150,
    scales: { x: { time: true } },
    axes: [{}, { size: 50 }],
    legend: { show: true },
    series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 1.5, points: { show: false } }))],
  }, columns, target);
  state.charts[id] = { plot, width, labels: series.map((s) => s.label).join() };
}

async function refreshDetail() {
  const uuid = state.selected;
  if (!uuid) return;
  const [series, journal] = await Promise.all([
    getJson(`/dashboard/api/mappings/${uuid}/series`),
    getJson(`/dashboard/api/mappings/${uuid}/journal?limit=20`),
  ]);
  if (uuid !== state.selected) return;
  const t = series.t;
  chart("chart-throughput", [{ label: "records/s", color: "#0969da" }], [t, series.records_per_s]);
  chart("chart-errors", [
    { label: "failed records/s", color: "#cf222e" },
    { label: "function errors/s", color: "#9a6700" },
  ], [t, series.failed_per_s, series.errors_per_s]);
  chart("chart-lag", [{ label: "lag", color: "#8250df" }], [t, series.lag.map((v) => v ?? null)]);
  renderInvocations(journal.rows);
  if (state.treeRoot !== null) showTree(state.treeRoot);
}

function renderInvocations(rows) {
  const body = $("#invocations tbody");
  body.replaceChildren();
  for (const r of rows) {
    const records = span(r);
    const row = el("tr", { title: r.first_item ? `${r.first_item} … ${r.last_item}` : "" },
      el("td", { className: "num" }, String(r.id)),
      el("td", {}, time(r.at)),
      el("td", {}, r.scope),
      el("td", { className: "num" }, `${r.attempt}${r.bisect_depth ? ` · half ${r.bisect_depth}` : ""}`),
      el("td", { className: "num" }, String(r.batch_size)),
      el("td", { className: `outcome-${r.outcome}` }, r.outcome),
      el("td", { className: "num" }, r.duration_ms.toFixed(1)),
      el("td", { className: "wrap", title: records }, records),
    );
    row.addEventListener("click", () => showTree(r.id));
    body.append(row);
  }
}

async function showTree(id) {
  state.treeRoot = id;
  const tree = await getJson(`/dashboard/api/journal/${id}/tree`);
  if (state.treeRoot !== id) return;
  $("#tree-panel").hidden = false;
  $("#tree-root").textContent = String(tree.root);
  const list = $("#tree");
  list.replaceChildren();
  const start = tree.rows.length ? tree.rows[0].at : 0;
  for (const r of tree.rows) {
    const detail = Object.entries(r.detail || {}).map(([k, v]) => `${k}=${Array.isArray(v) ? v.length + " items" : v}`).join(" ");
    const item = el("li", { style: `padding-left: ${0.4 + r.bisect_depth * 1.2}rem` },
      el("span", { className: "depth" }, r.bisect_depth ? "└ half " : ""),
      `attempt ${r.attempt} · ${r.batch_size} record${r.batch_size === 1 ? "" : "s"} · `,
      el("span", { className: `outcome-${r.outcome}` }, r.outcome),
      ` · +${(r.at - start).toFixed(3)} s · ${r.duration_ms.toFixed(1)} ms `,
      el("span", { className: "muted", title: `${r.first_item ?? ""} … ${r.last_item ?? ""}` }, `${span(r)} ${detail}`),
    );
    item.dataset.outcome = r.outcome;
    item.dataset.depth = String(r.bisect_depth);
    list.append(item);
  }
}

async function poll() {
  try {
    const data = await getJson("/dashboard/api/mappings");
    renderMappings(data);
    await refreshDetail();
    $("#updated").textContent = `updated ${time(data.now)} UTC`;
  } catch (err) {
    $("#updated").textContent = `engine unreachable: ${err.message}`;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

window.addEventListener("resize", () => { state.charts = Object.fromEntries(Object.entries(state.charts).map(([k, v]) => [k, { ...v, width: 0 }])); });
poll();
