/* ccfo dashboard: the controller cluster (site.yaml `cluster:`), when there is one. Loaded after app.js, whose
 * helpers (h, api, Part, changed, ...) and state `S` it uses.
 *
 * GET /cluster lists the members with their role (leader, follower, unreachable), the leader and its term; the
 * page keeps that list (S.cluster) so that apiFetch can move to another member when the one it talks to dies
 * (app.js). The panel says which member the page talks to and, after a move, from which one it moved. A single
 * controller answers 404 there: the panel stays hidden and the page never asks again until the next sign-in.
 */
"use strict";

const CLUSTER_EVERY_MS = 2000; // re-read with the controller's cycles, at most this often
const ROLE_TAG = { leader: "tag-ok", follower: "tag-plain", unreachable: "tag-bad" };

parts.cluster = new Part(loadCluster);
CYCLE_PARTS.cluster = CLUSTER_EVERY_MS;
memberRenderers.push((sentence) => {
  S.memberMoved = { sentence, at: Date.now() / 1000 };
  renderCluster();
  refreshAll(0); // everything from the new member
});

async function loadCluster(generation) {
  if (S.cluster === false) return; // a single controller
  let data;
  try {
    data = await api("/cluster");
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      S.cluster = false;
      renderCluster();
      return;
    }
    throw err;
  }
  if (generation !== S.generation) return;
  S.cluster = data;
  S.member = data.me;
  renderCluster();
}

function renderCluster() {
  const panel = $("cluster-panel");
  const c = S.cluster;
  panel.hidden = !c;
  $("member").hidden = !c;
  if (!c) return;
  const url = (c.members.find((m) => m.name === c.me) || {}).url || currentOrigin();
  setText($("member-text"), `via ${c.me}`);
  $("member").title = `this page talks to the controller member ${c.me} (${url})`;
  if (!changed("cluster", [c, S.memberMoved])) return;
  const leader = c.leader ? h("strong", { "data-testid": "cluster-leader" }, c.leader)
    : h("strong", { class: "bad", "data-testid": "cluster-leader" }, "none (an election is under way)");
  $("cluster").replaceChildren(...[ // replaceChildren writes a null as the text "null": leave them out
    h("p", { class: "cluster-line" },
      "Leader ", leader, " · term ", h("strong", { "data-testid": "cluster-term" }, c.term === null ? "–" : String(c.term)),
      ` · lease ${c.lease_ttl_s} s · this page talks to `,
      h("strong", { "data-testid": "cluster-me" }, c.me), h("span", { class: "muted" }, ` (${url})`),
      c.etcd_reachable ? null : h("span", { class: "bad" }, ` · ${c.me} cannot read etcd: what it shows may be old`)),
    S.memberMoved ? h("p", { class: "cluster-moved", role: "status", "data-testid": "cluster-moved" },
      `${S.memberMoved.sentence} (${clock(S.memberMoved.at)}).`) : null,
    h("ul", { class: "members", "aria-label": "Members" }, c.members.map((m) =>
      h("li", { class: `member member-${slug(m.role)}${m.name === c.me ? " member-me" : ""}`,
        "data-testid": `cluster-member-${m.name}`, "data-role": m.role },
      h("span", { class: "member-name" }, m.name),
      h("span", { class: `tag ${ROLE_TAG[m.role] || "tag-plain"}` }, m.role),
      h("span", { class: "muted small" }, m.url),
      m.name === c.me ? h("span", { class: "small" }, "this page talks to it") : null)))].filter(Boolean));
}
