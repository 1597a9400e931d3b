// genobatch dashboard: polls the JSON API every second and redraws. No framework, no build, nothing fetched
// from elsewhere. Text from runs (task names, logs) is always set as text, never parsed as HTML.
"use strict";

const POLL_MS = 1000;
const STATES = ["done", "cached", "running", "waiting", "failed"];
const app = document.getElementById("app");
const page = app.dataset.page;
const runId = app.dataset.run;
const controls = app.dataset.controls === "yes";

// The token (for cancel/terminate) comes once in the address, ?token=..., and is kept for this tab only.
(function keepToken() {
  const url = new URL(location.href);
  const token = url.searchParams.get("token");
  if (token) {
    sessionStorage.setItem("genobatch-token", token);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
})();

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, value);
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

async function api(path, options) {
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw Object.assign(new Error(data.error || response.statusText), { status: response.status });
  return data;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  seconds = Math.max(0, Math.round(seconds));
  const hrs = Math.floor(seconds / 3600), min = Math.floor((seconds % 3600) / 60), sec = seconds % 60;
  return hrs ? `${hrs}h ${min}m ${sec}s` : min ? `${min}m ${sec}s` : `${sec}s`;
}

function clock(ms) {
  if (!ms) return "–";
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function badge(text, kind) {
  return h("span", { class: `badge ${kind || text}` }, text);
}

function setLive(ok) {
  const live = document.getElementById("live");
  live.classList.toggle("stale", !ok);
  live.textContent = ok ? "● live" : "● reconnecting";
}

// Redraw a card in place: the page keeps its scroll position and what is selected.
function replace(id, node) {
  node.id = id;
  const old = document.getElementById(id);
  if (old) old.replaceWith(node); else app.append(node);
}

// --- the runs of the work directory -------------------------------------------------------------------------
function runsCard(data) {
  const rows = data.runs.map((r) => h("tr", { class: "clickable run-row", dataset: { run: r.id },
      onclick: () => { location.href = `/runs/${encodeURIComponent(r.id)}`; } },
    h("td", {}, h("a", { href: `/runs/${encodeURIComponent(r.id)}`, class: "mono" }, r.id)),
    h("td", {}, badge(r.status)),
    h("td", {}, clock(r.started)),
    h("td", { class: "num" }, duration(r.seconds)),
    h("td", { class: "num" }, r.samples),
    h("td", { class: "tasks-cell" }, miniBar(r), h("span", { class: "mini-count" }, `${r.done + r.cached} / ${r.total}`, r.failed ? h("span", { class: "reason" }, ` (${r.failed} failed)`) : null)),
    h("td", { class: "command-cell", title: r.command }, r.command)));
  return h("section", { class: "card" },
    h("h2", {}, "Runs", h("span", { class: "hint" }, "newest first; click a run to follow it")),
    rows.length ? h("table", { id: "runs-table" },
      h("thead", {}, h("tr", {}, ["Run", "Status", "Started", "Duration", "Samples", "Tasks done", "Command"].map((t, i) => h("th", { class: [3, 4].includes(i) ? "num" : "" }, t)))),
      h("tbody", {}, rows))
    : h("p", { class: "empty" }, "No runs yet in this work directory. `genobatch run --work-dir ...` starts one; it shows here as it starts."));
}

function queuesCard(data) {
  const states = ["SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"];
  const gib = (mib) => Math.round((mib / 1024) * 10) / 10;
  const rows = data.queues.map((q) => h("tr", { class: "queue", dataset: { queue: q.name } },
    h("td", {}, h("b", {}, q.name), " ", badge(q.state, q.state === "ENABLED" ? "done" : "failed")),
    h("td", { class: "num" }, q.priority),
    states.map((c) => h("td", { class: `num count-${c}` }, q.jobs[c] || 0)),
    h("td", {}, q.environments.map((e) => h("div", { class: "mono" },
      `${e.name}: ${e.vcpusUsed.toFixed(1)} / ${e.vcpus} vCPU, ${gib(e.memoryMiBUsed)} / ${gib(e.memoryMiB)} GiB in use`)))));
  return h("section", { class: "card queues" },
    h("h2", {}, "Engine queues", h("span", { class: "hint" }, data.engine ? "the engine is running" : "no engine running now: queued jobs wait for one")),
    rows.length ? h("div", { class: "table-wrap" }, h("table", { id: "queues-table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Queue"), h("th", { class: "num" }, "Priority"), states.map((c) => h("th", { class: "num" }, c)), h("th", {}, "Compute environments"))),
      h("tbody", {}, rows)))
    : h("p", { class: "empty" }, "No engine state in this work directory yet."));
}

