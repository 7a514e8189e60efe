/* ccfo dashboard: the managed servers, one panel per data center (site.yaml `datacenters` and `servers`).
 * Loaded after app.js, whose helpers (h, changed, slug, clock, withoutAge, ...) and state `S` it uses.
 *
 * The servers come with each status read (GET /status `servers`, `datacenters`): each server's heartbeat
 * (reachable while its agent's reports are fresh, the age of the last one once it is worth noticing), its
 * services' states and its scheduled jobs (enabled or disabled, the next run) as its agent last reported them.
 * A site without managed servers shows no panel. Like app.js: server text is inserted as text, never as HTML.
 */
"use strict";

statusRenderers.push(renderServers);

const KIND_LABEL_SERVER = {
  application: "application server", "db-connection": "database connection service", "ta-import": "TA import",
  "sms-email": "SMS / e-mail sender", "customer-service": "online customer service",
};

function renderServers(s) {
  const servers = s.servers || {};
  const panel = $("servers-panel");
  panel.hidden = !Object.keys(servers).length;
  if (panel.hidden || !changed("servers", [s.datacenters, withoutAge(servers)])) return;
  // every data center of site.yaml, then any a server names that the list lacks (never hide a server)
  const dcs = [...new Set([...(s.datacenters || []), ...Object.values(servers).map((v) => v.datacenter)])];
  $("datacenters").replaceChildren(...dcs.map((dc) => {
    const mine = Object.entries(servers).filter(([, v]) => v.datacenter === dc);
    const down = mine.filter(([, v]) => !v.reachable).length;
    const id = `dc-${slug(dc)}`;
    return h("section", { class: "dc", id, "data-testid": id, "aria-labelledby": `${id}-name` },
      h("header", { class: "dc-head" },
        h("h3", { id: `${id}-name` }, dc),
        h("span", { class: "muted small", "data-testid": `${id}-summary` },
          `${mine.length} server${mine.length === 1 ? "" : "s"}` + (down ? ` · ${down} unreachable` : " · all reporting"))),
      mine.length ? h("div", { class: "servers" }, mine.map(([name, v]) => serverCard(name, v)))
        : h("p", { class: "empty" }, "No managed server in this data center."));
  }));
}

function serverCard(name, v) {
  const id = `server-${slug(name)}`;
  const heartbeat = v.reachable
    ? `reporting${v.report_age_s >= STALE_REPORT_S ? ` (last report ${Math.round(v.report_age_s)} s ago)` : ""}`
    : v.report_age_s === null || v.report_age_s === undefined ? "UNREACHABLE (never reported)"
      : `UNREACHABLE (last report ${Math.round(v.report_age_s)} s ago)`;
  const services = Object.entries(v.services).map(([svc, st]) =>
    h("li", { class: `svc svc-${slug(st)}`, "data-testid": `srvsvc-${name}-${svc}` },
      h("span", { class: "svc-name" }, svc), h("span", { class: "svc-state" }, st)));
  const jobs = v.jobs.map((j) => h("li", { class: `job job-${slug(j.state)}`, "data-testid": `job-${name}-${j.name}` },
    h("span", { class: "job-name" }, j.name),
    h("span", { class: "job-state" }, j.state),
    h("span", { class: "job-next muted", "data-testid": `job-${name}-${j.name}-next` },
      j.next_run ? h("span", {}, "next ", h("time", { datetime: new Date(j.next_run * 1000).toISOString(),
        title: clock(j.next_run, true) }, clock(j.next_run, true))) : "no next run"),
    h("span", { class: "job-backend muted small" }, j.backend)));
  return h("article", { class: `server${v.reachable ? "" : " server-down"}${v.role === "backup" ? " server-backup" : ""}`,
    id, "data-testid": id, "aria-labelledby": `${id}-name` },
  h("header", { class: "host-head" },
    h("h4", { id: `${id}-name` }, name),
    v.role === "active" ? stateTag("ACTIVE", "tag-ok") : stateTag("BACKUP — kept ready", "tag-plain")),
  h("dl", { class: "facts" },
    h("dt", {}, "Kind"), h("dd", {}, KIND_LABEL_SERVER[v.kind] || v.kind),
    h("dt", {}, "Heartbeat"), h("dd", { class: v.reachable ? "ok" : "bad", "data-testid": `${id}-health` }, heartbeat),
    v.db_site ? [h("dt", {}, "Database"), h("dd", {}, v.db_site)] : null),
  h("h5", {}, "Services"),
  h("ul", { class: "services" }, services.length ? services : h("li", { class: "muted" }, v.reachable ? "none"
    : "no report")),
  h("h5", {}, "Scheduled jobs"),
  h("ul", { class: "jobs" }, jobs.length ? jobs : h("li", { class: "muted" }, v.reachable ? "none" : "no report")));
}

