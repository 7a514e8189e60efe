"""Attacks on the controller's and the agent's HTTP APIs, route by route as each app declares them (a new route
is covered without editing this file): every mutating route refuses a missing, wrong, expired or viewer token;
a reason is required where the design says every change records why; bodies and query values are bounded;
and no secret (API tokens, the AMI secret, SNMP keys and communities) ever reaches a log line or a response.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccfo.platform.auth import Role, TokenStore, add_token, digest
from tests.safety.apikit import MUTATING, AgentApi, ControllerApi, concrete, routes

MAX_BODY = 64 * 1024


def controller_mutations(api: ControllerApi) -> list[tuple[str, str]]:
    return [(m, p) for m, p, _ in routes(api.app) if m in MUTATING]


# ----------------------------------------------------------------------------- tokens and roles


def test_every_mutating_controller_route_refuses_missing_wrong_expired_and_viewer_tokens(
        controller: ControllerApi) -> None:
    mutations = controller_mutations(controller)
    assert len(mutations) >= 20 and ("PUT", "/api/v1/mode") in mutations
    refused: dict[str, list[str]] = {}
    for method, path in mutations:
        url = concrete(path, "ipc-a" if path.startswith("/api/v1/agents/") else "x")
        cases = {"missing": ({}, 401), "wrong": ({"Authorization": "Bearer not-a-token"}, 401),
                 "not bearer": ({"Authorization": f"Basic {controller.tokens['admin']}"}, 401),
                 "expired": (controller.auth("expired"), 401), "viewer": (controller.auth("viewer"), 403)}
        if path.endswith("/report"):  # only an agent pushes a report, and only for its own host
            cases |= {"operator": (controller.auth("operator"), 403), "admin": (controller.auth("admin"), 403)}
            other = concrete(path, "ipc-b")
            r = controller.request(method, other, json={}, headers=controller.auth("agent"))
            assert r.status_code == 403, (method, other, r.status_code)
        else:
            cases["agent"] = (controller.auth("agent"), 403)
        for name, (headers, status) in cases.items():
            r = controller.request(method, url, json={}, headers=headers)
            assert r.status_code == status, (name, method, path, r.status_code, r.text[:200])
            if status == 401:
                assert r.headers.get("www-authenticate") == "Bearer", (name, method, path)
            refused.setdefault(f"{method} {path}", []).append(name)
    assert all(len(v) >= 6 for v in refused.values())


def test_changing_the_mode_needs_an_admin(controller: ControllerApi) -> None:
    body = {"mode": "supervised", "reason": "role check"}
    assert controller.request("PUT", "/api/v1/mode", json=body, headers=controller.auth("operator")).status_code == 403
    assert controller.request("PUT", "/api/v1/mode", json=body, headers=controller.auth("admin")).status_code == 200


def test_every_read_route_needs_a_token(controller: ControllerApi) -> None:
    open_ = ("/api/v1/events", "/", "/healthz", "/readyz")  # the stream is checked on its own; health needs none
    reads = [(m, p) for m, p, _ in routes(controller.app) if m == "GET" and p not in open_]
    assert len(reads) >= 15
    for method, path in reads:
        r = controller.request(method, concrete(path), headers={})
        assert r.status_code == 401, (path, r.status_code)
    assert controller.request("GET", "/", headers={}).status_code == 200  # the page: no data, no secret
    for path in ("/healthz", "/readyz"):  # for load balancers: a verdict, nothing else
        r = controller.request("GET", path, headers={})
        assert r.status_code == 200 and r.json() == {"status": "ok"}, (path, r.status_code, r.text)


def test_agent_routes_refuse_missing_and_wrong_tokens(agent: AgentApi) -> None:
    """The agent has one bearer token (the controller's) with no roles and no expiry: missing and wrong are
    what exists to refuse there."""
    for method, path, _ in routes(agent.app):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {agent.token.secret}"},
                        {"Authorization": agent.token.secret}, {"Authorization": "Bearer "}):
            r = agent.request(method, path, json={}, headers=headers)
            if path in ("/v1/health", "/healthz"):
                assert r.status_code == 200 and r.json() == {"status": "ok"}
            elif path == "/readyz":  # no AMI wired in this app: ready; fixed words only
                assert r.status_code == 200 and r.json() == {"status": "ready", "ami": "not configured"}
            elif path == "/metrics":  # read-only counts for Prometheus; the token never appears
                assert r.status_code == 200 and agent.token.secret not in r.text
            else:
                assert r.status_code == 401 and r.headers.get("www-authenticate") == "Bearer", (method, path, headers)


def test_token_expiry_given_with_a_utc_offset_is_honoured(tmp_path: Path) -> None:
    """Regression: `expires` with an explicit offset was read as if it were UTC (+08:00 expired 8 h late)."""
    path = tmp_path / "tokens.yaml"
    token = add_token(path, "night-shift", "operator", expires="2030-01-01T08:00:00+08:00")  # = 00:00 UTC
    naive = add_token(path, "day-shift", "operator", expires="2030-01-01T00:00:00")  # no offset: UTC
    store = TokenStore.load(path)
    midnight = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    assert store.authenticate(token, midnight - 1) is not None and store.authenticate(token, midnight) is None
    assert store.authenticate(naive, midnight - 1) is not None and store.authenticate(naive, midnight) is None


# ----------------------------------------------------------------------------- reasons


# Changes that carry no operator reason, and why. Every other mutating route must require one (3-500 characters,
# not blank). A new route lands in neither list and fails here until someone decides.
NO_REASON = {
    ("POST", "/api/v1/agents/{host}/report"): "an agent's periodic report, not an operator change",
    ("POST", "/api/v1/checklist-runs/{run}/steps/{step}/done"): "ticking a step the checklist prescribes; a note",
    ("POST", "/api/v1/checklist-runs/{run}/steps/{step}/confirm"): "confirming a prescribed step; a note",
    ("POST", "/api/v1/checklist-runs/{run}/steps/{step}/fail"): "the failure note is required (min 3) instead",
    ("POST", "/api/v1/drills/runs"): "NOTICED: starting a drill takes no reason (drills API, left to its owner)",
    ("POST", "/api/v1/drills/journal"): "the drill runner's own record; its reason may be empty",
    ("POST", "/api/v1/drills/schedules"): "NOTICED: adding a schedule takes no reason (drills API)",
    ("DELETE", "/api/v1/drills/schedules/{schedule_id}"): "NOTICED: removing a schedule takes no reason",
}


def _body_schema(doc: dict, method: str, path: str) -> dict:
    op = doc["paths"][path][method.lower()]
    ref = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
    return doc["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref else {}


def test_a_reason_is_required_for_every_operator_change(controller: ControllerApi) -> None:
    doc = controller.app.openapi()
    needing = []
    for method, path in controller_mutations(controller):
        body = _body_schema(doc, method, path)
        if "reason" in body.get("required", []) and body["properties"]["reason"].get("minLength", 0) >= 3:
            needing.append((method, path))
        else:
            assert (method, path) in NO_REASON, f"{method} {path} changes something without a required reason"
    assert ("POST", "/api/v1/failover") in needing and ("PUT", "/api/v1/mode") in needing and len(needing) >= 15
    for method, path in needing:
        body = {k: v for k, v in {"to": "ipc-b", "host": "ipc-b", "mode": "manual"}.items()
                if k in _body_schema(doc, method, path)["properties"]}
        for reason in (None, "", "ab", "   ", "\t\n\t", "x" * 501):
            sent = body if reason is None else {**body, "reason": reason}
            r = controller.request(method, concrete(path), json=sent, headers=controller.auth("admin"))
            assert r.status_code == 422, (method, path, reason, r.status_code, r.text[:200])


# ----------------------------------------------------------------------------- bounds


def _all_mutations(controller: ControllerApi, agent: AgentApi) -> list[tuple[object, str, str, dict[str, str], bool]]:
    """(api, method, url, headers, whether the route reads a body) for every mutating route of both apps."""
    out: list[tuple[object, str, str, dict[str, str], bool]] = [
        (controller, m, concrete(p, "ipc-a"), controller.auth("agent" if p.endswith("/report") else "admin"),
         r.body_field is not None) for m, p, r in routes(controller.app) if m in MUTATING]
    out += [(agent, m, p, agent.auth(), r.body_field is not None) for m, p, r in routes(agent.app) if m in MUTATING]
    return out


def test_bodies_over_64_kib_are_refused_announced_or_chunked(controller: ControllerApi, agent: AgentApi) -> None:
    big = json.dumps({"reason": "x" * (MAX_BODY + 10)}).encode()

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: httpx sends it chunked
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    for api, method, url, headers, reads_body in _all_mutations(controller, agent):
        h = {**headers, "Content-Type": "application/json"}
        r = api.request(method, url, content=big, headers=h)  # type: ignore[attr-defined]
        assert r.status_code == 413, (method, url, r.status_code)
        if not reads_body:  # a body the route never reads is never buffered: nothing to bound
            continue
        r = api.request(method, url, content=chunked(), headers=h)  # type: ignore[attr-defined]
        assert r.status_code == 413, ("chunked", method, url, r.status_code)
        assert "content-length" not in {k.lower() for k in r.request.headers}
    small = controller.request("POST", "/api/v1/failover", json={"to": "ipc-b", "reason": "y" * 60_000},
                               headers=controller.auth("operator"))
    assert small.status_code == 422  # under the limit: read, and refused by the reason's own bound


def test_every_query_value_is_bounded(controller: ControllerApi, agent: AgentApi) -> None:
    for api in (controller, agent):
        doc = api.app.openapi()
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                for param in op.get("parameters", []):
                    if param["in"] != "query":
                        continue
                    schema = param["schema"]
                    kinds = [s.get("type") for s in schema.get("anyOf", [schema])]
                    if "string" in kinds and "enum" not in schema:
                        assert any(s.get("maxLength") for s in schema.get("anyOf", [schema])), (method, path, param)
                    if "integer" in kinds:
                        assert any("maximum" in s for s in schema.get("anyOf", [schema])), (method, path, param)
    viewer = controller.auth("viewer")
    for params in ({"kind": "k" * 20_000}, {"host": "h" * 1000}, {"limit": 10**9}, {"before_id": 2**64},
                   {"after_id": 10**30}, {"plan_id": "p" * 500}):
        r = controller.request("GET", "/api/v1/journal", params=params, headers=viewer)
        assert r.status_code == 422, (params, r.status_code)


def test_journal_ids_beyond_64_bits_are_refused_not_a_server_error(controller: ControllerApi) -> None:
    """Regression (found by schemathesis): before_id=2**63 reached SQLite and raised OverflowError (HTTP 500)."""
    viewer = controller.auth("viewer")
    assert controller.request("GET", "/api/v1/journal", params={"before_id": 2**63}, headers=viewer).status_code == 422
    assert controller.request("GET", "/api/v1/journal", params={"before_id": 2**63 - 1},
                              headers=viewer).status_code == 200
    with pytest.raises(ValueError, match="64 bits"):
        controller.harness.journal.query(after_id=2**63)
    with pytest.raises(ValueError, match="64 bits"):
        controller.harness.journal.get(-(2**63) - 1)


FINITE = st.floats(allow_nan=False, allow_infinity=False)  # JSON has no NaN or Infinity: the client refuses them
JSON = st.recursive(st.none() | st.booleans() | st.integers() | FINITE | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)
REPORT = {"host": "ipc-a", "ami": {"connected": True}, "board": {"driver": "up"},
          "spans": [{"span": 1, "alarm": "ok", "dchannel": "up", "channels": 30}],
          "services": {"cti": {"state": "active"}}, "calls": {"ivr": 0, "agent": 0, "fax": 0}, "db": {"site": "x"}}


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(key=st.sampled_from(sorted(REPORT)), sub=st.none() | st.sampled_from(["connected", "driver", "state", "ivr",
                                                                             "site", "span", 0]),
       value=JSON)
def test_malformed_agent_reports_are_422_never_500(controller: ControllerApi, key: str, sub: object,
                                                   value: object) -> None:
    """A report with any field replaced by any JSON value. Regression: a list where `calls` or `db` should be an
    object, or `services` not an object, raised AttributeError out of parse_report (HTTP 500)."""
    body = json.loads(json.dumps(REPORT))
    target = body[key]
    if sub is not None and isinstance(target, dict) and sub in target:
        target[sub] = value
    elif sub == 0 and isinstance(target, list):
        target[0] = value
    else:
        body[key] = value
    r = controller.request("POST", "/api/v1/agents/ipc-a/report", json=body, headers=controller.auth("agent"))
    assert r.status_code in (204, 422), (body, r.status_code, r.text[:300])


# ----------------------------------------------------------------------------- secrets


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    for name in ("", "agents", "controller", "ccfo", "panoramisk", "pysnmp", "httpx", "asyncio", "uvicorn"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield caplog


async def _ami_and_snmp_scenario(secrets: dict[str, str]) -> list[str]:
    """Log the agent's AMI link in and out with the right and a wrong secret, serve SNMP v3 and v2c, refuse
    wrong credentials and send notifications; return what the agent showed (errors, reprs)."""
    from agents.ami import AmiMonitor
    from agents.snmp.responder import SnmpResponder
    from ccfo.snmp.security import NotifyTarget, Secret, V3User
    from lab.ami import LabAmiServer
    from tests.lab.harness import FAST_LAB, FAST_MONITOR
    from tests.snmp.conftest import free_udp_port, sample_view

    shown: list[str] = []
    lab = LabAmiServer("127.0.0.1", 0, secret=secrets["ami"], **FAST_LAB)
    await lab.start()
    try:
        for secret in (secrets["ami"], secrets["ami_wrong"]):
            mon = AmiMonitor("127.0.0.1", lab.port, lab.username, secret, **FAST_MONITOR)
            await mon.start()
            for _ in range(200):
                if mon.link.connected or "refused" in (mon.link.error or ""):
                    break
                await asyncio.sleep(0.02)
            if mon.link.connected:
                await mon.refresh()
                await mon.db_put("ccfo", "k", "v")
            shown += [repr(mon.snapshot()), repr(mon.config), str(mon.link.error)]
            await mon.stop()
    finally:
        await lab.close()
    user = V3User("ccfo", Secret(secrets["snmp_auth"]), Secret(secrets["snmp_priv"]))
    nms = V3User("nms", Secret(secrets["nms_auth"]), Secret(secrets["nms_priv"]))
    view = [sample_view()]
    responder = SnmpResponder(lambda: view[0], user=user, community=Secret(secrets["community"]), port=0,
                              watch_interval_s=None,
                              targets=[NotifyTarget("nms", "127.0.0.1", free_udp_port(), "inform", user=nms,
                                                    timeout_s=0.05, retries=0),
                                       NotifyTarget("v2c", "127.0.0.1", free_udp_port(), "trap",
                                                    community=Secret(secrets["trap_community"]))])
    await responder.start()
    try:
        from dataclasses import replace

        view[0] = replace(view[0], ami_connected=False)
        shown.append(repr(responder.view_changed()))
        from pysnmp.hlapi.v3arch.asyncio import (
            USM_AUTH_HMAC96_SHA,
            USM_PRIV_CFB128_AES,
            CommunityData,
            ContextData,
            ObjectIdentity,
            ObjectType,
            SnmpEngine,
            UdpTransportTarget,
            UsmUserData,
            get_cmd,
        )

        engine = SnmpEngine()
        target = await UdpTransportTarget.create(("127.0.0.1", responder.port), timeout=0.3, retries=0)
        oid = ObjectType(ObjectIdentity((1, 3, 6, 1, 2, 1, 1, 1, 0)))
        for auth in (UsmUserData("ccfo", secrets["snmp_auth"], secrets["snmp_priv"], authProtocol=USM_AUTH_HMAC96_SHA,
                                 privProtocol=USM_PRIV_CFB128_AES),
                     UsmUserData("ccfo", secrets["snmp_auth"] + "x", secrets["snmp_priv"],
                                 authProtocol=USM_AUTH_HMAC96_SHA, privProtocol=USM_PRIV_CFB128_AES),
                     CommunityData(secrets["community"]), CommunityData(secrets["community"] + "x")):
            shown.append(repr(await get_cmd(engine, auth, target, ContextData(), oid, lookupMib=False)))
        engine.close_dispatcher()
        await asyncio.sleep(0.2)  # the inform's one attempt times out: its failure is logged
    finally:
        await responder.close()
    return shown


def test_no_secret_in_any_log_line_or_response(controller: ControllerApi, agent: AgentApi,
                                               debug_logs: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    secrets = {"ami": "AMI-s3cret-7f1c2a9e", "ami_wrong": "AMI-wr0ng-4b6d8e0f", "snmp_auth": "SNMP-auth-91ac37d2",
               "snmp_priv": "SNMP-priv-5e20b6c4", "nms_auth": "NMS-auth-0d9e8f7a", "nms_priv": "NMS-priv-3c4b5a69",
               "community": "COMM-ro-6a7b8c9d", "trap_community": "COMM-trap-1f2e3d4c",
               "near_miss": controller.tokens["operator"][:-2] + "zz", "agent_wrong": agent.token.secret + "0"}
    secrets |= {f"token_{role}": tok for role, tok in controller.tokens.items()}
    secrets["agent_api"] = agent.token.secret
    first_response = len(controller.responses), len(agent.responses)
    # the controller API: every role, a near miss, the expired token, an action and an agent push
    for role in (*ControllerApi.ROLES, "expired", "agent"):
        controller.request("GET", "/api/v1/status", headers=controller.auth(role))
        controller.request("GET", "/api/v1/journal", headers=controller.auth(role))
    controller.request("GET", "/api/v1/status", headers={"Authorization": f"Bearer {secrets['near_miss']}"})
    controller.request("POST", "/api/v1/failback", json={"reason": "secrets scenario"},
                       headers=controller.auth("operator"))
    controller.request("PUT", "/api/v1/mode", json={"mode": "supervised", "reason": "secrets scenario"},
                       headers=controller.auth("admin"))
    controller.request("POST", "/api/v1/agents/ipc-a/report", json=REPORT, headers=controller.auth("agent"))
    controller.request("GET", "/metrics", headers=controller.auth("viewer"))
    # the agent API: its token, a wrong one, a report, an action that fails and one that is refused
    agent.request("GET", "/v1/report", headers=agent.auth())
    agent.request("GET", "/v1/report", headers={"Authorization": f"Bearer {secrets['agent_wrong']}"})
    agent.request("POST", "/v1/actions", json={"action_id": "s-1", "action": "line_test"}, headers=agent.auth())
    agent.request("POST", "/v1/actions", json={"action_id": "s-2", "action": "start", "service": "nope"},
                  headers=agent.auth())
    shown = asyncio.run(_ami_and_snmp_scenario(secrets))
    # token files hold digests only
    tokens_yaml = (controller.root / "tokens.yaml").read_text()
    responses = controller.responses[first_response[0]:] + agent.responses[first_response[1]:]
    assert len(responses) >= 15 and any(r.status_code == 200 for r in responses)
    texts = {"logs": debug_logs.text, "shown": "\n".join(shown), "tokens file": tokens_yaml,
             "responses": "\n".join(f"{r.status_code} {dict(r.headers)} {r.text}" for r in responses)}
    assert "AMI" in texts["logs"] and "snmp" in texts["logs"].lower() and "rejected" in texts["logs"]
    for name, secret in secrets.items():
        for where, text in texts.items():
            assert secret not in text, f"the {name} secret appears in the {where}"
    for tok in controller.tokens.values():
        assert digest(tok).hex() in tokens_yaml and hashlib.sha256(tok.encode()).hexdigest() not in texts["logs"]
    assert Role.ADMIN  # the roles exist as documented