function miniBar(r) {
  return h("div", { class: "bar mini" }, STATES.map((state) => h("span", { class: state, style: `width:${(100 * r[state]) / Math.max(1, r.total)}%` })));
}

async function drawRuns() {
  const [runs, queues] = await Promise.all([api("/api/runs"), api("/api/queues")]);
  replace("runs-card", runsCard(runs));
  replace("queues-card", queuesCard(queues));
}

async function drawQueues() {
  replace("queues-card", queuesCard(await api("/api/queues")));
}

// --- one run ------------------------------------------------------------------------------------------------
// The table shows one page of the run's tasks, filtered by the server: a run of 70,000 tasks is 28 MB of JSON.
const view = { filter: "all", search: "", offset: 0, job: new URLSearchParams(location.hash.slice(1)).get("job") || "", log: null, run: null };

function headCard(run) {
  const facts = [["Tasks", `${run.done + run.cached} / ${run.total}`, "tasks"], ["Done", run.done, "done"],
    ["Cached", run.cached, "cached"], ["Running", run.running, "running"], ["Waiting", run.waiting, "waiting"],
    ["Failed", run.failed, "failed"], ["Samples", run.samples, "samples"], ["Duration", duration(run.seconds), "duration"]];
  const links = h("div", { class: "links" },
    run.report ? h("a", { class: "button primary", id: "report-link", href: `/runs/${encodeURIComponent(run.id)}/report`, target: "_blank" }, "Run report") : null,
    run.multiqc ? h("a", { class: "button", id: "multiqc-link", href: `/runs/${encodeURIComponent(run.id)}/multiqc`, target: "_blank" }, "MultiQC") : null);
  return h("section", { class: "card" },
    h("div", { class: "run-head" }, h("h1", {}, run.id), h("span", { id: "run-status" }, badge(run.status)),
      h("span", { class: "reason" }, `started ${clock(run.started)}`, run.finished ? `, ended ${clock(run.finished)}` : ""), links),
    h("div", { class: "facts" }, facts.map(([label, value, kind]) =>
      h("div", { class: `fact ${kind}`, id: `fact-${kind}` }, h("div", { class: "label" }, label), h("div", { class: "value" }, value)))),
    h("div", { class: "command-line mono" }, run.command));
}

function stepsCard(run) {
  const rows = run.steps.map((s) => {
    const parts = STATES.map((state) => h("span", { class: state, style: `width:${(100 * s[state]) / Math.max(1, s.total)}%`, title: `${s[state]} ${state}` }));
    const states = STATES.filter((state) => s[state]).map((state) => h("span", {}, h("b", {}, s[state]), ` ${state}  `));
    return h("div", { class: "step", dataset: { step: s.step } },
      h("div", { class: "step-name" }, h("span", { class: "swatch", style: `background:${run.colours[s.step] || "#8796a8"}` }), s.step),
      h("div", { class: "bar" }, parts),
      h("div", { class: "count" }, `${s.done + s.cached} / ${s.total}`),
      h("div", { class: "states" }, states));
  });
  return h("section", { class: "card steps" }, h("h2", {}, "Progress per step"),
    rows.length ? rows : h("p", { class: "empty" }, "Planning: no task submitted yet."));
}

