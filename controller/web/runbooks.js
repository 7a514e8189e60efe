/* ccfo dashboard: the drills and checklists panels. Loaded after app.js, whose helpers (h, api, Part,
 * openDialog, changed, replaceKeepingFocus, ...) and state `S` it uses; it registers its own parts and
 * role renderers, and app.js starts the page once both scripts have run.
 *
 * Drills: the library (GET /drills), the runs this controller started (GET /drills/runs), the history
 * from the journal (GET /drills/history) with time to recover and calls failed; an operator starts a run.
 * Checklists: the definitions (GET /checklists), the open or latest run with its phases and steps, and
 * every run; an operator starts a run, ticks a manual step done, fails, skips, confirms or retries steps,
 * and aborts a run. The controller decides what applies (409 says why); the page offers what the step's
 * state allows. Like app.js: server text is inserted as text, never as HTML.
 */
"use strict";

const DRILL_HISTORY_LIMIT = 20;

// null: not read yet (the panel says "loading", not "none")
Object.assign(S, { drills: null, drillRuns: [], drillHistory: [], checklists: null, checklistProblems: [],
  checklistRunList: [], checklistRun: undefined });

const loading = (tag) => h(tag, { class: "empty" }, "Loading…");

parts.drillLibrary = new Part(loadDrillLibrary);
parts.drills = new Part(loadDrills);
parts.checklists = new Part(loadChecklists);
parts.checklistRuns = new Part(loadChecklistRuns);
roleRenderers.push(renderDrillLibrary, renderChecklists, renderChecklistRun);