// ---- section III: the named switches (switches.yaml), each with its inverse -------------------------------
//
// GET /switches lists each switch with both directions' steps as the plans that would run now. An operator
// asks the controller for a dry run (POST /switches/NAME?dry_run=true: the plan, nothing run), or runs a
// direction through the confirmation dialog (the dialog shows the dry run's steps before it can be sent; a
// reason is journaled with the operator's name). Each switch shows its last run (the newest plan whose meta
// names it): direction, status, who, and its steps as the journal recorded them, live while it runs.

Object.assign(S, { switches: null, switchRuns: new Map(), switchSteps: [], switchDry: new Map() });
parts.switches = new Part(loadSwitches);
for (const kind of ["state", "plan", "step", "journal"]) EVENT_PARTS[kind].push("switches");
roleRenderers.push(renderSwitches);

const SWITCH_PLAN_LIMIT = 100;
const SWITCH_RETRY_MS = 2000;

async function loadSwitches(generation) {
  if (S.switches && !S.switches.length) return; // no switches.yaml: it is read when the controller starts
  let list;
  let plans;
  try {
    [list, plans] = await Promise.all([api("/switches"), api(`/plans?limit=${SWITCH_PLAN_LIMIT}`)]);
  } catch (err) { // no event may come for a long while on a quiet site: the first read tries again soon
    if (S.switches === null && !(err instanceof ApiError && err.status === 401)) {
      setTimeout(() => parts.switches.request(0), SWITCH_RETRY_MS);
    }
    throw err;
  }
  const runs = new Map();
  for (const p of plans.plans) { // newest first: the first plan naming a switch is its last run
    const id = p.meta && p.meta.switch;
    if (id && !runs.has(id)) runs.set(id, p);
  }
  const newest = [...runs.values()].sort((a, b) => b.created - a.created)[0];
  let steps = [];
  if (newest) {
    const j = await api(`/journal?plan_id=${encodeURIComponent(newest.id)}` +
      "&kind=step_started,step_finished,step_failed,plan_finished,plan_failed,plan_aborted&limit=200");
    steps = j.entries.slice().reverse();
  }
  if (generation !== S.generation) return;
  S.switches = list.switches;
  S.switchRuns = runs;
  S.switchSteps = newest ? { planId: newest.id, entries: steps } : null;
  renderSwitches();
}

function switchDirection(p) {
  return p.meta && p.meta.inverse ? "inverse" : "forward";
}

function renderSwitches() {
  const panel = $("switches-panel");
  const list = S.switches;
  panel.hidden = !list || !list.length;
  if (panel.hidden) return;
  const runs = [...S.switchRuns.entries()];
  if (!changed("switches", [S.role, list, runs, S.switchSteps, [...S.switchDry.entries()]]) && $("switches").firstChild) {
    return;
  }
  replaceKeepingFocus($("switches"), ...list.map((sw) => switchCard(sw, S.switchRuns.get(sw.id))));
}

function switchCard(sw, run) {
  const id = `switch-${slug(sw.id)}`;
  const canAct = roleAtLeast("operator");
  const busy = run && (run.status === "running" || run.status === "proposed");
  const where = !run ? "never run from this controller"
    : run.status === "finished" ? (switchDirection(run) === "inverse" ? "undone (inverse ran last)" : "switched")
      : `${switchDirection(run)} ${run.status}`;
  const button = (label, testid, onclick, extra) => h("button", { type: "button", class: `btn ${extra || ""}`,
    "data-testid": `${id}-${testid}`, "data-focus": `${id}-${testid}`, disabled: busy || undefined, onclick }, label);
  const dry = S.switchDry.get(sw.id);
  return h("article", { class: "switch", id, "data-testid": id, "aria-labelledby": `${id}-name` },
    h("header", { class: "host-head" },
      h("h3", { id: `${id}-name` }, sw.description),
      h("span", { class: `tag ${run && run.status === "finished" ? "tag-ok" : run && run.status === "failed" ? "tag-bad"
        : "tag-plain"}`, "data-testid": `${id}-state` }, where.toUpperCase())),
    h("p", { class: "muted small" }, sw.id, sw.source ? ` · ${sw.source}` : ""),
    h("div", { class: "switch-dirs" },
      switchSteps("Steps", sw.steps, `${id}-steps`),
      switchSteps(`Inverse: ${sw.inverse_description}`, sw.inverse, `${id}-inverse`)),
    canAct ? h("div", { class: "buttons" },
      button("Dry run", "dry", () => switchDryRun(sw, false)),
      button("Run…", "run", (ev) => openSwitch(sw, false, ev.target), "btn-primary"),
      button("Dry run inverse", "dry-inverse", () => switchDryRun(sw, true)),
      button("Run inverse…", "run-inverse", (ev) => openSwitch(sw, true, ev.target))) : null,
    dry ? switchDryBox(id, dry) : null,
    run ? switchRunBox(id, sw, run) : null);
}