function timelineCard(run) {
  const bars = run.timeline;  // the earliest attempts, in the order they started (the server picks them)
  const card = h("section", { class: "card" }, h("h2", {}, "Timeline", h("span", { class: "hint" }, "each attempt: queued in grey, then running in its step's colour; failed in red")));
  if (!bars.length) return card.appendChild(h("p", { class: "empty" }, "No task has started yet.")) && card;
  const end = run.finished || run.now;
  const origin = Math.min(run.started, ...bars.map((b) => b.submit || b.start));
  const span = Math.max(1000, end - origin);
  const column = document.getElementById("main-column");
  const width = Math.max(560, (column ? column.clientWidth : 1000) - 40);
  const label = Math.min(240, Math.round(width * 0.3)), plot = width - label - 30, rowH = 16, top = 24;
  const x = (ms) => label + (plot * (ms - origin)) / span;
  const out = svg("svg", { class: "timeline", width, height: top + bars.length * rowH + 10, id: "timeline-svg" });
  const axis = svg("g", { class: "axis" });
  for (let i = 0; i <= 6; i++) {
    const t = origin + (span * i) / 6;
    axis.append(svg("line", { x1: x(t), x2: x(t), y1: top - 6, y2: top + bars.length * rowH }),
      svg("text", { x: x(t), y: 12, "text-anchor": "middle", class: "tick" }, duration((t - origin) / 1000)));
  }
  out.append(axis);
  bars.forEach((b, i) => {
    const y = top + i * rowH;
    const colour = run.colours[b.step] || "#6b8db5";
    const title = svg("title", {}, `${b.task} (attempt ${b.attempt})`);
    const name = `${b.task}${b.attempt > 1 ? ` #${b.attempt}` : ""}`;
    const room = Math.floor(label / 7);
    const text = name.length > room ? `${name.slice(0, room - 1)}…` : name;
    out.append(svg("text", { x: 0, y: y + 11, class: b.ok === false ? "failed-label" : "" }, text, svg("title", {}, name)));
    if (b.submit && b.start) out.append(svg("rect", { class: "queued", x: x(b.submit), y: y + 3, width: Math.max(1, x(b.start) - x(b.submit)), height: rowH - 6 }));
    if (b.start) {
      const stop = b.stop || run.now;
      const cls = b.ok === false ? "failed" : b.ok === null ? "active" : "ok";
      const rect = svg("rect", { class: cls, x: x(b.start), y: y + 2, width: Math.max(2, x(stop) - x(b.start)), height: rowH - 4, rx: 2 });
      if (cls !== "failed") rect.setAttribute("fill", colour);
      rect.append(title);
      out.append(rect);
    }
  });
  if (!run.finished) out.append(svg("line", { class: "now", x1: x(run.now), x2: x(run.now), y1: top - 6, y2: top + bars.length * rowH }));
  card.append(h("div", { class: "timeline-wrap" }, out));
  if (run.timelineTotal > bars.length) card.append(h("p", { class: "reason", id: "timeline-capped" }, `the first ${bars.length} of ${run.timelineTotal} attempts`));
  return card;
}

