import Hummingbird
import NIOCore

/// The dashboard: one page of HTML with a small script (no build step) that reads the API. The token a
/// user pastes is kept in the browser's localStorage and sent as a bearer token. See docs/dashboard.md.
enum Dashboard {
    static func page() -> Response {
        Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache",
                                        .contentSecurityPolicy: "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"],
                 body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }

    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sluice</title>
<style>
:root { --bg:#f6f7f9; --fg:#1d2329; --muted:#6b7480; --line:#dde1e6; --card:#fff; --ok:#1f883d; --bad:#cf222e; --warn:#bf8700; --run:#0969da; --idle:#8c959f; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; background:var(--bg); color:var(--fg); }
header { display:flex; flex-wrap:wrap; gap:.5rem 1rem; align-items:center; padding:.6rem 1rem; background:#24292f; color:#fff; }
header a { color:#fff; text-decoration:none; font-weight:600; }
header nav { display:flex; gap:1rem; }
header .token { margin-left:auto; display:flex; gap:.4rem; align-items:center; }
header input { width:12rem; max-width:40vw; }
main { padding:1rem; max-width:1200px; margin:0 auto; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:.8rem 1rem; margin-bottom:1rem; }
h1 { font-size:1.2rem; margin:.2rem 0 .6rem; word-break:break-all; } h2 { font-size:1rem; margin:.2rem 0 .6rem; }
.scroll { overflow-x:auto; }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; padding:.35rem .5rem; border-bottom:1px solid var(--line); white-space:nowrap; vertical-align:top; }
th { color:var(--muted); font-weight:600; font-size:.85rem; }
td.wrap { white-space:normal; word-break:break-word; }
a { color:var(--run); }
.badge { display:inline-block; padding:.05rem .5rem; border-radius:999px; font-size:.8rem; font-weight:600; color:#fff; background:var(--idle); }
.s-success { background:var(--ok); } .s-failed, .s-upstream_failed { background:var(--bad); } .s-partial_success, .s-rolled_back { background:var(--warn); }
.s-running, .s-open { background:var(--run); } .s-complete, .s-delivered { background:var(--ok); } .s-timed_out, .s-missing { background:var(--warn); } .s-cancelled, .s-skipped { background:var(--idle); } .s-pending { background:#afb8c1; color:#24292f; }
.bar { position:relative; height:.9rem; background:#eaeef2; border-radius:4px; overflow:hidden; min-width:8rem; }
.bar > span { position:absolute; top:0; bottom:0; left:0; background:var(--run); }
.bar > span.fail { background:var(--bad); }
.muted { color:var(--muted); }
.row { display:flex; flex-wrap:wrap; gap:.5rem; align-items:center; }
button { font:inherit; padding:.3rem .8rem; border-radius:6px; border:1px solid var(--line); background:#f6f8fa; cursor:pointer; }
button.danger { color:var(--bad); border-color:#f5c2c7; }
button:disabled { opacity:.5; cursor:default; }
input, select { font:inherit; padding:.25rem .4rem; border:1px solid var(--line); border-radius:6px; }
pre { background:#0d1117; color:#e6edf3; padding:.6rem; border-radius:6px; overflow:auto; max-height:24rem; font-size:12px; white-space:pre-wrap; word-break:break-all; }
.gantt { position:relative; }
.gantt .lane { display:flex; align-items:center; gap:.5rem; margin:.15rem 0; }
.gantt .label { width:9rem; flex:none; overflow:hidden; text-overflow:ellipsis; white-space:nowrap; font-size:.85rem; }
.gantt .track { position:relative; flex:1; height:.9rem; background:#f0f2f4; border-radius:3px; min-width:6rem; }
.gantt .seg { position:absolute; top:0; bottom:0; border-radius:3px; min-width:2px; }
.events { max-height:20rem; overflow:auto; font-family:ui-monospace, monospace; font-size:12px; }
.events div { padding:.1rem 0; border-bottom:1px dotted var(--line); word-break:break-word; }
#msg { position:fixed; bottom:1rem; left:50%; transform:translateX(-50%); background:#24292f; color:#fff; padding:.5rem 1rem; border-radius:6px; display:none; max-width:90vw; }
@media (max-width: 640px) { main { padding:.5rem; } .gantt .label { width:5.5rem; } header .token { margin-left:0; width:100%; } header input { flex:1; max-width:none; } }
</style>
</head>
<body>
<header>
  <a href="#/">Sluice</a>
  <nav><a href="#/">Runs</a><a href="#/sessions">Sessions</a><a href="#/schedules">Schedules</a></nav>
  <div class="token"><input id="token" type="password" placeholder="API token" autocomplete="off" aria-label="API token"><button id="save">Save</button></div>
</header>
<main id="main"></main>
<div id="msg" role="status"></div>
<script>
"use strict";
const $ = (s, el = document) => el.querySelector(s);
const main = $("#main");
const tokenInput = $("#token");
tokenInput.value = localStorage.getItem("sluice.token") || "";
$("#save").onclick = () => { localStorage.setItem("sluice.token", tokenInput.value.trim()); say("token saved in this browser"); route(); };
function headers() { const t = localStorage.getItem("sluice.token"); return t ? { "Authorization": "Bearer " + t } : {}; }
function say(text) { const m = $("#msg"); m.textContent = text; m.style.display = "block"; clearTimeout(say.t); say.t = setTimeout(() => m.style.display = "none", 4000); }
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) { if (k === "class") e.className = v; else if (k.startsWith("on")) e[k] = v; else if (v !== undefined && v !== null) e.setAttribute(k, v); }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}
async function api(path, options = {}) {
  const r = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  const type = r.headers.get("content-type") || "";
  const body = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) { const e = new Error(body && body.detail ? body.error + ": " + body.detail : "HTTP " + r.status); e.status = r.status; throw e; }
  return body;
}
function badge(s) { return el("span", { class: "badge s-" + s }, s.replace("_", " ")); }
function dur(ms) { if (ms == null) return "–"; const s = Math.round(ms / 1000); if (s < 60) return (ms < 10000 ? (ms / 1000).toFixed(1) : s) + "s"; const m = Math.floor(s / 60); if (m < 60) return m + "m " + (s % 60) + "s"; return Math.floor(m / 60) + "h " + (m % 60) + "m"; }
function started(stage) { return stage.tasks.filter(t => t.attempts.length); }
function elapsed(t) { return t ? Date.now() - Date.parse(t) : null; }
function when(t) { return t ? new Date(t).toLocaleString() : "–"; }
let timers = [];
let aborter = null;
function stopLive() { timers.forEach(clearInterval); timers = []; if (aborter) { aborter.abort(); aborter = null; } }

async function route() {
  stopLive();
  const h = location.hash || "#/";
  try {
    let m;
    if ((m = h.match(/^#\/runs\/([A-Za-z0-9-]+)$/))) await runPage(m[1]);
    else if (h === "#/schedules") await schedulesPage();
    else if ((m = h.match(/^#\/sessions\/([A-Za-z0-9._-]+)$/))) await sessionPage(m[1]);
    else if (h.startsWith("#/sessions")) await sessionsPage();
    else await runsPage();
  } catch (e) {
    main.replaceChildren(el("div", { class: "card" }, el("h2", {}, "Cannot load"), el("p", {}, e.message),
      e.status === 401 ? el("p", { class: "muted" }, "Paste a token from `sluice token create NAME` above.") : null));
  }
}
window.addEventListener("hashchange", route);

// Runs list
async function runsPage() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const filters = el("div", { class: "row" },
    el("input", { id: "f-pipeline", placeholder: "pipeline", value: params.get("pipeline") || "" }),
    el("select", { id: "f-status" }, ["", "running", "pending", "success", "partial_success", "failed", "cancelled"].map(s => el("option", { value: s }, s || "any status"))),
    el("button", { onclick: () => load(null) }, "Filter"));
  const table = el("tbody");
  const more = el("button", { style: "display:none" }, "Older runs");
  const pipelines = el("div");
  main.replaceChildren(el("div", { class: "card" }, el("h1", {}, "Runs"), filters,
    el("div", { class: "scroll" }, el("table", {}, el("thead", {}, el("tr", {}, ["Status", "Run", "Pipeline", "Started", "Duration", "Trigger"].map(t => el("th", {}, t)))), table)), more),
    pipelines);
  let cursor = null;
  async function load(from) {
    const q = new URLSearchParams({ limit: "50" });
    const p = $("#f-pipeline").value.trim(), s = $("#f-status").value;
    if (p) q.set("pipeline", p); if (s) q.set("status", s); if (from) q.set("cursor", from);
    const page = await api("/api/runs?" + q);
    if (!from) table.replaceChildren();
    for (const r of page.runs) {
      table.append(el("tr", {}, el("td", {}, badge(r.status), r.interrupted ? el("span", { class: "muted" }, " interrupted") : null),
        el("td", {}, el("a", { href: "#/runs/" + r.run_id }, r.run_id)), el("td", {}, r.pipeline), el("td", {}, when(r.started_at || r.created_at)),
        el("td", {}, dur(r.duration_ms)), el("td", { class: "wrap" }, r.trigger)));
    }
    if (!page.runs.length && !from) table.append(el("tr", {}, el("td", { colspan: "6", class: "muted" }, "No runs.")));
    cursor = page.next_cursor || null;
    more.style.display = cursor ? "" : "none";
  }
  more.onclick = () => load(cursor);
  await load(null);
  timers.push(setInterval(() => { if (!cursor) load(null).catch(() => {}); }, 5000));
  try {
    const served = await api("/api/pipelines");
    if (served.serving && served.items.length) {
      pipelines.replaceChildren(el("div", { class: "card" }, el("h2", {}, "Pipelines"), served.items.map(p => triggerForm(p))));
    }
  } catch (e) { /* reads refused: shown above */ }
}
function triggerForm(p) {
  const inputs = Object.entries(p.params || {}).map(([k, v]) => el("label", {}, k + " ", el("input", { "data-param": k, value: v })));
  const form = el("div", { class: "row", style: "margin:.4rem 0" }, el("strong", {}, p.name), inputs,
    el("button", { onclick: async () => {
      const params = {}; form.querySelectorAll("[data-param]").forEach(i => params[i.dataset.param] = i.value);
      try { const r = await api("/api/pipelines/" + encodeURIComponent(p.name) + "/runs", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ params }) });
        if (r.run_id) location.hash = "#/runs/" + r.run_id; else say(p.name + ": " + r.status);
      } catch (e) { say(e.message); } } }, "Trigger"),
    p.schedule ? el("span", { class: "muted" }, p.schedule.trigger + (p.schedule.next_fire_at ? " · next " + when(p.schedule.next_fire_at) : "")) : null);
  return form;
}

// Schedules
async function schedulesPage() {
  const s = await api("/api/schedules");
  const body = el("tbody");
  for (const x of s.items) body.append(el("tr", {}, el("td", {}, x.pipeline), el("td", {}, x.trigger), el("td", {}, x.time_zone), el("td", {}, when(x.next_fire_at)), el("td", {}, x.missed), el("td", {}, x.overlap)));
  if (!s.items.length) body.append(el("tr", {}, el("td", { colspan: "6", class: "muted" }, s.serving ? "No schedules." : "This server (sluice ui) serves no pipelines: schedules are shown by sluice serve --http.")));
  main.replaceChildren(el("div", { class: "card" }, el("h1", {}, "Schedules"),
    el("div", { class: "scroll" }, el("table", {}, el("thead", {}, el("tr", {}, ["Pipeline", "Trigger", "Zone", "Next", "Missed", "Overlap"].map(t => el("th", {}, t)))), body))));
}

// Sessions
function members(s) { return s.members.map(m => el("span", { style: "margin-right:.6rem;white-space:nowrap" }, m.title + " ", badge(m.status), m.late ? el("span", { class: "muted" }, " late") : null)); }
async function sessionsPage(again) {
  const page = await api("/api/sessions?limit=100");
  const body = el("tbody");
  for (const s of page.items) body.append(el("tr", {}, el("td", {}, badge(s.status)), el("td", {}, el("a", { href: "#/sessions/" + s.session_id }, s.session_id)),
    el("td", {}, s.title), el("td", {}, when(s.opened_at)), el("td", {}, s.status === "open" ? "deadline " + when(s.deadline) : when(s.closed_at)), el("td", { class: "wrap" }, members(s))));
  if (!page.items.length) body.append(el("tr", {}, el("td", { colspan: "6", class: "muted" }, "No sessions: a run of a pipeline with session: opens one.")));
  main.replaceChildren(el("div", { class: "card" }, el("h1", {}, "Sessions"),
    el("div", { class: "scroll" }, el("table", {}, el("thead", {}, el("tr", {}, ["Status", "Session", "Title", "Opened", "Closed", "Members"].map(t => el("th", {}, t)))), body))));
  if (!again) timers.push(setInterval(() => sessionsPage(true).catch(() => {}), 5000));
}
async function sessionPage(id, again) {
  const s = await api("/api/sessions/" + id);
  const rows = s.members.map(m => el("tr", {}, el("td", {}, m.title), el("td", {}, badge(m.status), m.late ? el("span", { class: "muted" }, " late") : null),
    el("td", {}, m.run_id ? el("a", { href: "#/runs/" + m.run_id }, m.run_id) : el("span", { class: "muted" }, "no run yet"))));
  const notes = (s.notifications || []).map(n => el("tr", {}, el("td", {}, n.kind), el("td", { class: "wrap" }, n.channel), el("td", {}, badge(n.status)),
    el("td", {}, String(n.attempts)), el("td", { class: "wrap" }, n.delivered_at ? when(n.delivered_at) : (n.last_error || ""))));
  main.replaceChildren(
    el("div", { class: "card" }, el("h1", {}, s.title, " ", el("span", { class: "muted" }, s.session_id)),
      el("div", { class: "row" }, badge(s.status), s.key ? el("span", { class: "muted" }, "key " + s.key) : null,
        el("span", { class: "muted" }, "opened " + when(s.opened_at)), el("span", { class: "muted" }, (s.status === "open" ? "deadline " + when(s.deadline) : "closed " + when(s.closed_at)))),
      s.missing.length ? el("p", {}, "Missing: " + s.missing.join(", ")) : null),
    el("div", { class: "card" }, el("h2", {}, "Members"), el("div", { class: "scroll" }, el("table", {}, el("thead", {}, el("tr", {}, ["Pipeline", "Status", "Run"].map(t => el("th", {}, t)))), el("tbody", {}, rows)))),
    el("div", { class: "card" }, el("h2", {}, "Notifications"), notes.length ? el("div", { class: "scroll" }, el("table", {}, el("thead", {}, el("tr", {}, ["Kind", "Channel", "Status", "Attempts", "Delivered / last error"].map(t => el("th", {}, t)))), el("tbody", {}, notes)))
      : el("p", { class: "muted" }, "None queued yet.")));
  if (s.status === "open" && !again) timers.push(setInterval(() => sessionPage(id, true).catch(() => {}), 3000));
}

// Run detail
async function runPage(id) {
  const head = el("div", { class: "card" });
  const stages = el("div", { class: "card" });
  const timeline = el("div", { class: "card" });
  const counters = el("div", { class: "card", style: "display:none" });
  const events = el("div", { class: "events", id: "events" });
  const logCard = el("div", { class: "card", style: "display:none" });
  main.replaceChildren(head, stages, timeline, counters, el("div", { class: "card" }, el("h2", {}, "Events"), events), logCard);
  let report = null;
  async function act(action) {
    try { const r = await api(`/api/runs/${id}/${action}`, { method: "POST" }); say(action + ": " + r.detail); refresh(); }
    catch (e) { say(e.message); }
  }
  async function refresh() {
    report = await api(`/api/runs/${id}`);
    const r = report, terminal = !["pending", "running"].includes(r.status);
    head.replaceChildren(el("h1", {}, r.pipeline, " ", el("span", { class: "muted" }, r.run_id)),
      el("div", { class: "row" }, badge(r.status), r.cancel_requested ? el("span", { class: "muted" }, "cancel requested") : null,
        r.interrupted ? el("span", { class: "muted" }, "interrupted: nobody executes it") : null,
        el("span", { class: "muted" }, "trigger " + r.trigger), el("span", { class: "muted" }, "started " + when(r.started_at)), el("span", { class: "muted" }, "duration " + dur(r.duration_ms ?? elapsed(r.started_at)))),
      el("div", { class: "row", style: "margin-top:.6rem" },
        el("button", { class: "danger", id: "cancel", disabled: terminal ? "" : null, onclick: () => { if (confirm("Cancel run " + id + "?")) act("cancel"); } }, "Cancel"),
        el("button", { id: "retry", disabled: (terminal && r.status !== "success") || r.interrupted ? null : "", onclick: () => act("retry") }, "Retry failed"),
        el("button", { id: "resume", disabled: (terminal && r.status !== "success") || r.interrupted ? null : "", onclick: () => act("resume") }, "Resume")));
    const rows = r.stages.map(s => {
      const p = s.progress;
      const bar = p ? el("div", { class: "bar", title: p.percent + "%" }, el("span", { style: `width:${Math.min(100, p.expected ? p.done * 100 / p.expected : 0)}%` }),
        el("span", { class: "fail", style: `left:${p.expected ? p.done * 100 / p.expected : 0}%;width:${p.expected ? p.failed * 100 / p.expected : 0}%` })) : null;
      const text = p ? `${p.done + p.failed}/${p.expected}${p.growing ? "+" : ""} · ${p.rate_per_second}/s` + (p.eta_seconds != null && s.status === "running" ? ` · ETA ${p.growing ? "≥ " : ""}${dur(p.eta_seconds * 1000)}` : "") : "";
      return el("tr", {}, el("td", {}, s.name), el("td", {}, badge(s.status)), el("td", {}, dur(s.duration_ms ?? (s.status === "running" ? elapsed(s.started_at) : null))), el("td", {}, bar, el("div", { class: "muted" }, text)),
        el("td", { class: "wrap" }, s.waiting || s.reason || ""),
        el("td", {}, started(s).slice(0, 8).map(t => el("button", { title: t.key, onclick: () => showLog(t, s.name), style: "margin:0 .3rem .2rem 0;padding:0 .4rem" }, (s.tasks.length > 1 ? t.key.slice(0, 10) : "log"))), started(s).length > 8 ? el("span", { class: "muted" }, "…") : null));
    });
    stages.replaceChildren(el("h2", {}, "Stages"), el("div", { class: "scroll" }, el("table", {}, el("thead", {}, el("tr", {}, ["Stage", "Status", "Duration", "Progress", "Note", "Logs"].map(t => el("th", {}, t)))), el("tbody", {}, rows))));
    drawTimeline(r);
    const all = r.stages.filter(s => s.counters || s.rejected);
    counters.style.display = all.length ? "" : "none";
    counters.replaceChildren(el("h2", {}, "Counters"), ...all.map(s => el("div", {}, el("strong", {}, s.name + ": "),
      Object.entries(s.counters || {}).map(([k, v]) => k + " " + v).join(", "), s.rejected ? ` · rejected ${s.rejected}` : "")));
    return terminal;
  }
  function drawTimeline(r) {
    const t0 = Date.parse(r.started_at || r.created_at);
    const end = r.finished_at ? Date.parse(r.finished_at) : Date.now();
    const span = Math.max(1, end - t0);
    const color = s => getComputedStyle(document.documentElement).getPropertyValue({ success: "--ok", failed: "--bad", running: "--run", partial_success: "--warn", timed_out: "--bad", hung: "--bad", lost: "--warn" }[s] || "--idle");
    const lane = (label, segs) => el("div", { class: "lane" }, el("div", { class: "label", title: label }, label), el("div", { class: "track" }, segs.map(([a, b, s, title]) => {
      const left = Math.max(0, (Date.parse(a) - t0) / span * 100), right = Math.min(100, ((b ? Date.parse(b) : end) - t0) / span * 100);
      return el("div", { class: "seg", title, style: `left:${left}%;width:${Math.max(0.3, right - left)}%;background:${color(s)}` });
    })));
    const lanes = [];
    for (const s of r.stages) {
      if (s.started_at) lanes.push(lane(s.name, [[s.started_at, s.finished_at, s.status, s.name + " " + s.status]]));
      for (const t of s.tasks.filter(t => t.attempts.length).slice(0, 30)) if (s.tasks.length > 1 || t.attempts.length > 1)
        lanes.push(lane("  " + s.name + "/" + t.key, t.attempts.map(a => [a.started_at, a.finished_at, a.outcome, `attempt ${a.number}: ${a.outcome}`])));
    }
    timeline.replaceChildren(el("h2", {}, "Timeline"), el("div", { class: "gantt" }, lanes.length ? lanes : el("p", { class: "muted" }, "Nothing started yet.")),
      el("div", { class: "muted" }, `${when(r.started_at || r.created_at)} → ${r.finished_at ? when(r.finished_at) : "now"} (${dur(span)})`));
  }
  async function showLog(task, stage) {
    logCard.style.display = "";
    const pre = el("pre", {}, "loading…");
    const which = el("select", {}, el("option", { value: "stdout" }, "stdout"), el("option", { value: "stderr" }, "stderr"));
    logCard.replaceChildren(el("h2", {}, `Log of ${stage}/${task.key} (task ${task.id})`), el("div", { class: "row" }, which), pre);
    async function load() {
      try { pre.textContent = await api(`/api/runs/${id}/tasks/${task.id}/logs?stream=${which.value}&tail=65536`) || "(empty)"; }
      catch (e) { pre.textContent = e.message; }
    }
    which.onchange = load;
    await load();
    logCard.scrollIntoView({ behavior: "smooth" });
  }
  async function stream() {
    aborter = new AbortController();
    let last = 0;
    for (let tries = 0; tries < 50 && aborter; tries++) {
      try {
        const r = await fetch(`/api/runs/${id}/events/stream?after=${last}`, { headers: headers(), signal: aborter.signal });
        if (!r.ok) { events.append(el("div", { class: "muted" }, "events: HTTP " + r.status)); return; }
        const reader = r.body.getReader(), dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, i); buf = buf.slice(i + 2);
            let name = "message", data = "";
            for (const line of block.split("\n")) { if (line.startsWith("event: ")) name = line.slice(7); else if (line.startsWith("data: ")) data += line.slice(6); }
            if (!data) continue;
            const e = JSON.parse(data);
            if (name === "end") { refresh(); return; }
            last = e.id;
            events.append(el("div", {}, el("span", { class: "muted" }, new Date(e.time).toLocaleTimeString() + " "), e.event + " ", e.stage ? "[" + e.stage + "] " : "", e.message));
            events.scrollTop = events.scrollHeight;
            if (/^(stage|run)\./.test(e.event)) refresh().catch(() => {});
          }
        }
      } catch (e) { if (e.name === "AbortError") return; await new Promise(r => setTimeout(r, 1000)); }
    }
  }
  const terminal = await refresh();
  stream();
  if (!terminal) timers.push(setInterval(() => refresh().then(t => { if (t) stopTimers(); }).catch(() => {}), 2000));
  function stopTimers() { timers.forEach(clearInterval); timers = []; }
}
route();
</script>
</body>
</html>
"""#
}
