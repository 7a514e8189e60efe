/* ccfo operator dashboard: one page to see the site and act on it.
 *
 * Vanilla JS, no build step, served by the controller. It reads only the /api/v1 routes, with the
 * operator's bearer token kept in sessionStorage (never localStorage or a cookie). Live updates come
 * from the SSE stream, read with fetch() because EventSource cannot send an Authorization header; an
 * event only says "something changed": the page re-reads the JSON it shows, debounced. Everything the
 * server sends is inserted as text, never as HTML. The drills and checklists panels live in runbooks.js,
 * which registers its own parts (see `parts`) and role renderers before the page starts; the managed servers
 * and the section-III switches live in servers.js, which also draws from each status read (statusRenderers);
 * the controller cluster's members in cluster.js (the page moves to another member when its own dies: apiFetch).
 */
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "ccfo.token";
const DEBOUNCE_MS = 150;
const SAFETY_POLL_MS = 30000; // events can be dropped for a slow client: re-read everything now and then
const STREAM_IDLE_MS = 20000; // the controller sends a status event every cycle (<= heartbeat)
const RECONNECT_MAX_MS = 5000; // a handful of operator tabs: retrying often costs nothing
const ROLES = ["viewer", "operator", "admin"];
const MODES = ["automatic", "supervised", "manual", "maintenance"];
const JOURNAL_KINDS = [
  ["", "all kinds"],
  ["fault_seen,fault_cleared", "faults"],
  ["decision", "decisions"],
  ["plan_proposed,plan_approved,plan_rejected,plan_started,plan_finished,plan_failed,plan_interrupted," +
   "plan_resumed,plan_aborted", "plans"],
  ["step_started,step_finished,step_failed", "plan steps"],
  ["operator_action,mode_changed", "operator actions"],
  ["drill_started,drill_finished,drill_skipped,checklist_event", "drills and checklists"],
  ["snmp_notification", "SNMP notifications"],
  ["note", "notes"],
];
const KIND_LABEL = {
  fault_seen: "fault seen", fault_cleared: "fault cleared", decision: "decision", plan_proposed: "proposed",
  plan_approved: "approved", plan_rejected: "rejected", plan_started: "plan started", plan_finished: "plan finished",
  plan_failed: "plan failed", plan_interrupted: "interrupted", plan_resumed: "resumed", plan_aborted: "aborted",
  step_started: "step started", step_finished: "step done", step_failed: "step failed",
  operator_action: "operator", mode_changed: "mode", note: "note", snmp_notification: "snmp trap",
};

const S = {
  token: null, status: null, role: null, roleRendered: null, pending: [], plan: null, planSteps: new Map(),
  journal: [], stream: null, pollTimer: null, generation: 0, sigs: {},
  base: "", member: null, cluster: null, // the member the page talks to ("": this page's origin)
};

// ---- small helpers --------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

// Replace a container's content; if keyboard focus was inside it, put it back on the element with the same
// data-focus key (the same button, re-rendered), else on the container itself (it has tabindex="-1").
function replaceKeepingFocus(box, ...children) {
  const active = document.activeElement;
  const inside = active && active !== box && box.contains(active);
  const key = inside ? active.dataset.focus : null;
  box.replaceChildren(...children);
  if (!inside) return;
  const again = key ? box.querySelector(`[data-focus="${CSS.escape(key)}"]`) : null;
  (again || box).focus();
}

// Rebuild a part of the page only when its data changed: the status is re-read every cycle, and on a
// busy machine re-laying out unchanged lists is what makes a live change late. Keeps keyboard focus too.
function changed(key, value) {
  const sig = JSON.stringify(value);
  if (S.sigs[key] === sig) return false;
  S.sigs[key] = sig;
  return true;
}

function slug(s) {
  return String(s).replace(/[^A-Za-z0-9_-]/g, "_");
}