function tasksCard(run) {
  const counts = { all: run.total, ...Object.fromEntries(STATES.map((s) => [s, run[s]])) };
  const chips = ["all", ...STATES].map((state) => h("button", { class: `chip ${view.filter === state ? "on" : ""}`, dataset: { filter: state },
    onclick: () => { view.filter = state; view.offset = 0; refresh(); } }, `${state} ${counts[state]}`));
  const search = h("input", { type: "search", placeholder: "filter by task or sample", value: view.search, id: "task-search",
    oninput: (e) => { view.search = e.target.value; view.offset = 0; clearTimeout(view.typing); view.typing = setTimeout(refresh, 250); } });
  const rows = run.tasks.map((t) => h("tr", { class: `task ${t.job_id ? "clickable" : ""} ${t.job_id && t.job_id === view.job ? "selected" : ""}`,
      dataset: { job: t.job_id, group: t.group, task: t.name }, onclick: t.job_id ? () => openJob(t.job_id) : null },
    h("td", { class: "mono col-0" }, t.name), h("td", { class: "col-1" }, t.step), h("td", { class: "col-2" }, t.sample || "–"),
    h("td", { class: "col-3" }, badge(t.status)), h("td", { class: "num col-4" }, t.attempts || "–"),
    h("td", { class: "num col-5" }, t.exit === null ? "–" : t.exit),
    h("td", { class: "num col-6" }, t.start ? duration(((t.stop || run.now) - t.start) / 1000) : "–"),
    h("td", { class: "reason col-7" }, t.reason || "")));
  return h("section", { class: "card" }, h("h2", {}, "Tasks", h("span", { class: "hint" }, "click a job for its command, attempts and log")),
    h("div", { class: "filters" }, chips, search, pager(run)),
    h("div", { class: "table-wrap" }, h("table", { id: "tasks-table" }, h("thead", {}, h("tr", {}, ["Task", "Step", "Sample", "State", "Attempts", "Exit", "Run time", "Why it waits / failed"].map((t, i) => h("th", { class: `${[4, 5, 6].includes(i) ? "num" : ""} col-${i}` }, t)))),
      h("tbody", {}, rows))));
}

// "1–1,000 of 70,001" and the buttons to the pages before and after, beside the filters (none when one page holds
// them all).
function pager(run) {
  if (run.matching <= run.limit && run.offset === 0) return null;
  const go = (offset) => () => { view.offset = Math.max(0, offset); refresh(); };
  const first = run.tasks.length ? run.offset + 1 : 0;
  const count = (n) => n.toLocaleString("en");
  return h("div", { class: "pager", id: "tasks-pager" },
    h("button", { class: "button", id: "page-previous", disabled: run.offset === 0, onclick: go(run.offset - run.limit) }, "‹ previous"),
    h("span", { class: "reason", id: "page-range" }, `${count(first)}–${count(run.offset + run.tasks.length)} of ${count(run.matching)}`),
    h("button", { class: "button", id: "page-next", disabled: run.offset + run.limit >= run.matching, onclick: go(run.offset + run.limit) }, "next ›"));
}

// Redraw the tasks card; what had the keyboard's focus in it (the search box, a chip, a pager button) has it again.
function redrawTasks() {
  if (!view.run) return;
  const old = document.getElementById("tasks-card"), focused = document.activeElement;
  const selector = old && old.contains(focused) ? (focused.id ? `#${focused.id}` : focused.dataset.filter ? `button.chip[data-filter="${focused.dataset.filter}"]` : null) : null;
  replace("tasks-card", tasksCard(view.run));
  const again = selector && document.querySelector(selector);
  if (!again) return;
  again.focus();
  if (again.id === "task-search") again.setSelectionRange(again.value.length, again.value.length);
}

function refresh() {
  drawRun().then(() => setLive(true), (error) => { setLive(false); console.error(error); });
}

// Each answer is drawn only if no newer question was asked meanwhile (a click on a chip while a poll is out).
let asked = 0;
async function drawRun() {
  const query = new URLSearchParams({ state: view.filter, offset: view.offset });
  if (view.search) query.set("search", view.search);
  const mine = ++asked;
  let run;
  try {
    run = await api(`/api/runs/${encodeURIComponent(runId)}?${query}`);
  } catch (error) {
    if (error.status !== 404) throw error;
    replace("head-card", h("section", { class: "card" }, h("h1", { class: "mono" }, runId), h("p", { class: "notice", id: "waiting-run" }, `${error.message}. This page fills in as soon as the run records itself (after its input checks).`)));
    return;
  }
  if (mine !== asked) return;
  if (run.offset > 0 && run.offset >= run.matching) { view.offset = 0; return drawRun(); }  // the page emptied
  view.run = run;
  let layout = document.getElementById("layout");
  if (!layout) {
    layout = h("div", { id: "layout", class: "layout" }, h("div", { id: "main-column" }), h("div", { id: "panel-column" }));
    document.getElementById("head-card")?.remove();
    app.append(layout);
  }
  const column = document.getElementById("main-column");
  for (const [id, make] of [["head-card", headCard], ["steps-card", stepsCard], ["timeline-card", timelineCard]]) {
    const card = make(run), old = document.getElementById(id);
    card.id = id;
    if (old) old.replaceWith(card); else column.append(card);
  }
  if (document.getElementById("tasks-card")) redrawTasks();
  else column.append(Object.assign(tasksCard(run), { id: "tasks-card" }));
}

