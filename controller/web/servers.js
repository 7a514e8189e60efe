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