function clock(ts, withDate) {
  if (ts === null || ts === undefined) return "";
  const d = new Date(ts * 1000);
  const p = (n) => String(n).padStart(2, "0");
  const t = `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  return withDate ? `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${t}` : t;
}

function timeEl(ts) {
  return h("time", { datetime: new Date(ts * 1000).toISOString(), title: clock(ts, true) }, clock(ts));
}

function seconds(s) {
  if (s === null || s === undefined) return "";
  return s < 10 ? `${s.toFixed(2)} s` : s < 120 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function roleAtLeast(role) {
  return ROLES.indexOf(S.role) >= ROLES.indexOf(role);
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// One Idempotency-Key per confirmed dialog (see openDialog): a double click or a resend of the same form
// gets the controller's first answer instead of starting a second plan.
let pendingKey = null;

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---- the member the page talks to ----------------------------------------------------------------
//
// A single controller: always this page's origin (S.base ""). In a controller cluster (cluster.js reads GET
// /cluster into S.cluster) the page remembers the last members list; when the member it talks to stops
// answering (the request fails without an HTTP answer: connection refused or reset), it moves to the first other
// member whose /healthz answers and goes on there (the members allow each other's origins: controller.api.cors).
// A read is sent again to the new member; a change is not (it may have reached the dead member): the operator
// sees the error and decides.

const MEMBER_PROBE_MS = 2000;
let switching = null; // one move at a time: every part's failed request waits for the same one

function memberOrigin(url) {
  return new URL(url).origin;
}

function currentOrigin() {
  return S.base || location.origin;
}

async function apiFetch(path, init) {
  for (let attempt = 0; ; attempt += 1) {
    const base = S.base;
    try {
      return await fetch(base + API + path, init);
    } catch (err) {
      if ((init.signal && init.signal.aborted) || !(err instanceof TypeError)) throw err;
      const moved = await moveToAnotherMember(base);
      if (!moved || attempt >= 2 || (init.method || "GET") !== "GET") throw err;
    }
  }
}

// Move off `deadBase` (unless another request already did); true when the page talks to a live member now.
function moveToAnotherMember(deadBase) {
  if (S.base !== deadBase) return Promise.resolve(true);
  if (!switching) {
    switching = findMember(deadBase).finally(() => { switching = null; });
  }
  return switching;
}

async function findMember(deadBase) {
  const members = (S.cluster && S.cluster.members) || [];
  const dead = deadBase || location.origin;
  const rank = { leader: 0, follower: 1, unreachable: 2 };
  const candidates = members.filter((m) => memberOrigin(m.url) !== dead)
    .sort((a, b) => (rank[a.role] ?? 3) - (rank[b.role] ?? 3));
  for (const m of candidates) {
    try {
      const res = await fetch(`${memberOrigin(m.url)}/healthz`, { cache: "no-store",
        signal: AbortSignal.timeout(MEMBER_PROBE_MS) });
      if (!res.ok) continue;
    } catch {
      continue;
    }
    if (S.base !== deadBase) return true; // moved meanwhile
    S.base = memberOrigin(m.url) === location.origin ? "" : memberOrigin(m.url);
    S.member = m.name;
    for (const render of memberRenderers) render(`${dead} stopped answering; now talking to ${m.name}`);
    return true;
  }
  return false;
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${S.token}`, Accept: "application/json" };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if ((options.method || "GET") !== "GET") headers["Idempotency-Key"] = pendingKey || newKey();
  const res = await apiFetch(path, {
    method: options.method || "GET", headers, cache: "no-store",
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (res.status === 401) {
    signOut("The controller refused the token (wrong or expired). Sign in again.");
    throw new ApiError(401, "signed out");
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) throw new ApiError(res.status, describeError(res.status, data));
  return data;
}

function describeError(status, data) {
  let detail = data && data.detail;
  if (Array.isArray(detail)) {
    detail = detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  } else if (detail && typeof detail === "object") { // {message, problems}: an invalid checklist file
    detail = [detail.message, ...(detail.problems || [])].filter(Boolean).join("; ");
  }
  const what = { 403: "not allowed", 404: "not found", 409: "refused", 422: "invalid" }[status] || "failed";
  return `${what} (HTTP ${status})${detail ? `: ${detail}` : ""}`;
}

// ---- refreshing: each part re-reads its JSON, debounced, one request in flight at a time -----------

class Part {
  constructor(load) {
    this.load = load;
    this.timer = null;
    this.busy = false;
    this.again = false;
    this.lastRun = 0;
  }

  // The first change after a quiet spell is shown at once; a burst of them costs one more read at its end.
  request(delay = DEBOUNCE_MS) {
    if (this.timer !== null) return;
    if (!this.busy && Date.now() - this.lastRun >= DEBOUNCE_MS) delay = 0;
    this.schedule(delay);
  }

  // For parts that follow the controller's cycle rather than a specific event: at most once per `every` ms.
  throttle(every) {
    if (this.timer !== null || this.busy) return;
    this.schedule(Math.max(0, this.lastRun + every - Date.now()));
  }

  schedule(delay) {
    this.timer = setTimeout(() => {
      this.timer = null;
      this.run();
    }, delay);
  }

  async run() {
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    this.lastRun = Date.now();
    const generation = S.generation;
    try {
      await this.load(generation);
      markUpdated();
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) console.warn("ccfo: refresh failed", err);
    } finally {
      this.busy = false;
      if (this.again) {
        this.again = false;
        this.request();
      }
    }
  }
}

// runbooks.js adds drills, drillLibrary, checklists and checklistRuns
const parts = {
  status: new Part(loadStatus),
  plans: new Part(loadPlans),
  journal: new Part(loadJournal),
};

const EVENT_PARTS = {
  status: ["status"],
  state: ["status", "plans", "journal", "drills", "checklistRuns"],
  plan: ["status", "plans", "journal", "drills", "checklistRuns"],
  step: ["status", "plans", "journal"],
  journal: ["status", "plans", "journal", "drills"],
  checklist: ["checklistRuns", "journal"],
};
// Parts whose changes publish no event of their own (a drill records its history straight into the
// journal): re-read at most this often while the controller's cycles go on.
const CYCLE_PARTS = { drills: 3000 };

// What depends on the role (buttons): re-rendered when the signed-in role changes.
const roleRenderers = [];
// What other scripts draw from the status (servers.js: the managed servers): called with each status read.
const statusRenderers = [];
// Called when the page moved to another cluster member (cluster.js), with a sentence saying so.
const memberRenderers = [];

function refresh(names, delay) {
  for (const n of names) if (parts[n]) parts[n].request(delay);
}

function refreshAll(delay = 0) {
  refresh(Object.keys(parts), delay);
}

function markUpdated() {
  setText($("updated"), `updated ${clock(Date.now() / 1000)}`);
}

// ---- the live event stream ------------------------------------------------------------------------

function setConn(kind, text) {
  const el = $("conn");
  el.className = `conn conn-${kind}`;
  setText($("conn-text"), text);
}

async function readStream(signal) {
  const res = await apiFetch("/events", {
    headers: { Authorization: `Bearer ${S.token}`, Accept: "text/event-stream" }, cache: "no-store", signal,
  });
  if (res.status === 401) {
    signOut("The controller refused the token (wrong or expired). Sign in again.");
    return;
  }
  if (res.status === 403) {
    signOut("This token may not read the site (an agent token?). Sign in with a viewer, operator or admin token.");
    return;
  }
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
  setConn("live", "live");
  refreshAll(); // anything that changed while we were not listening
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the controller closed the stream");
    S.stream.lastData = Date.now();
    buffer = (buffer + value).replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      onEventBlock(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
    }
  }
}