function fmtDuration(s) { // 90 -> "1m30s", 5400 -> "1h30m": planned and real durations of checklist steps
  if (s === null || s === undefined) return "–";
  const t = Math.round(Math.abs(s));
  const d = Math.floor(t / 86400);
  const hh = Math.floor((t % 86400) / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = t % 60;
  const out = [d ? `${d}d` : "", hh ? `${hh}h` : "", m ? `${m}m` : "", !d && !hh && (sec || !m) ? `${sec}s` : ""];
  return (s < 0 ? "-" : "") + out.join("");
}

function about(text, label) { // a long description, one keypress away
  return text ? h("details", { class: "about" }, h("summary", {}, label), h("p", {}, text)) : null;
}

function resultTag(status, testid) {
  const text = String(status || "unknown").replace(/_/g, " ").toUpperCase();
  return h("span", { class: `tag result result-${slug(status || "unknown")}`, "data-testid": testid }, text);
}

// ---- drills ---------------------------------------------------------------------------------------

async function loadDrillLibrary(generation) {
  const data = await api("/drills");
  if (generation !== S.generation) return;
  S.drills = data.drills;
  renderDrillLibrary();
}

async function loadDrills(generation) {
  const [runs, history] = await Promise.all([api("/drills/runs"),
    api(`/drills/history?limit=${DRILL_HISTORY_LIMIT}`)]);
  if (generation !== S.generation) return;
  S.drillRuns = runs.runs;
  S.drillHistory = history.entries;
  renderDrillRuns();
  renderDrillHistory();
}

function renderDrillLibrary() {
  const box = $("drills");
  if (!changed("drillLibrary", [S.role, S.drills]) && box.firstChild) return;
  if (S.drills === null) {
    replaceKeepingFocus(box, loading("li"));
    return;
  }
  if (!S.drills.length) {
    replaceKeepingFocus(box, h("li", { class: "empty" }, "No drill scenarios."));
    return;
  }
  const operator = roleAtLeast("operator");
  replaceKeepingFocus(box, ...S.drills.map((d) => {
    const id = `drill-${slug(d.name)}`;
    return h("li", { class: `card${d.valid ? "" : " card-bad"}`, "data-testid": id },
      h("div", { class: "card-head" }, h("h4", { id: `${id}-name` }, d.name),
        d.valid ? h("span", { class: "tag tag-plain" }, `target: ${d.target}`) : h("span", { class: "tag tag-bad" }, "INVALID")),
      d.valid ? [h("p", { class: "card-text" }, `Fault: ${d.fault}`), about(d.description, "What it tests")]
        : h("ul", { class: "problems" }, d.problems.map((p) => h("li", {}, p))),
      d.valid && operator ? h("div", { class: "buttons" }, h("button", { type: "button", class: "btn",
        "data-focus": `${id}-run`, "aria-describedby": `${id}-name`, onclick: (ev) => openDrillRun(d, ev.target) },
      "Run…")) : null);
  }));
}

function renderDrillRuns() {
  const box = $("drill-runs");
  const running = S.drillRuns.filter((r) => r.status === "running");
  if (!changed("drillRuns", running) && box.firstChild) return;
  box.replaceChildren(running.length
    ? h("ul", { class: "faults" }, running.map((r) => h("li", { class: "fault", "data-testid": "drill-running" },
      h("span", { class: "tag" }, "DRILL RUNNING"), ` ${r.drill} (run ${r.id}), started by ${r.by}`)))
    : h("p", { class: "empty" }, "No drill is running in this controller."));
}

// One row per run: its end (finished or skipped), or its start while it has not ended.
function drillRows(entries) {
  const ended = new Set(entries.filter((e) => e.kind !== "drill_started").map((e) => (e.data || {}).run_id)
    .filter(Boolean));
  return entries.filter((e) => e.kind !== "drill_started" || !ended.has((e.data || {}).run_id)).map((e) => {
    const d = e.data || {};
    const fig = d.figures || {};
    const status = e.kind === "drill_started" ? "running" : e.status || d.status || "unknown";
    const calls = fig.calls_attempted === null || fig.calls_attempted === undefined ? "–"
      : `${fig.calls_failed ?? 0} of ${fig.calls_attempted}`;
    return { e, drill: d.drill || "?", status, recover: fig.time_to_recover_s, calls,
      why: d.reason || d.why || (e.kind === "drill_started" ? "" : e.reason), by: d.by || e.actor };
  });
}

function renderDrillHistory() {
  const box = $("drill-history");
  if (!changed("drillHistory", S.drillHistory) && box.firstChild) return;
  const rows = drillRows(S.drillHistory);
  if (!rows.length) {
    box.replaceChildren(h("p", { class: "empty" }, "No drill has run yet."));
    return;
  }
  const th = (text) => h("th", { scope: "col" }, text);
  box.replaceChildren(h("table", { class: "table" },
    h("caption", { class: "visually-hidden" }, "Drill runs, newest first"),
    h("thead", {}, h("tr", {}, th("When"), th("Drill"), th("Result"), th("Time to recover"), th("Calls failed"),
      th("By"))),
    h("tbody", {}, rows.map((r) => h("tr", { "data-testid": "drill-history-row", "data-kind": r.e.kind },
      h("td", {}, timeEl(r.e.ts)),
      h("td", {}, r.drill),
      h("td", {}, resultTag(r.status, "drill-result"), r.why ? h("div", { class: "muted small" }, r.why) : null),
      h("td", { "data-testid": "drill-recover" }, r.recover === null || r.recover === undefined ? "–" : seconds(r.recover)),
      h("td", { "data-testid": "drill-calls-failed" }, r.calls),
      h("td", {}, r.by || ""))))));
}

function openDrillRun(d, opener) {
  openDialog({
    opener, home: "drills", title: "Run a drill", reason: false, fields: [],
    verb: () => `Run drill ${d.name}`,
    summary: () => `Injects a real fault on the ${d.target} site: ${d.fault}. The drill measures how the controller ` +
      "and the site respond, then always takes the way back. It starts only when the site is in its steady " +
      "state and no plan is running or waiting.",
    confirm: () => `I confirm: run drill ${d.name} on the ${d.target} site now.`,
    send: () => api("/drills/runs", { method: "POST", body: { drill: d.name } }),
    after: () => refresh(["drills", "journal"], 0),
  });
}

// ---- checklists -------------------------------------------------------------------------------------

async function loadChecklists(generation) {
  const data = await api("/checklists");
  if (generation !== S.generation) return;
  S.checklists = data.checklists;
  S.checklistProblems = data.problems;
  renderChecklists();
}

async function loadChecklistRuns(generation) {
  const list = await api("/checklist-runs"); // newest first
  const latest = list.runs.length ? await api(`/checklist-runs/${encodeURIComponent(list.runs[0].id)}`) : null;
  if (generation !== S.generation) return;
  S.checklistRunList = list.runs;
  S.checklistRun = latest;
  renderChecklistRun();
  renderChecklistRunList();
}

function renderChecklists() {
  const box = $("checklists");
  if (!changed("checklists", [S.role, S.checklists, S.checklistProblems]) && box.firstChild) return;
  if (S.checklists === null) {
    replaceKeepingFocus(box, loading("li"));
    return;
  }
  const operator = roleAtLeast("operator");
  const items = S.checklists.map((c) => {
    const id = `checklist-${slug(c.name)}`;
    return h("li", { class: "card", "data-testid": id },
      h("div", { class: "card-head" }, h("h4", { id: `${id}-name` }, c.title),
        h("span", { class: "tag tag-plain" }, c.name)),
      h("p", { class: "card-text" }, `${c.phases} phase(s), ${c.steps} steps (${c.automatic_steps} automatic), ` +
        `planned ${fmtDuration(c.planned_s)}`),
      about(c.description, "About"),
      operator ? h("div", { class: "buttons" }, h("button", { type: "button", class: "btn", "data-focus": `${id}-start`,
        "aria-describedby": `${id}-name`, onclick: (ev) => openChecklistStart(c, ev.target) }, "Start run…")) : null);
  });
  const problems = S.checklistProblems.map((p) => h("li", { class: "card card-bad" },
    h("span", { class: "tag tag-bad" }, "INVALID"), ` ${p}`));
  replaceKeepingFocus(box, ...(items.length || problems.length ? [...items, ...problems]
    : [h("li", { class: "empty" }, "No checklists in the controller's configuration (CONFIG/checklists).")]));
}

const CL_STATE = { // icon (decoration only) and the words that say it
  done: ["✓", "done"], skipped: ["–", "skipped"], running: ["▶", "in progress"], failed: ["✗", "FAILED"],
  ready: ["·", "ready"], waiting: ["·", "waiting"], blocked: ["■", "BLOCKED"],
  awaiting_confirmation: ["?", "awaiting confirmation"], rolling_back: ["↺", "rolling back"],
  rolled_back: ["↺", "rolled back"], rollback_failed: ["✗", "ROLLBACK FAILED"],
};

function stepButtons(run, st) {
  if (!run.status || run.outcome || !roleAtLeast("operator")) return [];
  const b = (op, label) => h("button", { type: "button", class: "btn btn-small", "data-focus": `cl-${st.id}-${op}`,
    "aria-describedby": `cl-${slug(st.id)}-title`, onclick: (ev) => openStepOp(run, st, op, ev.target) }, label);
  const manual = st.kind === "manual";
  if (st.state === "running") return manual ? [b("done", "Done…"), b("fail", "Failed…"), b("skip", "Skip…")] : [];
  if (st.state === "rolling_back") return st.awaiting ? [b("done", "Done…"), b("fail", "Failed…")] : [];
  if (st.state === "awaiting_confirmation") return [b("confirm", "Confirm…"), b("skip", "Skip…")];
  if (["failed", "rolled_back", "rollback_failed"].includes(st.state)) return [b("retry", "Retry…"), b("skip", "Skip…")];
  if (["ready", "waiting", "blocked"].includes(st.state)) return [b("skip", "Skip…")];
  return [];
}

function stepLine(st) {
  const bits = [`${st.owner} · ${st.kind}`, `planned ${fmtDuration(st.planned_s)}`];
  if (st.real_s !== null && st.real_s !== undefined && st.ended) bits.push(`took ${fmtDuration(st.real_s)}`);
  else if (st.state === "running" && st.started) bits.push(`since ${clock(st.started)}`);
  if (st.ended_by) bits.push(`by ${st.ended_by}`);
  return bits.join(" · ");
}

function runSignature(run) { // what the run view shows, without what changes with the clock alone
  if (!run) return run === undefined ? "loading" : null;
  return [run.id, run.status, run.outcome, run.ended, run.current_phase, run.counts, run.phases.map((p) => [p.id,
    p.state, p.steps.map((st) => [st.id, st.state, st.note, st.started, st.ended, st.ended_by, st.awaiting,
      st.blocked_by, st.attempts])])];
}

function renderChecklistRun() {
  const box = $("checklist-run");
  const run = S.checklistRun;
  if (changed("checklistRun", [S.role, runSignature(run)]) || !box.firstChild) {
    replaceKeepingFocus(box, run === undefined ? loading("p") : run ? checklistRunView(run)
      : h("p", { class: "empty" }, "No checklist has been run yet."));
  }
  const line = box.querySelector('[data-testid="checklist-line"]');
  if (line && run) setText(line, run.line); // the projection moves with the clock: text only, no rebuild
}

function checklistRunView(run) {
  const done = (run.counts.done || 0) + (run.counts.skipped || 0);
  const open = !run.outcome;
  const progress = h("div", { class: "progress", role: "progressbar", "aria-valuemin": "0",
    "aria-valuemax": String(run.steps), "aria-valuenow": String(done), "aria-label": "checklist steps done or skipped" },
  h("span", { class: "progress-bar" }));
  progress.firstChild.style.width = `${run.steps ? (100 * done) / run.steps : 0}%`;
  return h("article", { class: "cl-run", "data-run-id": run.id },
    h("header", { class: "plan-head" }, h("h3", {}, `${open ? "Open run" : "Last run"}: ${run.title}`),
      resultTag(run.status, "checklist-status")),
    h("p", { class: "plan-who" }, `Run ${run.id}${run.rehearsal ? " (rehearsal)" : ""} · started `,
      timeEl(run.started), ` by ${run.started_by}: “${run.reason}”`),
    h("p", { class: "muted", "data-testid": "checklist-line" }, run.line),
    h("p", { class: "plan-progress", "data-testid": "checklist-progress" }, `${done} of ${run.steps} steps done or skipped`),
    progress,
    run.phases.map((p) => h("section", { class: "cl-phase", "aria-labelledby": `clp-${slug(p.id)}` },
      h("h4", { id: `clp-${slug(p.id)}` }, p.title, " ", h("span", { class: "muted small" },
        `— ${p.state}${p.maintenance ? " · maintenance mode" : ""}`)),
      h("ol", { class: "cl-steps" }, p.steps.map((st) => {
        const [icon, words] = CL_STATE[st.state] || ["·", st.state];
        const state = st.blocked_by && st.blocked_by.length ? `${words} by ${st.blocked_by.join(", ")}` : words;
        const buttons = open ? stepButtons(run, st) : [];
        return h("li", { class: `cl-step cl-${slug(st.state)}`, "data-testid": `cl-step-${st.id}`, "data-state": st.state },
          h("span", { class: "step-icon", "aria-hidden": "true" }, icon),
          h("div", { class: "cl-body" },
            h("div", { class: "cl-title", id: `cl-${slug(st.id)}-title` }, st.title),
            h("div", { class: "muted small" }, stepLine(st)),
            st.awaiting && open ? h("div", { class: "cl-awaiting" }, `Waiting for ${st.awaiting}`) : null,
            st.note ? h("div", { class: "cl-note", "data-testid": "cl-note" }, `Note: ${st.note}`) : null),
          h("span", { class: "cl-state", "data-testid": "cl-state" }, state),
          buttons.length ? h("div", { class: "cl-buttons" }, buttons) : null);
      })))),
    open && roleAtLeast("operator") ? h("div", { class: "buttons" }, h("button", { type: "button", class: "btn",
      "data-focus": "cl-abort", onclick: (ev) => openRunAbort(run, ev.target) }, "Abort run…")) : null);
}

function renderChecklistRunList() {
  const box = $("checklist-runs");
  if (!changed("checklistRunList", S.checklistRunList.map((r) => [r.id, r.status, r.counts, r.ended])) &&
      box.firstChild) return;
  if (!S.checklistRunList.length) {
    box.replaceChildren(h("p", { class: "empty" }, "No runs yet."));
    return;
  }
  const th = (text) => h("th", { scope: "col" }, text);
  box.replaceChildren(h("table", { class: "table" },
    h("caption", { class: "visually-hidden" }, "Checklist runs, newest first"),
    h("thead", {}, h("tr", {}, th("Run"), th("Started"), th("By"), th("Status"), th("Steps done"))),
    h("tbody", {}, S.checklistRunList.map((r) => h("tr", { "data-testid": "checklist-run-row", "data-run-id": r.id },
      h("td", {}, r.id, r.rehearsal ? h("span", { class: "muted small" }, " rehearsal") : null),
      h("td", {}, timeEl(r.started)),
      h("td", {}, r.started_by),
      h("td", {}, resultTag(r.status)),
      h("td", {}, `${(r.counts.done || 0) + (r.counts.skipped || 0)} of ${r.steps}`))))));
}

function openChecklistStart(c, opener) {
  openDialog({
    opener, home: "checklist-run", title: "Start a checklist run", verb: (f) => f.rehearsal ? "Start the rehearsal" : "Start the run",
    fields: [h("div", { class: "confirm" }, h("input", { id: "dlg-rehearsal", type: "checkbox", name: "rehearsal" }),
      h("label", { for: "dlg-rehearsal", class: "confirm-label" },
        "Rehearsal (its real durations become the plan of the next run)"))],
    summary: () => `Starts “${c.title}” (${c.steps} steps, planned ${fmtDuration(c.planned_s)}). Automatic steps run ` +
      "by themselves; actions and drills wait for a confirmation. One run is open at a time.",
    confirm: (f) => `I confirm: start ${f.rehearsal ? "a rehearsal" : "a run"} of ${c.name}.`,
    send: (f) => api(`/checklists/${encodeURIComponent(c.name)}/runs`, { method: "POST",
      body: { reason: f.reason, rehearsal: Boolean(f.rehearsal) } }),
    after: () => refresh(["checklistRuns"], 0),
  });
}

const STEP_OPS = { // title, button verb, the text field (and its route's name), a confirmation for what acts
  done: { title: "Mark the step done", verb: "Mark done", field: "note",
    reason: { label: "Note (optional)", min: 0, max: 2000, help: "What was done or seen: recorded with the step." } },
  fail: { title: "Mark the step failed", verb: "Mark failed", field: "note",
    reason: { label: "What went wrong", min: 3, max: 2000,
      help: "Required (at least 3 characters). The steps that wait on this one are blocked until it is retried or skipped." } },
  skip: { title: "Skip the step", verb: "Skip the step", field: "reason",
    reason: { help: "Required (at least 3 characters): why it is skipped. The steps after it go on." } },
  retry: { title: "Retry the step", verb: "Retry the step", field: "reason" },
  confirm: { title: "Confirm the step", verb: "Run the step now", field: "note", confirm: true,
    reason: { label: "Note (optional)", min: 0, max: 2000, help: "Recorded with the step." } },
};

function openStepOp(run, st, op, opener) {
  const o = STEP_OPS[op];
  openDialog({
    opener, home: "checklist-run", title: o.title, verb: () => `${o.verb}: ${st.id}`, fields: [], reason: o.reason,
    summary: () => `${st.title} (step ${st.id}, ${st.kind}, owner ${st.owner}) in run ${run.id}.` +
      (st.what ? ` It does: ${st.what}.` : ""),
    confirm: o.confirm ? () => `I confirm: run step ${st.id} now.` : null,
    send: (f) => api(`/checklist-runs/${encodeURIComponent(run.id)}/steps/${encodeURIComponent(st.id)}/${op}`,
      { method: "POST", body: { [o.field]: f.reason } }),
    after: () => refresh(["checklistRuns"], 0),
  });
}

function openRunAbort(run, opener) {
  openDialog({
    opener, home: "checklist-run", title: "Abort the checklist run", verb: () => `Abort run ${run.id}`, fields: [],
    summary: () => `Closes run ${run.id} unfinished; the site's mode is restored if the run changed it.`,
    confirm: () => `I confirm: abort run ${run.id}.`,
    send: (f) => api(`/checklist-runs/${encodeURIComponent(run.id)}/abort`, { method: "POST",
      body: { reason: f.reason } }),
    after: () => refresh(["checklistRuns"], 0),
  });
}
