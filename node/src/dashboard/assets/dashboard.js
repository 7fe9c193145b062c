// The kubus dashboard: one server-sent-event stream (a snapshot, then every
// change as the store commits it), rendered at most once per frame. No
// polling; the browser reconnects by itself and resumes from the last mark.
"use strict";

const state = {
  columns: {},          // kind -> kubectl's wide columns
  rows: new Map(),      // kind -> Map("ns/name" -> row)
  mark: 0,
  tab: "overview",
  namespace: "",
  filter: "",
  dirty: true,
  podOrder: null,       // sorted pod keys, rebuilt when pods come or go
  podOrderAt: 0,
  events: [],           // event keys, newest last (bounded like the server)
  usage: { nodes: {}, pods: {} }, // the agents' latest figures: [millicores, bytes]
};
const EVENTS_KEPT = 1000;
const ROW_HEIGHT = 25;

// figures the benchmark and the tests read
window.kubusStats = { firstRenderMs: null, snapshotRows: 0, latencies: [], snapshots: 0, renders: 0 };
const pendingLatency = [];

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
const kindRows = (kind) => {
  let m = state.rows.get(kind);
  if (!m) { m = new Map(); state.rows.set(kind, m); }
  return m;
};
const keyOf = (r) => `${r.namespace}/${r.name}`;

// ---- the stream ----

function connect() {
  const es = new EventSource("/dashboard/stream");
  es.addEventListener("open", () => setStatus("live"));
  es.addEventListener("error", () => setStatus("connecting"));
  es.addEventListener("snapshot", (e) => {
    const s = JSON.parse(e.data);
    state.columns = s.columns;
    state.rows = new Map();
    state.events = [];
    for (const r of s.rows) put(r);
    state.mark = s.mark;
    state.podOrder = null;
    window.kubusStats.snapshots++;
    window.kubusStats.snapshotRows = s.rows.length;
    window.kubusStats.snapshotBytes = e.data.length;
    schedule();
  });
  es.addEventListener("usage", (e) => {
    state.usage = JSON.parse(e.data);
    schedule();
  });
  es.addEventListener("changes", (e) => {
    for (const u of JSON.parse(e.data)) {
      if (u.op === "put") put(u.row); else gone(u.kind, u.namespace, u.name);
      if (u.committedMs) pendingLatency.push(u.committedMs);
    }
    state.mark = Number(e.lastEventId.split("-")[1]) || state.mark;
    schedule();
  });
}

function put(r) {
  const m = kindRows(r.kind);
  const k = keyOf(r);
  if (!m.has(k)) {
    if (r.kind === "Pod") state.podOrder = null;
    if (r.kind === "Event") {
      state.events.push(k);
      while (state.events.length > EVENTS_KEPT) m.delete(state.events.shift());
    }
  }
  m.set(k, r);
}

function gone(kind, namespace, name) {
  const k = `${namespace}/${name}`;
  if (kindRows(kind).delete(k) && kind === "Pod") state.podOrder = null;
}

function setStatus(s) {
  const el = $("status");
  el.textContent = s;
  el.className = s;
}

function schedule() {
  if (state.dirty) return;
  state.dirty = true;
  requestAnimationFrame(render);
}

// ---- rendering ----

const AGE_UNITS = [[86400 * 365, "y"], [86400, "d"], [3600, "h"], [60, "m"], [1, "s"]];
function age(since) {
  if (!since) return "<unknown>";
  let s = Math.max(0, Math.floor((Date.now() - Date.parse(since)) / 1000));
  // kubectl's short form: two units while they say something
  for (let i = 0; i < AGE_UNITS.length; i++) {
    const [n, u] = AGE_UNITS[i];
    if (s >= n || u === "s") {
      const a = Math.floor(s / n);
      const rest = s - a * n;
      const next = AGE_UNITS[i + 1];
      if (next && a < 10 && u !== "y" && rest >= next[0]) return `${a}${u}${Math.floor(rest / next[0])}${next[1]}`;
      return `${a}${u}`;
    }
  }
  return `${s}s`;
}

function visible(kind) {
  const out = [];
  for (const r of kindRows(kind).values()) {
    if (state.namespace && r.namespace && r.namespace !== state.namespace) continue;
    if (state.filter && !r.name.includes(state.filter)) continue;
    out.push(r);
  }
  return out.sort((a, b) => keyOf(a) < keyOf(b) ? -1 : 1);
}

function cells(r) {
  const cols = state.columns[r.kind] || [];
  return r.cells.map((c, i) => (cols[i] === "AGE" || cols[i] === "LAST SEEN") ? age(r.since) : c);
}