function onEventBlock(block) {
  let kind = "message";
  let hasData = false;
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue; // a comment (the stream's greeting)
    if (line.startsWith("event:")) kind = line.slice(6).trim();
    else if (line.startsWith("data:")) hasData = true;
  }
  if (!hasData) return;
  refresh(EVENT_PARTS[kind] || Object.keys(parts));
  if (kind === "status") {
    for (const [n, every] of Object.entries(CYCLE_PARTS)) if (parts[n]) parts[n].throttle(every);
  }
}

async function streamLoop(generation) {
  let delay = 1000;
  while (S.token && generation === S.generation) {
    const controller = new AbortController();
    S.stream = { controller, lastData: Date.now() };
    const started = Date.now();
    const watchdog = setInterval(() => {
      if (Date.now() - S.stream.lastData > STREAM_IDLE_MS) controller.abort();
    }, 2000);
    let why = "connection lost";
    try {
      await readStream(controller.signal);
    } catch (err) {
      why = controller.signal.aborted ? "no events for a while" : err.message || String(err);
    } finally {
      clearInterval(watchdog);
    }
    if (!S.token || generation !== S.generation) return;
    if (Date.now() - started > 30000) delay = 1000;
    setConn("wait", `reconnecting in ${Math.round(delay / 1000)} s (${why})`);
    await new Promise((resolve) => setTimeout(resolve, delay + Math.random() * 250));
    delay = Math.min(delay * 2, RECONNECT_MAX_MS);
    if (S.token && generation === S.generation) setConn("wait", "reconnecting…");
  }
}

// ---- sign-in ----------------------------------------------------------------------------------------

function showLogin(message) {
  $("app").hidden = true;
  $("session").hidden = true;
  $("login").hidden = false;
  setText($("login-error"), message || "");
  $("token").value = "";
  $("token").focus();
}

async function signIn(token) {
  S.token = token;
  S.generation += 1;
  const generation = S.generation;
  const status = await api("/status"); // throws (and signs out) on a bad token
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login").hidden = true;
  $("app").hidden = false;
  $("session").hidden = false;
  renderStatus(status);
  refresh(Object.keys(parts).filter((n) => n !== "status"), 0);
  streamLoop(generation);
  clearInterval(S.pollTimer);
  S.pollTimer = setInterval(() => refreshAll(), SAFETY_POLL_MS);
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  S.token = null;
  S.generation += 1;
  S.role = null;
  S.roleRendered = null;
  S.sigs = {};
  if (S.stream) S.stream.controller.abort();
  clearInterval(S.pollTimer);
  const dlg = $("dialog");
  if (dlg.open) dlg.close();
  $("actions-slot").replaceChildren();
  showLogin(message);
}

// ---- status: banner, hosts, capacity ----------------------------------------------------------------

async function loadStatus(generation) {
  const status = await api("/status");
  if (generation === S.generation) renderStatus(status);
}

const STATE_CLASS = { normal: "normal", degraded: "degraded", "failed over": "failedover", maintenance: "maintenance",
  down: "down" };

function renderStatus(s) {
  S.status = s;
  S.role = s.you.role;
  setText($("site-name"), s.site);
  setText($("who"), `${s.you.name} · ${s.you.role}`);
  document.title = `${s.state.toUpperCase()} — ${s.site} — ccfo`;
  const banner = $("banner");
  banner.className = `banner state-${STATE_CLASS[s.state] || "down"}`;
  setText($("site-state"), s.state.toUpperCase());
  setText($("site-mode"), s.mode);
  setText($("active-host"), s.active_host || "none");
  setText($("active-db"), s.active_db || "unknown");
  // the controller's one sentence per cycle (it names a running plan itself)
  setText($("decision"), s.decision ? `Controller: ${s.decision.reason}` : "");
  if (changed("faults", [s.faults, s.flapping, s.waiting_confirmation])) renderFaults(s);
  if (changed("hosts", [s.hosts, s.active_host].map(withoutAge))) renderHosts(s);
  if (changed("capacity", [s.capacity, Object.values(s.hosts).map((x) => x.capacity)])) renderCapacity(s);
  renderJournalHosts(Object.keys(s.hosts));
  for (const render of statusRenderers) render(s);
  if (S.roleRendered !== S.role) {
    S.roleRendered = S.role;
    renderActions();
    renderPending();
    for (const render of roleRenderers) render();
  }
}

function renderFaults(s) {
  $("faults").replaceChildren(...s.faults.map((f) => h("li", { class: f.active ? "fault active" : "fault" },
    h("span", { class: "tag" }, f.active ? "FAULT" : "debouncing"), ` ${f.fault} since ${clock(f.since)}`)),
  ...s.flapping.map((f) => h("li", { class: "fault" }, h("span", { class: "tag" }, "FLAPPING"), ` ${f}`)));
  $("waiting").replaceChildren(...s.waiting_confirmation.map((w) => h("li", { class: "fault active" },
    h("span", { class: "tag" }, "ACTION NEEDED"),
    ` plan ${w.plan_id} waits for confirmation that ${w.host} is powered off (ccfo confirm-off)`)));
}

const STALE_REPORT_S = 3; // the age of a host's last report is shown once it is worth noticing

function withoutAge(value) { // a fresh report's age changes every read and is not shown
  return JSON.stringify(value, (k, v) => k !== "report_age_s" ? v : v !== null && v >= STALE_REPORT_S ? Math.round(v)
    : null);
}