function switchSteps(title, steps, testid) {
  return h("div", { class: "switch-dir" }, h("h4", {}, title),
    h("ol", { class: "steps steps-plain", "data-testid": testid }, steps.map((st) => h("li", {}, st.text || st.kind))));
}

function switchDryBox(id, dry) {
  const what = dry.inverse ? "inverse" : "switch";
  if (dry.error) {
    return h("div", { class: "switch-dry", "data-testid": `${id}-dry-result`, role: "status" },
      h("p", { class: "form-error" }, `Dry run of the ${what}: the controller would not run it now: ${dry.error}`));
  }
  return h("div", { class: "switch-dry", "data-testid": `${id}-dry-result`, role: "status" },
    h("p", {}, `Dry run of the ${what} (${clock(dry.at)}): the controller would run these ${dry.plan.steps.length} ` +
      `steps on site ${dry.site}; nothing was run.`),
    h("ol", { class: "steps steps-plain" }, dry.plan.steps.map((st) => h("li", {}, st.text || st.kind))));
}

async function switchDryRun(sw, inverse) {
  try {
    const d = await dryRun(`/switches/${encodeURIComponent(sw.id)}`, { inverse });
    S.switchDry.set(sw.id, { inverse, plan: d.plan, site: d.site, at: Date.now() / 1000 });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    S.switchDry.set(sw.id, { inverse, error: err.message, at: Date.now() / 1000 });
  }
  renderSwitches();
}

function switchRunBox(id, sw, run) {
  const title = switchDirection(run) === "inverse" ? sw.inverse_description : sw.description;
  const journal = S.switchSteps && S.switchSteps.planId === run.id ? S.switchSteps.entries : null;
  return h("div", { class: "switch-run", "data-testid": `${id}-last` },
    h("p", {}, h("span", { class: "muted" }, "Last run: "), title, " · ",
      h("strong", { "data-testid": `${id}-last-status` }, run.status.toUpperCase()),
      ` · by ${run.requested_by} at `, timeEl(run.created),
      ` · ${run.next_step >= run.steps.length ? run.steps.length : run.next_step} of ${run.steps.length} steps`),
    run.error ? h("p", { class: "plan-error", role: "alert" }, run.error) : null,
    journal ? h("ol", { class: "timeline", "data-testid": `${id}-journal`, "aria-label": "Its journal" },
      journal.map((e) => h("li", { class: `entry kind-${slug(e.kind)}`, "data-kind": e.kind },
        timeEl(e.ts), h("span", { class: "kind" }, KIND_LABEL[e.kind] || e.kind),
        h("span", { class: "entry-host" }, e.host || ""),
        h("span", { class: "text" }, entryText(e),
          e.duration_s !== null && e.duration_s !== undefined ? h("span", { class: "muted" }, ` · ${seconds(e.duration_s)}`)
            : null)))) : null);
}

function openSwitch(sw, inverse, opener) {
  const title = inverse ? sw.inverse_description : sw.description;
  const path = `/switches/${encodeURIComponent(sw.id)}`;
  openDialog({
    opener, home: "switches", title: inverse ? "Run a switch's inverse" : "Run a switch",
    verb: () => inverse ? "Run the inverse" : "Run the switch", fields: [],
    summary: () => `${title} (${sw.id}${inverse ? ", inverse" : ""}): the controller runs these steps on the ` +
      "managed servers as one plan, journaled like a failover.",
    confirm: () => `I confirm: ${title.charAt(0).toLowerCase()}${title.slice(1)} now.`,
    preview: () => dryRun(path, { inverse }),
    send: async (f) => {
      const plan = await api(path, { method: "POST", body: { inverse, reason: f.reason } });
      S.switchDry.delete(sw.id);
      S.switchRuns.set(sw.id, plan);
      return plan;
    },
    after: () => parts.switches.request(0),
  });
}