function rowHtml(r, extra = []) {
  const cls = [r.health, r.terminating ? "terminating" : ""].join(" ");
  const cs = cells(r);
  const cols = state.columns[r.kind] || [];
  const tds = cs.map((c, i) => {
    if (i === 0 && cols[0] === "NAME") return `<td><a class="obj" data-open="${esc(r.kind)}|${esc(r.namespace)}|${esc(r.name)}">${esc(c)}</a></td>`;
    return `<td${cols[i] === "STATUS" ? ' class="status"' : ""}>${esc(c)}</td>`;
  });
  const ns = r.namespace !== "" || namespaced(r.kind) ? `<td>${esc(r.namespace)}</td>` : "";
  return `<tr class="${cls}" data-key="${esc(r.kind)}/${esc(r.namespace)}/${esc(r.name)}" data-status="${esc(statusOf(r))}">${ns}${tds.join("")}${extra.join("")}<td class="why">${esc(r.why || "")}</td></tr>`;
}

function statusOf(r) {
  const i = (state.columns[r.kind] || []).indexOf("STATUS");
  return i >= 0 ? r.cells[i] : r.health;
}

const NAMESPACED = new Set(["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "HorizontalPodAutoscaler", "Pod", "Service", "EndpointSlice", "PersistentVolumeClaim", "Event"]);
const namespaced = (k) => NAMESPACED.has(k);

function header(kind, extra = []) {
  const ns = namespaced(kind) ? "<th>NAMESPACE</th>" : "";
  return `<tr>${ns}${(state.columns[kind] || []).map((c) => `<th>${esc(c)}</th>`).join("")}${extra.map((c) => `<th>${esc(c)}</th>`).join("")}<th>WHY</th></tr>`;
}

function table(kind, title, extraHead = [], extraCells = () => []) {
  const rows = visible(kind);
  const body = rows.length ? rows.map((r) => rowHtml(r, extraCells(r))).join("") : "";
  return `<h2>${esc(title)} <small>(${rows.length})</small></h2>` +
    (rows.length ? `<table data-kind="${kind}"><thead>${header(kind, extraHead)}</thead><tbody>${body}</tbody></table>` : `<div class="empty">none</div>`);
}

function bar(used, total) {
  if (!total) return "";
  const pct = Math.min(100, Math.round((used / total) * 100));
  return `<span class="bar${pct >= 90 ? " full" : ""}"><i style="width:${pct}%"></i></span>${pct}%`;
}

function bytes(n) {
  const u = ["B", "Ki", "Mi", "Gi", "Ti"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)}${u[i]}`;
}

function renderOverview() {
  const nodes = [...kindRows("Node").values()];
  const pods = [...kindRows("Pod").values()];
  const alloc = new Map(); // node -> [cpu, mem, pods]
  const phase = { Running: 0, Pending: 0, Failed: 0, Succeeded: 0 };
  for (const p of pods) {
    const st = statusOf(p);
    if (st === "Running") phase.Running++;
    else if (st === "Pending" || st === "ContainerCreating") phase.Pending++;
    else if (p.health === "bad") phase.Failed++;
    if (!p.refers || !p.resources) continue;
    const a = alloc.get(p.refers) || [0, 0, 0];
    a[0] += p.resources[0]; a[1] += p.resources[1]; a[2]++;
    alloc.set(p.refers, a);
  }
  const ready = nodes.filter((n) => n.health !== "bad").length;
  const cards = [
    ["nodes ready", `${ready}/${nodes.length}`],
    ["pods running", phase.Running], ["pods pending", phase.Pending], ["pods failing", phase.Failed],
    ["deployments", kindRows("Deployment").size], ["services", kindRows("Service").size],
  ].map(([k, v]) => `<div class="card"><b>${esc(v)}</b>${esc(k)}</div>`).join("");
  $("overview").innerHTML = `<div class="cards">${cards}</div>` +
    table("Node", "Nodes", ["PODS", "CPU REQUESTED", "MEMORY REQUESTED", "CPU USED", "MEMORY USED"], (n) => {
      const a = alloc.get(n.name) || [0, 0, 0];
      const [cpu, mem] = n.resources || [0, 0];
      const used = state.usage.nodes[n.name];
      return [`<td>${a[2]}</td>`, `<td>${bar(a[0], cpu)} ${a[0]}m/${cpu}m</td>`, `<td>${bar(a[1], mem)} ${bytes(a[1])}/${bytes(mem)}</td>`,
        `<td class="cpu-used">${used ? `${bar(used[0], cpu)} ${used[0]}m` : "–"}</td>`,
        `<td class="memory-used">${used ? `${bar(used[1], mem)} ${bytes(used[1])}` : "–"}</td>`];
    });
}

function progress(r) {
  if (!r.progress) return ["<td></td>"];
  const [have, want] = r.progress;
  return [`<td>${bar(have, want || 1)} ${have}/${want}</td>`];
}

function renderWorkloads() {
  $("workloads").innerHTML = [
    ["Deployment", "Deployments"], ["StatefulSet", "StatefulSets"], ["DaemonSet", "DaemonSets"],
    ["Job", "Jobs"], ["CronJob", "CronJobs"], ["HorizontalPodAutoscaler", "HorizontalPodAutoscalers"],
    ["ReplicaSet", "ReplicaSets"],
  ].map(([k, t]) => table(k, t, ["PROGRESS"], progress)).join("");
}

function renderPods() {
  const m = kindRows("Pod");
  const filtered = state.namespace || state.filter;
  const now = performance.now();
  if (!state.podOrder || (filtered && now - state.podOrderAt > 250)) {
    state.podOrder = visible("Pod").map((r) => keyOf(r));
    state.podOrderAt = now;
  }
  const order = state.podOrder.filter((k) => m.has(k));
  const scroller = $("pod-scroller");
  $("pod-spacer").style.height = `${(order.length + 1) * ROW_HEIGHT}px`;
  const first = Math.max(0, Math.floor(scroller.scrollTop / ROW_HEIGHT) - 10);
  const count = Math.ceil(scroller.clientHeight / ROW_HEIGHT) + 20;
  const slice = order.slice(first, first + count).map((k) => m.get(k));
  const tbl = $("pod-table");
  tbl.style.top = `${first * ROW_HEIGHT}px`;
  tbl.tHead.innerHTML = header("Pod", ["CPU", "MEMORY"]);
  tbl.tBodies[0].innerHTML = slice.map((r) => rowHtml(r, podUsage(r))).join("");
  $("pod-count").textContent = `${order.length} pods`;
}

// a pod's figures as the agents measured them (kubus top's)
function podUsage(r) {
  const u = state.usage.pods[keyOf(r)];
  return [`<td class="cpu">${u ? `${u[0]}m` : "–"}</td>`, `<td class="memory">${u ? bytes(u[1]) : "–"}</td>`];
}

function renderServices() {
  const slices = [...kindRows("EndpointSlice").values()];
  $("services").innerHTML = table("Service", "Services", ["ENDPOINTS"], (s) => {
    const eps = slices.filter((x) => x.namespace === s.namespace && x.refers === s.name).flatMap((x) => x.endpoints || []);
    const shown = eps.slice(0, 6).join(", ") + (eps.length > 6 ? ` + ${eps.length - 6} more` : "");
    return [`<td class="endpoints">${esc(eps.length ? shown : "<none>")}</td>`];
  }) + table("PersistentVolumeClaim", "PersistentVolumeClaims");
}

function renderEvents() {
  const m = kindRows("Event");
  const rows = [...m.values()]
    .filter((r) => !state.namespace || r.namespace === state.namespace)
    .filter((r) => !state.filter || r.refers.includes(state.filter))
    .sort((a, b) => (a.since < b.since ? 1 : a.since > b.since ? -1 : 0))
    .slice(0, 300);
  $("events").innerHTML = `<h2>Events <small>(newest first, ${m.size} kept)</small></h2>` +
    `<table class="events"><thead>${header("Event")}</thead><tbody>${rows.map((r) => rowHtml(r)).join("")}</tbody></table>`;
}

function render() {
  state.dirty = false;
  const t0 = performance.now();
  switch (state.tab) {
    case "overview": renderOverview(); break;
    case "workloads": renderWorkloads(); break;
    case "pods": renderPods(); break;
    case "services": renderServices(); break;
    case "events": renderEvents(); break;
  }
  $("mark").textContent = state.mark ? `revision ${state.mark}` : "";
  const s = window.kubusStats;
  s.renders++;
  if (s.firstRenderMs === null && state.mark) s.firstRenderMs = performance.now();
  // a change counts as shown once the frame that draws it is painted
  if (pendingLatency.length) {
    const committed = pendingLatency.splice(0);
    requestAnimationFrame(() => {
      const shown = Date.now();
      for (const c of committed) s.latencies.push(shown - c);
      if (s.latencies.length > 100000) s.latencies.splice(0, s.latencies.length - 100000);
    });
  }
  s.lastRenderMs = performance.now() - t0;
  refreshNamespaces();
  if (state.detail) renderDetail();
}

function refreshNamespaces() {
  const sel = $("namespace");
  const names = [...kindRows("Namespace").keys()].map((k) => k.split("/")[1]).sort();
  const have = [...sel.options].slice(1).map((o) => o.value);
  if (names.join() === have.join()) return;
  sel.innerHTML = `<option value="">all</option>` + names.map((n) => `<option${n === state.namespace ? " selected" : ""}>${esc(n)}</option>`).join("");
}

// ---- details and history ----

function renderDetail() {
  const [kind, namespace, name] = state.detail;
  const r = kindRows(kind).get(`${namespace}/${name}`);
  const el = $("detail");
  el.hidden = false;
  if (!r) {
    el.innerHTML = `<h2>${esc(kind)} ${esc(namespace)}/${esc(name)}</h2><p class="empty">gone</p>
      <button data-history>History</button> <button data-close>Close</button>`;
    return;
  }
  const cols = state.columns[kind] || [];
  const facts = cells(r).map((c, i) => `<dt>${esc(cols[i])}</dt><dd>${esc(c)}</dd>`).join("");
  el.innerHTML = `<h2>${esc(kind)} ${esc(namespace ? namespace + "/" : "")}${esc(name)}</h2>
    <dl>${facts}<dt>revision</dt><dd>${r.revision}</dd>${r.owner ? `<dt>owner</dt><dd>${esc(r.owner)}</dd>` : ""}
    ${r.why ? `<dt>why</dt><dd class="why">${esc(r.why)}</dd>` : ""}</dl>
    <button data-history>History</button> <button data-close>Close</button>`;
}

async function showHistory(kind, namespace, name) {
  const out = $("history-out");
  $("history-kind").value = kind;
  $("history-namespace").value = namespace;
  $("history-name").value = name;
  switchTab("history");
  state.detail = null;
  $("detail").hidden = true;
  out.innerHTML = `<div class="empty">reading the change log…</div>`;
  const q = new URLSearchParams({ kind, namespace, name });
  const res = await fetch(`/dashboard/history?${q}`);
  if (!res.ok) { out.innerHTML = `<div class="empty">${esc(await res.text())}</div>`; return; }
  const h = await res.json();
  const note = h.from ? `The log starts after revision ${h.from}; older changes were compacted.` : "";
  const cut = h.truncated ? ` Read through revision ${h.through} only.` : "";
  out.innerHTML = `<h2>${esc(h.kind)} ${esc(h.namespace)}/${esc(h.name)}: ${h.revisions.length} revisions</h2><p class="empty">${esc(note + cut)}</p>` +
    (h.revisions.length ? "" : `<div class="empty">no change of it is in the log</div>`) +
    h.revisions.map((r) => {
      const when = r.committedMs ? new Date(r.committedMs).toISOString() : "";
      const lines = r.diff.map(([t, l]) => t === "…" ? `<span class="gap">…</span>` :
        `<span class="${t === "+" ? "add" : t === "-" ? "del" : "same"}">${esc(t + " " + l)}</span>`).join("");
      return `<div class="revision" data-revision="${r.revision}"><h3>${esc(r.type)} at revision ${r.revision} ${esc(when)}</h3>` +
        `<pre class="diff">${lines || `<span class="gap">${r.type === "DELETED" ? "deleted as it was" : "(no earlier revision in the log)"}</span>`}</pre></div>`;
    }).join("");
}

function switchTab(tab) {
  state.tab = tab;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("on", b.dataset.tab === tab);
  for (const s of document.querySelectorAll("section.tab")) s.hidden = s.id !== tab;
  schedule();
}

document.addEventListener("click", (e) => {
  const t = e.target.closest("[data-tab],[data-open],[data-history],[data-close]");
  if (!t) return;
  if (t.dataset.tab) switchTab(t.dataset.tab);
  else if (t.dataset.open) { state.detail = t.dataset.open.split("|"); renderDetail(); }
  else if (t.hasAttribute("data-history") && state.detail) showHistory(...state.detail);
  else if (t.hasAttribute("data-close")) { state.detail = null; $("detail").hidden = true; }
});
$("namespace").addEventListener("change", (e) => { state.namespace = e.target.value; state.podOrder = null; schedule(); });
$("filter").addEventListener("input", (e) => { state.filter = e.target.value.trim(); state.podOrder = null; schedule(); });
$("pod-scroller").addEventListener("scroll", () => schedule(), { passive: true });
$("history-form").addEventListener("submit", (e) => {
  e.preventDefault();
  showHistory($("history-kind").value, $("history-namespace").value.trim(), $("history-name").value.trim());
});
for (const k of ["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Service", "Pod", "Node", "ReplicaSet", "HorizontalPodAutoscaler", "PersistentVolumeClaim"]) {
  $("history-kind").insertAdjacentHTML("beforeend", `<option>${k}</option>`);
}
// ages move on without changes
setInterval(schedule, 1000);
state.dirty = false;
connect();