function stateTag(text, cls) {
  return h("span", { class: `tag ${cls}` }, text);
}

function renderHosts(s) {
  const cards = Object.entries(s.hosts).map(([name, host]) => {
    const id = `host-${slug(name)}`;
    const spans = host.spans.length ? host.spans.map((sp) => {
      const alarm = sp.alarm || "unknown";
      return h("li", { class: `span alarm-${slug(alarm)}`, "data-testid": `span-${name}-${sp.span}` },
        h("span", { class: "span-name" }, `Span ${sp.span}`),
        h("span", { class: "span-alarm" }, alarm === "ok" ? "OK" : `${alarm.toUpperCase()} ALARM`),
        h("span", { class: sp.dchannel_up ? "dch" : "dch bad" }, `D-channel ${sp.dchannel_up ? "up" : "DOWN"}`),
        h("span", { class: "muted" }, `${sp.channels} ch`));
    }) : [h("li", { class: "span alarm-unknown" }, "no span report")];
    const trunks = (host.trunks || []).map((t) => {
      const look = t.state === "up" ? "ok" : t.state === "down" ? "red" : "unknown";
      return h("li", { class: `span trunk alarm-${look}`, "data-testid": `trunk-${name}-${t.name}` },
        h("span", { class: "span-name" }, `Trunk ${t.name}`),
        h("span", { class: "span-alarm" }, t.state === "up" ? "UP" : t.state.toUpperCase()),
        h("span", { class: "muted" }, `${t.driver} · ${t.channels} ch`));
    });
    const services = Object.entries(host.services).map(([svc, st]) =>
      h("li", { class: `svc svc-${slug(st)}`, "data-testid": `svc-${name}-${svc}` },
        h("span", { class: "svc-name" }, svc), h("span", { class: "svc-state" }, st)));
    const reach = host.reachable
      ? `reachable${host.report_age_s >= STALE_REPORT_S ? ` (last report ${Math.round(host.report_age_s)} s ago)` : ""}`
      : "UNREACHABLE";
    const driver = host.board_isolated ? `${host.driver} (board isolated)` : host.driver;
    return h("article", { class: `host${host.active ? " host-active" : ""}`, id, "aria-labelledby": `${id}-name`,
      "data-testid": id },
    h("header", { class: "host-head" },
      h("h3", { id: `${id}-name` }, name),
      host.active ? stateTag("ACTIVE — serving calls", "tag-ok") : stateTag(host.duty.toUpperCase(), "tag-plain")),
    h("dl", { class: "facts" },
      h("dt", {}, "Role"), h("dd", {}, host.role),
      h("dt", {}, "Duty"), h("dd", { "data-testid": `duty-${name}` }, host.duty),
      h("dt", {}, "Reachability"), h("dd", { class: host.reachable ? "ok" : "bad" }, reach),
      h("dt", {}, "Asterisk AMI"), h("dd", { class: host.ami_connected === false ? "bad" : "",
        "data-testid": `ami-${name}` },
        host.ami_connected === null ? "unknown" : host.ami_connected ? "connected"
          : host.ami_state === "hung" ? "HUNG (not answering)" : "DISCONNECTED"),
      h("dt", {}, "Board driver"), h("dd", { class: host.driver === "up" && !host.board_isolated ? "ok" : "bad" },
        driver),
      h("dt", {}, "Database"), h("dd", {}, host.db_site || "unknown")),
    ...(host.spans.length || !trunks.length ? [h("h4", {}, "E1 spans"), h("ul", { class: "spans" }, spans)] : []),
    ...(trunks.length ? [h("h4", {}, "SIP trunks"), h("ul", { class: "spans trunks" }, trunks)] : []),
    h("h4", {}, "Services"), h("ul", { class: "services" }, services.length ? services : h("li", {}, "no report")));
  });
  $("hosts").replaceChildren(...cards);
}

function renderCapacity(s) {
  setText($("capacity-line"), `Site: ${s.capacity.line} (C = ${s.capacity.channels} channels in service)`);
  const blocks = Object.entries(s.hosts).map(([name, host]) => {
    const c = host.capacity;
    const ivr = c.ivr_calls;
    const agent = 2 * c.agent_calls;
    const total = Math.max(c.channels, c.used, 1);
    const seg = (cls, n, label) => {
      const el = h("span", { class: `seg ${cls}`, title: `${label}: ${n}` });
      el.style.width = `${(100 * n) / total}%`;
      return el;
    };
    const gauge = h("div", { class: "gauge", role: "img",
      "aria-label": `${name}: ${ivr} IVR, ${agent} agent, ${c.free} free of ${c.channels} channels; reserve ${c.reserve}` },
    seg("seg-x", ivr, "X (IVR channels)"), seg("seg-y", agent, "2Y (agent channels)"),
    seg("seg-free", c.free, "free channels"));
    if (c.reserve > 0 && c.channels > 0) {
      const mark = h("span", { class: "reserve-mark", title: `reserve for transfers: ${c.reserve}` });
      mark.style.left = `${(100 * (c.channels - c.reserve)) / total}%`;
      gauge.append(mark);
    }
    const num = (label, value, cls, testid) => h("div", { class: `num ${cls || ""}` },
      h("dt", {}, label), h("dd", { "data-testid": testid }, String(value)));
    return h("div", { class: "cap-host", "data-testid": `cap-${name}` },
      h("h3", {}, name, h("span", { class: "muted small" },
        c.channels === c.board_channels ? `  ${c.channels} channels` : `  ${c.channels} of ${c.board_channels} board channels in service`)),
      gauge,
      h("dl", { class: "nums" },
        num("X · IVR", ivr, "k-x", `cap-${name}-x`),
        num("2Y · agent", agent, "k-y", `cap-${name}-2y`),
        num("free", c.free, "k-free", `cap-${name}-free`),
        num("C", c.channels, "k-c", `cap-${name}-c`)),
      h("p", { class: "cap-more" },
        h("strong", { "data-testid": `cap-${name}-more` }, String(c.more_ivr_calls)), " more IVR calls fit · reserve ",
        h("strong", { "data-testid": `cap-${name}-reserve` }, String(c.reserve)), " · fax ",
        h("strong", { "data-testid": `cap-${name}-fax` }, `${c.fax_calls}/${c.fax_channels}`)));
  });
  $("capacity").replaceChildren(...blocks);
}