// --- one job: command, attempts, exit reason, and its log followed live ----------------------------------------
function openJob(jobId) {
  view.job = jobId;
  view.log = null;
  history.replaceState(null, "", `#job=${encodeURIComponent(jobId)}`);
  redrawTasks();
  drawJob();
}

function closeJob() {
  view.job = ""; view.log = null;
  history.replaceState(null, "", location.pathname);
  document.getElementById("panel-column").replaceChildren();
  document.getElementById("layout").classList.remove("with-panel");
  replace("timeline-card", timelineCard(view.run));
  redrawTasks();
}

async function stopJob(job) {
  const token = sessionStorage.getItem("genobatch-token") || "";
  const verb = ["SUBMITTED", "PENDING", "RUNNABLE"].includes(job.status) ? "cancel" : "terminate";
  if (!confirm(`${verb} ${job.task}?`)) return;
  try {
    await api(`/api/runs/${encodeURIComponent(runId)}/jobs/${encodeURIComponent(job.jobId)}/stop`, {
      method: "POST", headers: { "Content-Type": "application/json", "X-Genobatch-Token": token },
      body: JSON.stringify({ reason: `${verb}led from the dashboard` }) });
  } catch (error) { alert(error.message); }
}

async function drawJob() {
  if (!view.job) return;
  const panelColumn = document.getElementById("panel-column");
  if (!panelColumn) return;
  let job;
  try { job = await api(`/api/runs/${encodeURIComponent(runId)}/jobs/${encodeURIComponent(view.job)}`); }
  catch (error) { panelColumn.replaceChildren(h("section", { class: "card panel" }, h("p", { class: "notice" }, error.message))); return; }
  const layout = document.getElementById("layout");
  if (!layout.classList.contains("with-panel")) {
    layout.classList.add("with-panel");
    replace("timeline-card", timelineCard(view.run));
  }
  const last = job.attempts[job.attempts.length - 1];
  const attempts = job.attempts.map((a) => h("tr", {}, h("td", { class: "num" }, a.number), h("td", {}, clock(a.startedAt)),
    h("td", { class: "num" }, a.startedAt ? duration(((a.stoppedAt || job.now) - a.startedAt) / 1000) : "–"),
    h("td", { class: "num" }, a.exitCode ?? "–"), h("td", {}, a.exitReason || (a.stoppedAt ? "" : "running")), h("td", { class: "reason" }, a.reason || "")));
  const stop = controls && job.active ? h("button", { class: "button danger", id: "stop-job", onclick: () => stopJob(job) },
    ["SUBMITTED", "PENDING", "RUNNABLE"].includes(job.status) ? "Cancel job" : "Terminate job") : null;
  const panel = h("section", { class: "card panel", id: "job-panel", dataset: { job: job.jobId, status: job.status } },
    h("button", { class: "button close", onclick: closeJob, title: "close" }, "×"),
    h("h2", {}, job.task, " ", badge(job.status)),
    h("dl", {}, h("dt", {}, "job id"), h("dd", { class: "mono" }, job.jobId), h("dt", {}, "step / sample"), h("dd", {}, `${job.step} / ${job.sample || "–"}`),
      h("dt", {}, "resources"), h("dd", {}, `${job.vcpus} vCPU, ${job.memoryMiB} MiB`),
      h("dt", {}, "exit code"), h("dd", { id: "job-exit" }, job.exitCode ?? "–"),
      h("dt", {}, job.active ? "why it waits" : "reason"), h("dd", { id: "job-reason" }, (last && last.reason) || job.statusReason || "–")),
    stop,
    h("h3", {}, "Command"), h("pre", { class: "command", id: "job-command" }, job.command || "(not known: its task file is gone)"),
    h("h3", {}, "Attempts"), attempts.length ? h("table", {}, h("thead", {}, h("tr", {}, ["#", "Started", "Took", "Exit", "Exit reason", "Reason"].map((t) => h("th", {}, t)))), h("tbody", {}, attempts))
      : h("p", { class: "empty" }, "Not started yet."),
    logBlock(job));
  const old = document.getElementById("job-panel");
  if (old && view.log && view.log.job === job.jobId) {
    const keep = old.querySelector(".log-block");
    panel.querySelector(".log-block").replaceWith(keep);
    old.replaceWith(panel);
  } else {
    panelColumn.replaceChildren(panel);
  }
  if (job.attempts.length) followLog(job);
}