// ---- plans: pending, running or last ----------------------------------------------------------------

async function loadPlans(generation) {
  const [pending, recent] = await Promise.all([
    api("/plans?status=proposed&limit=10"),
    api("/plans?status=running,interrupted,failed,finished,aborted&limit=1"),
  ]);
  const plan = recent.plans[0] || null;
  const steps = new Map();
  if (plan) {
    const j = await api(`/journal?plan_id=${encodeURIComponent(plan.id)}&kind=step_started,step_finished,step_failed` +
      "&limit=500");
    // the newest entry for a step wins (a resumed plan re-runs its failed step)
    for (const e of j.entries.slice().reverse()) steps.set(e.step, e);
  }
  if (generation !== S.generation) return;
  S.pending = pending.plans;
  S.plan = plan;
  S.planSteps = steps;
  renderPending();
  renderPlan();
}

function planTarget(p) {
  const meta = p.meta || {};
  if (meta.to) return { label: "target host", host: meta.to };
  const hosts = [...new Set(p.steps.map((st) => st.host).filter(Boolean))];
  return { label: hosts.length > 1 ? "hosts" : "host", host: hosts.join(", ") || "none" };
}

function renderPending() {
  const box = $("pending");
  // re-render only on a real change: a keyboard user's focus on Approve must survive a refresh
  if (!changed("pending", [S.role, S.pending.map((p) => p.id)]) && box.firstChild) return;
  if (!S.pending.length) {
    replaceKeepingFocus(box, h("p", { class: "empty" }, "No plan is waiting for approval."));
    return;
  }
  replaceKeepingFocus(box, ...S.pending.map((p) => {
    const t = planTarget(p);
    const buttons = roleAtLeast("operator") ? h("div", { class: "buttons" },
      h("button", { type: "button", class: "btn btn-primary", "data-focus": `plan-${p.id}-approve`,
        onclick: (ev) => openPlanDecision(p, "approve", ev.target) }, "Approve…"),
      h("button", { type: "button", class: "btn", "data-focus": `plan-${p.id}-reject`,
        onclick: (ev) => openPlanDecision(p, "reject", ev.target) }, "Reject…")) : null;
    return h("article", { class: "plan plan-pending", "data-testid": "pending-plan", "data-plan-id": p.id,
      "aria-labelledby": `pending-${p.id}` },
    h("h3", { id: `pending-${p.id}` }, p.title),
    h("p", { class: "plan-who" }, `Proposed by ${p.requested_by}`, p.source !== "operator" ? ` (rule ${p.source})` : "",
      " at ", timeEl(p.created), ` · ${t.label} `, h("strong", {}, t.host)),
    h("p", { class: "plan-why" }, h("span", { class: "muted" }, "Why: "), p.reason),
    h("ol", { class: "steps steps-plain" }, p.steps.map((st) => h("li", {}, st.text))),
    buttons);
  }));
}

const STEP_STATE = {
  done: ["✓", "done"], running: ["▶", "running"], failed: ["✗", "failed"], soft: ["!", "failed, continuing"],
  waiting: ["·", "waiting"], skipped: ["–", "not run"],
};

function stepState(p, i) {
  const e = S.planSteps.get(i);
  if (e && e.kind === "step_failed") return e.status && e.status.includes("best effort") ? "soft" : "failed";
  if (e && e.kind === "step_finished") return "done";
  if (i < p.next_step) return "done";
  if (i === p.next_step && p.status === "running") return "running";
  return p.status === "running" || p.status === "interrupted" ? "waiting" : "skipped";
}

function renderPlan() {
  const box = $("plan");
  const p = S.plan;
  if (!changed("plan", [p, [...S.planSteps.values()]]) && box.firstChild) return;
  if (!p) {
    setText($("plan-title"), "Plan");
    box.replaceChildren(h("p", { class: "empty" }, "No plan has run yet."));
    return;
  }
  setText($("plan-title"), p.status === "running" ? "Running plan" : "Last plan");
  const states = p.steps.map((_, i) => stepState(p, i));
  const done = states.filter((st) => st === "done" || st === "soft").length;
  const n = p.steps.length;
  const progress = h("div", { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": String(n),
    "aria-valuenow": String(done), "aria-label": "steps done" }, h("span", { class: "progress-bar" }));
  progress.firstChild.style.width = `${n ? (100 * done) / n : 0}%`;
  const who = [`Requested by ${p.requested_by}`, p.source !== "operator" ? ` (rule ${p.source})` : "",
    p.decided_by ? `; approved by ${p.decided_by}: “${p.decided_reason}”` : ""].join("");
  box.replaceChildren(h("article", { class: `plan plan-${slug(p.status)}`, "data-plan-id": p.id },
    h("header", { class: "plan-head" }, h("h3", {}, p.title),
      h("span", { class: `tag plan-status status-${slug(p.status)}`, "data-testid": "plan-status" }, p.status.toUpperCase())),
    h("p", { class: "plan-who" }, who, " · started ", timeEl(p.created)),
    h("p", { class: "plan-why" }, h("span", { class: "muted" }, "Why: "), p.reason),
    p.error ? h("p", { class: "plan-error", role: "alert" }, p.error) : null,
    h("p", { class: "plan-progress", "data-testid": "plan-progress" }, `${done} of ${n} steps done`),
    progress,
    h("ol", { class: "steps" }, p.steps.map((st, i) => {
      const e = S.planSteps.get(i);
      const [icon, label] = STEP_STATE[states[i]];
      const extra = e && e.kind !== "step_started" ? seconds(e.duration_s)
        : e && states[i] === "running" ? `since ${clock(e.ts)}` : "";
      return h("li", { class: `step step-${states[i]}`, "data-testid": "plan-step" },
        h("span", { class: "step-icon", "aria-hidden": "true" }, icon),
        h("span", { class: "step-text" }, st.text),
        h("span", { class: "step-state" }, label),
        h("span", { class: "step-dur", "data-testid": "step-duration" }, extra));
    }))));
}

// ---- journal -----------------------------------------------------------------------------------------

function journalQuery() {
  const q = new URLSearchParams();
  const kind = $("jf-kind").value;
  const host = $("jf-host").value;
  if (kind) q.set("kind", kind);
  if (host) q.set("host", host);
  q.set("limit", $("jf-limit").value);
  return q.toString();
}

async function loadJournal(generation) {
  const data = await api(`/journal?${journalQuery()}`);
  if (generation !== S.generation) return;
  S.journal = data.entries;
  renderJournal();
}

function entryText(e) {
  const d = e.data || {};
  if (e.kind.startsWith("step_")) {
    return `step ${e.step + 1}: ${d.text || ""}${e.status ? ` — ${e.status}` : ""}${d.output ? ` (${d.output})` : ""}`;
  }
  if (e.kind === "mode_changed") return `${d.from} → ${d.to}${e.reason ? `: ${e.reason}` : ""}`;
  if (e.kind === "plan_finished") return `${d.title || "plan"} finished`;
  if (e.kind === "operator_action" && d.title) return `${d.title}: ${e.reason || ""}`;
  if (e.kind === "plan_started" || e.kind === "plan_proposed") return `${d.title || ""}${e.reason ? ` — ${e.reason}` : ""}`;
  return e.reason || d.text || d.title || e.status || "";
}

function renderJournal() {
  const list = $("journal");
  if (!changed("journal", S.journal) && list.firstChild) return;
  if (!S.journal.length) {
    list.replaceChildren(h("li", { class: "empty" }, "No journal entries match."));
    return;
  }
  list.replaceChildren(...S.journal.map((e) => h("li", { class: `entry kind-${slug(e.kind)}`,
    "data-testid": "journal-entry", "data-kind": e.kind, "data-host": e.host || "" },
    timeEl(e.ts),
    h("span", { class: "kind", title: e.kind }, KIND_LABEL[e.kind] || e.kind.replace(/_/g, " ")),
    h("span", { class: "entry-host" }, e.host || ""),
    h("span", { class: "text" }, entryText(e),
      e.actor && e.actor !== "controller" ? h("span", { class: "muted" }, ` — by ${e.actor}`) : null,
      e.duration_s !== null && e.duration_s !== undefined ? h("span", { class: "muted" }, ` · ${seconds(e.duration_s)}`)
        : null))));
}

function renderJournalHosts(hosts) {
  const select = $("jf-host");
  const have = [...select.options].map((o) => o.value).slice(1);
  if (have.join() === hosts.join()) return;
  const current = select.value;
  select.replaceChildren(h("option", { value: "" }, "all hosts"), ...hosts.map((n) => h("option", { value: n }, n)));
  select.value = hosts.includes(current) ? current : "";
}

// ---- actions and the confirmation dialog ------------------------------------------------------------

function otherHosts() {
  return Object.keys(S.status.hosts).filter((n) => n !== S.status.active_host);
}

function homePrimary() {
  return Object.entries(S.status.hosts).find(([, host]) => host.role === "primary")?.[0] || "";
}

function renderActions() {
  const slot = $("actions-slot");
  if (!roleAtLeast("operator")) {
    slot.replaceChildren(); // a viewer gets no action controls at all
    return;
  }
  const button = (label, open, testid) => h("button", { type: "button", class: "btn btn-action", "data-testid": testid,
    onclick: (ev) => open(ev.target) }, label);
  slot.replaceChildren(h("section", { id: "actions", class: "panel actions", "aria-labelledby": "actions-title" },
    h("h2", { id: "actions-title" }, "Actions"),
    h("div", { class: "buttons" },
      button("Fail over…", openFailover, "action-failover"),
      button("Planned switchover…", openSwitchover, "action-switchover"),
      button("Fail back…", openFailback, "action-failback"),
      roleAtLeast("admin") ? button("Mode…", openMode, "action-mode") : null),
    h("p", { class: "muted small" }, "Every action asks for a reason, which the journal records with your name.")));
}

function hostSelect(id, hosts, value) {
  return h("select", { id, name: "host" }, hosts.map((n) => h("option", { value: n, selected: n === value }, n)));
}

function drainInput() {
  return [h("label", { for: "dlg-drain" }, "Drain timeout (seconds)"),
    h("input", { id: "dlg-drain", name: "drain", type: "number", min: "0", max: "7200", step: "1", value: "300",
      required: true, "aria-describedby": "dlg-drain-help" }),
    h("p", { id: "dlg-drain-help", class: "help" }, "Calls on the current host may finish first, for at most this long.")];
}