function logBlock(job) {
  const stream = (view.log && view.log.stream) || "stderr";
  const pick = (name) => h("button", { class: `chip ${stream === name ? "on" : ""}`, dataset: { stream: name },
    onclick: () => {
      view.log = { job: job.jobId, stream: name, offset: null, attempt: null };
      document.getElementById("job-panel")?.remove();
      drawJob();
    } }, name);
  return h("div", { class: "log-block" },
    h("div", { class: "log-head" }, h("h3", {}, "Log"), pick("stderr"), pick("stdout"), h("span", { class: "following", id: "log-following" })),
    h("pre", { class: "log", id: "job-log" }));
}

let logBusy = false;
async function followLog(job) {
  if (logBusy) return;
  if (!view.log || view.log.job !== job.jobId) view.log = { job: job.jobId, stream: "stderr", offset: null, attempt: null };
  const state = view.log;
  const last = job.attempts[job.attempts.length - 1].number;
  if (state.attempt !== null && state.attempt !== last) { state.offset = null; document.getElementById("job-log").textContent = ""; }
  logBusy = true;
  try {
    const query = new URLSearchParams({ stream: state.stream, attempt: last });
    if (state.offset !== null) query.set("offset", state.offset);
    const chunk = await api(`/api/runs/${encodeURIComponent(runId)}/jobs/${encodeURIComponent(job.jobId)}/log?${query}`);
    if (view.log !== state) return;
    const pre = document.getElementById("job-log");
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    if (pre.dataset.placeholder && chunk.text) { pre.textContent = ""; delete pre.dataset.placeholder; }
    if (state.offset === null && chunk.offset > 0) pre.textContent = `… (${chunk.offset} bytes before)\n`;
    pre.append(chunk.text);
    if (!pre.textContent) { pre.textContent = chunk.missing ? "(no log file)" : "(empty so far)"; pre.dataset.placeholder = "1"; }
    if (atBottom) pre.scrollTop = pre.scrollHeight;
    state.offset = chunk.nextOffset; state.attempt = last;
    document.getElementById("log-following").textContent = chunk.active ? `following attempt ${last}…` : `attempt ${last}, ended`;
  } finally { logBusy = false; }
}

// --- polling ----------------------------------------------------------------------------------------------------
async function tick() {
  const began = performance.now();
  try {
    if (page === "runs") await drawRuns();
    else if (page === "queues") await drawQueues();
    else if (page === "run") { await drawRun(); await drawJob(); }
    setLive(true);
  } catch (error) {
    setLive(false);
    console.error(error);
  }
  const finished = view.run && view.run.status !== "running";
  const took = performance.now() - began;  // a run of 10,000 tasks takes the server ~0.5 s: ask less often then
  setTimeout(tick, Math.max(finished ? 5 * POLL_MS : POLL_MS, 3 * took));
}

tick();