function openFailover(opener) {
  const hosts = otherHosts();
  openDialog({
    opener, title: "Fail over", verb: (f) => `Fail over to ${f.host}`, fields: [
      h("label", { for: "dlg-host" }, "Target host"), hostSelect("dlg-host", hosts, hosts[0])],
    summary: (f) => `Stops CTI and IVR on ${S.status.active_host || "the active host"} at once (calls in progress are ` +
      `cut) and starts them on ${f.host}.`,
    confirm: (f) => `I confirm: fail over to ${f.host} now.`,
    preview: (f) => dryRun("/failover", { to: f.host }),
    send: (f) => api("/failover", { method: "POST", body: { to: f.host, reason: f.reason } }),
  });
}

function openSwitchover(opener) {
  const hosts = otherHosts();
  openDialog({
    opener, title: "Planned switchover", verb: (f) => `Switch over to ${f.host}`, fields: [
      h("label", { for: "dlg-host" }, "Target host"), hostSelect("dlg-host", hosts, hosts[0]), ...drainInput()],
    summary: (f) => `Lets the calls on ${S.status.active_host || "the active host"} drain (at most ${f.drain} s), ` +
      `then moves CTI and IVR to ${f.host}.`,
    confirm: (f) => `I confirm: switch over to ${f.host}.`,
    preview: (f) => dryRun("/switchover", { to: f.host, drain_timeout_s: f.drain }),
    send: (f) => api("/switchover", { method: "POST", body: { to: f.host, reason: f.reason, drain_timeout_s: f.drain } }),
  });
}

function openFailback(opener) {
  const home = homePrimary();
  openDialog({
    opener, title: "Fail back", verb: () => `Fail back to ${home}`, fields: drainInput(),
    summary: (f) => `Returns every host to its normal duty: ${home} serves calls again (calls drain for at most ` +
      `${f.drain} s).`,
    confirm: () => `I confirm: fail back to ${home}.`,
    preview: (f) => dryRun("/failback", { drain_timeout_s: f.drain }),
    send: (f) => api("/failback", { method: "POST", body: { reason: f.reason, drain_timeout_s: f.drain } }),
  });
}

function openMode(opener) {
  const next = MODES.find((m) => m !== S.status.mode);
  openDialog({
    opener, title: "Change the mode", verb: (f) => `Set mode ${f.mode}`, fields: [
      h("label", { for: "dlg-mode" }, "Mode"),
      h("select", { id: "dlg-mode", name: "mode" }, MODES.map((m) => h("option", { value: m, selected: m === next },
        m === S.status.mode ? `${m} (current)` : m)))],
    summary: (f) => ({
      automatic: "The controller acts on detected faults by itself.",
      supervised: "The controller proposes plans and waits for an operator's approval.",
      manual: "The controller reports faults; only operator-requested plans run.",
      maintenance: "The controller detects and reports faults and never acts on them.",
    })[f.mode] + ` Active host: ${S.status.active_host || "none"}.`,
    confirm: (f) => `I confirm: set the mode to ${f.mode} (active host ${S.status.active_host || "none"}).`,
    send: (f) => api("/mode", { method: "PUT", body: { mode: f.mode, reason: f.reason } }),
  });
}

function openPlanDecision(plan, op, opener) {
  const t = planTarget(plan);
  const approve = op === "approve";
  openDialog({
    opener, home: "pending", title: approve ? "Approve the plan" : "Reject the plan",
    verb: () => approve ? `Approve: ${t.host}` : "Reject the plan", fields: [],
    summary: () => approve
      ? `Runs “${plan.title}” now (${plan.steps.length} steps); ${t.label}: ${t.host}.`
      : `Rejects “${plan.title}”; nothing is changed on ${t.host}.`,
    confirm: approve ? () => `I confirm: run “${plan.title}” on ${t.host}.` : null,
    send: (f) => api(`/plans/${encodeURIComponent(plan.id)}/${op}`, { method: "POST", body: { reason: f.reason } }),
  });
}

// The plan an operator action would run now, built by the controller from the live state and run by
// nobody (`?dry_run=true`): the dialog shows its numbered steps, as `ccfo failover` does before asking.
function dryRun(path, body) {
  return api(`${path}?dry_run=true`, { method: "POST", body: { ...body, reason: "dry run from the dashboard" } });
}

function planPreview(box) {
  let key = null;
  let ok = false;
  const show = (...children) => box.replaceChildren(...children);
  return {
    ok: () => ok,
    async refresh(spec, f, update) {
      const { reason, ...inputs } = f; // the plan does not depend on the reason: ask again only when it could change
      const mine = JSON.stringify(inputs);
      if (mine === key) return;
      key = mine;
      ok = false;
      show(h("p", { class: "muted" }, "Asking the controller for the plan…"));
      update();
      try {
        const d = await spec.preview(f);
        if (mine !== key) return;
        show(h("p", { class: "plan-question", id: "dlg-plan-question" },
          `Run these ${d.plan.steps.length} steps on site ${d.site}?`),
        h("ol", { class: "plan-steps", "data-testid": "dlg-steps", "aria-labelledby": "dlg-plan-question" },
          d.plan.steps.map((st) => h("li", {}, st.text || st.kind))));
        ok = true;
      } catch (err) {
        if (mine !== key) return;
        show(h("p", { class: "form-error", "data-testid": "dlg-plan-refused" },
          `The controller would not run this now: ${err.message}`));
      }
      update();
    },
  };
}

function readForm() {
  const f = { reason: $("dlg-reason") ? $("dlg-reason").value.trim() : "" };
  if ($("dlg-host")) f.host = $("dlg-host").value;
  if ($("dlg-drain")) f.drain = Number($("dlg-drain").value);
  if ($("dlg-mode")) f.mode = $("dlg-mode").value;
  if ($("dlg-rehearsal")) f.rehearsal = $("dlg-rehearsal").checked;
  return f;
}

const REASON = { label: "Reason", min: 3, max: 500,
  help: "Required (at least 3 characters): the journal records it with your name." };

// spec: opener, title, fields, summary(f), verb(f), confirm(f) or null, send(f), and optionally
// reason (false: none; {label, min, max, help}: a note, optional when min is 0), after() (runs whether
// the controller accepted the request or not: the panel re-reads what it shows), home (the id of the
// panel that gets the focus back when the opener is gone) and preview(f) (a promise of the dry run: the
// dialog shows its numbered steps and cannot be submitted until it has them).
function openDialog(spec) {
  const dlg = $("dialog");
  const want = spec.reason === false ? null : { ...REASON, ...(spec.reason || {}) };
  const summary = h("p", { id: "dialog-summary", class: "dialog-summary" });
  const reason = want ? h("textarea", { id: "dlg-reason", name: "reason", rows: "3", maxlength: String(want.max),
    required: want.min > 0, "aria-describedby": "dlg-reason-help" }) : null;
  const confirmBox = spec.confirm ? h("input", { id: "dlg-confirm", type: "checkbox", name: "confirm" }) : null;
  const confirmLabel = spec.confirm ? h("label", { for: "dlg-confirm", class: "confirm-label" }) : null;
  const submit = h("button", { type: "submit", class: "btn btn-primary", id: "dlg-submit", disabled: true });
  const error = h("p", { class: "form-error", role: "alert", id: "dlg-error" });
  const planBox = spec.preview ? h("div", { class: "dialog-plan", id: "dlg-plan", "aria-live": "polite" }) : null;
  const plan = planBox ? planPreview(planBox) : null;
  const form = h("form", { class: "dialog-form", novalidate: true },
    h("h2", { id: "dialog-title" }, spec.title),
    summary,
    ...spec.fields,
    planBox,
    want ? [h("label", { for: "dlg-reason" }, want.label), reason,
      h("p", { id: "dlg-reason-help", class: "help" }, want.help)] : null,
    confirmBox ? h("div", { class: "confirm" }, confirmBox, confirmLabel) : null,
    error,
    h("div", { class: "buttons" }, submit,
      h("button", { type: "button", class: "btn", onclick: () => dlg.close("cancel") }, "Cancel")));
  let sending = false;
  let key = newKey(); // a new key when the operator changes the form: a different request
  form.addEventListener("input", () => { key = newKey(); });
  const update = () => {
    const f = readForm();
    setText(summary, spec.summary(f));
    if (confirmLabel) setText(confirmLabel, spec.confirm(f));
    setText(submit, sending ? "Sending…" : spec.verb(f));
    const drainOk = f.drain === undefined || (Number.isFinite(f.drain) && f.drain >= 0 && f.drain <= 7200);
    const reasonOk = !want || f.reason.length >= want.min;
    submit.disabled = sending || !reasonOk || (confirmBox && !confirmBox.checked) || !drainOk || (plan && !plan.ok());
    if (plan && drainOk && !sending) plan.refresh(spec, f, update);
  };
  form.addEventListener("input", update);
  form.addEventListener("change", update);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    update();
    if (submit.disabled) return;
    sending = true;
    update();
    setText(error, "");
    try {
      pendingKey = key;
      await spec.send(readForm());
      dlg.close("done");
      refreshAll(0);
    } catch (err) {
      setText(error, `The controller did not accept this: ${err.message}`);
      key = newKey(); // sending it again on purpose is a new request
    } finally {
      pendingKey = null;
      sending = false;
      if (dlg.open) update();
      if (spec.after) spec.after();
    }
  });
  dlg.replaceChildren(form);
  dlg.onclose = () => {
    dlg.replaceChildren();
    // Back to the opener; if a refresh re-rendered it, to its twin (same data-focus key); if it is gone
    // (the plan it decided on, the step it ticked), to the panel it was in, else to the page.
    const opener = spec.opener;
    const key = opener && opener.dataset.focus;
    const twin = key ? document.querySelector(`[data-focus="${CSS.escape(key)}"]`) : null;
    const target = opener && opener.isConnected ? opener : twin || (spec.home && $(spec.home)) || $("main");
    target.focus();
  };
  update();
  dlg.showModal();
  (reason || confirmBox || submit).focus();
}

// ---- start ------------------------------------------------------------------------------------------

function start() {
  $("jf-kind").replaceChildren(...JOURNAL_KINDS.map(([value, label]) => h("option", { value }, label)));
  $("journal-filters").addEventListener("change", () => parts.journal.request(0));
  $("journal-filters").addEventListener("submit", (ev) => ev.preventDefault());
  $("sign-out").addEventListener("click", () => signOut("Signed out."));
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const token = $("token").value.trim();
    if (!token) {
      setText($("login-error"), "Enter a token.");
      return;
    }
    try {
      await signIn(token);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) {
        S.token = null;
        showLogin(`Cannot sign in: ${err.message}`);
      }
    }
  });
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    $("login").hidden = true;
    signIn(saved).catch((err) => {
      if (!(err instanceof ApiError && err.status === 401)) showLogin(`Cannot sign in: ${err.message}`);
    });
  } else {
    showLogin("");
  }
}

document.addEventListener("DOMContentLoaded", start);
