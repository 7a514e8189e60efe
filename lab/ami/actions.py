"""Core AMI action handlers of the lab server (login, lists, AstDB, Originate, Command, ...).

Each handler answers exactly what Asterisk 20.20.1 answered in the recorded transcripts: the same
Response/Message texts, the same field order, ActionID where Asterisk puts it. DAHDI/PRI actions
live in `dahdi_actions.py`, CLI emulation for `Command` in `cli.py`. Handlers mutate state only through
the server's host; they never touch sockets except through the session's `write`.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from . import cli, wire
from .channels import bridge_fields, coreshowchannel_fields, status_fields
from .originate import OriginateRequest, originate_finish, originate_start

if TYPE_CHECKING:
    from .session import AmiSession

Headers = Sequence[tuple[str, str]]
Handler = Callable[["AmiSession", Headers, str], Awaitable[None]]
TRUE = {"yes", "true", "y", "t", "1", "on"}


async def login(s: AmiSession, h: Headers, aid: str) -> None:
    server = s.server
    if s.authenticated:
        s.write(wire.response("Success", "Already authenticated", aid))
        return
    user, secret = wire.header(h, "Username"), wire.header(h, "Secret")
    if user != server.username or not hmac.compare_digest(secret.encode(), server.secret.encode()):
        await server.sleep(server.login_fail_delay_s)
        s.write(wire.error("Authentication failed", aid))
        s.close()
        return
    s.authenticated, s.username = True, user
    events = wire.header(h, "Events")
    s.mask = wire.parse_event_mask(events) if events else wire.ALL_EVENTS
    s.write(wire.response("Success", "Authentication accepted", aid))
    if s.mask & wire.EVENT_CLASSES["system"]:
        up = str(server.uptime_s())
        s.write(wire.render_event("FullyBooted", "system",
                                  [("Uptime", up), ("LastReload", up), ("Status", "Fully Booted")]))
    now = wire.event_tv()
    server.broadcast("SuccessfulAuth", "security", [
        ("EventTV", now), ("Severity", "Informational"), ("Service", "AMI"), ("EventVersion", "1"),
        ("AccountID", user), ("SessionID", s.session_id), ("LocalAddress", s.local),
        ("RemoteAddress", s.remote), ("UsingPassword", "0"), ("SessionTV", now),
    ])


async def logoff(s: AmiSession, h: Headers, aid: str) -> None:
    s.write(wire.response("Goodbye", "Thanks for all the fish.", aid))
    s.close()


async def ping(s: AmiSession, h: Headers, aid: str) -> None:
    s.write(wire.response("Success", None, aid, ("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}")))


async def events(s: AmiSession, h: Headers, aid: str) -> None:
    s.mask = wire.parse_event_mask(wire.header(h, "EventMask"))
    s.write(wire.response("Success", None, aid, ("Events", "On" if s.mask else "Off")))


async def core_show_channels(s: AmiSession, h: Headers, aid: str) -> None:
    chans = list(s.server.host.channels.values())
    out = [wire.list_start("Channels will follow", aid)]
    out += [wire.list_item("CoreShowChannel", coreshowchannel_fields(c), aid) for c in chans]
    out.append(wire.list_complete("CoreShowChannelsComplete", len(chans), aid))
    s.write(b"".join(out))


async def status(s: AmiSession, h: Headers, aid: str) -> None:
    chans = list(s.server.host.channels.values())
    wanted = wire.header(h, "Channel")
    if wanted:
        chans = [c for c in chans if c.name == wanted]
        if not chans:
            s.write(wire.error("No such channel", aid))
            return
    out = [wire.list_start("Channel status will follow", aid)]
    out += [wire.list_item("Status", status_fields(c), aid, id_last=True) for c in chans]
    out.append(wire.list_complete("StatusComplete", len(chans), aid, legacy_items=True))
    s.write(b"".join(out))


async def bridge_list(s: AmiSession, h: Headers, aid: str) -> None:
    bridges: dict[str, int] = {}
    for chan in s.server.host.channels.values():
        if chan.bridge:
            bridges[chan.bridge] = bridges.get(chan.bridge, 0) + 1
    out = [wire.list_start("Bridge listing will follow", aid)]
    out += [wire.list_item("BridgeListItem", bridge_fields(b, n, "native_rtp"), aid) for b, n in bridges.items()]
    out.append(wire.list_complete("BridgeListComplete", len(bridges), aid))
    s.write(b"".join(out))


async def core_status(s: AmiSession, h: Headers, aid: str) -> None:
    started = time.localtime(s.server.started_at)
    day, clock = time.strftime("%Y-%m-%d", started), time.strftime("%H:%M:%S", started)
    host = s.server.host
    s.write(wire.response(
        "Success", None, aid, ("CoreStartupDate", day), ("CoreStartupTime", clock), ("CoreReloadDate", day),
        ("CoreReloadTime", clock), ("CoreCurrentCalls", str(len(host.calls))),
        ("CoreProcessedCalls", str(host.processed_calls))))


async def core_settings(s: AmiSession, h: Headers, aid: str) -> None:
    s.write(wire.response(
        "Success", None, aid, ("AMIversion", wire.AMI_VERSION), ("AsteriskVersion", wire.ASTERISK_VERSION),
        ("SystemName", ""), ("CoreMaxCalls", "0"), ("CoreMaxLoadAvg", "0.000000"), ("CoreRunUser", ""),
        ("CoreRunGroup", ""), ("CoreMaxFilehandles", "0"), ("CoreRealTimeEnabled", "No"),
        ("CoreCDRenabled", "Yes"), ("CoreHTTPenabled", "No"), ("SoundsSearchCustomDir", "No")))


def _module_name(h: Headers) -> str:
    name = wire.header(h, "Module")
    return name[:-3] if name.endswith(".so") else name


async def module_check(s: AmiSession, h: Headers, aid: str) -> None:
    if _module_name(h) in s.server.loaded_modules():
        s.write(wire.response("Success", None, aid, ("Version", "")))
    else:
        s.write(wire.error("Module not loaded", aid))


async def module_load(s: AmiSession, h: Headers, aid: str) -> None:
    name, kind = _module_name(h), wire.header(h, "LoadType").lower()
    server = s.server
    if kind not in ("load", "unload", "reload"):
        s.write(wire.error("Invalid loadtype specified", aid))
        return
    if kind == "unload" and name in server.loaded_modules():
        if name == "chan_dahdi" and any(c.tech == "DAHDI" for c in server.host.channels.values()):
            s.write(wire.error("Could not unload module.", aid))
            return
        server.set_module(name, False)
        s.write(wire.response("Success", "Module unloaded.", aid))
        server.broadcast("Unload", "system", [("Module", f"{name}.so"), ("Status", "Success")])
    elif kind == "load" and name not in server.loaded_modules():
        server.set_module(name, True)
        s.write(wire.response("Success", "Module loaded.", aid))
        server.broadcast("Load", "system", [("Module", f"{name}.so"), ("Status", "Success")])
    elif kind == "reload" and name in server.loaded_modules():
        s.write(wire.response("Success", "Module reloaded.", aid))
    else:
        s.write(wire.error(f"Could not {kind} module.", aid))


async def originate(s: AmiSession, h: Headers, aid: str) -> None:
    channel = wire.header(h, "Channel")
    if not channel:
        s.write(wire.error("Channel not specified", aid))
        return
    try:
        timeout_ms = int(wire.header(h, "Timeout") or 30000)
    except ValueError:
        s.write(wire.error("Invalid timeout", aid))
        return
    req = OriginateRequest(channel, wire.header(h, "Application"), wire.header(h, "Data"),
                           wire.header(h, "Context"), wire.header(h, "Exten"), wire.header(h, "CallerID"),
                           max(0, timeout_ms), aid)
    server = s.server
    if wire.header(h, "Async").lower() in TRUE:
        s.write(wire.response("Success", "Originate successfully queued", aid))
        server.spawn(_run_originate(s, req, emit_response=True))
        return
    if await _run_originate(s, req, emit_response=False):
        s.write(wire.response("Success", "Originate successfully queued", aid))
    else:
        s.write(wire.error("Originate failed", aid))


async def _run_originate(s: AmiSession, req: OriginateRequest, *, emit_response: bool) -> bool:
    host = s.server.host
    attempt = originate_start(host, req)
    if attempt.outcome == "noanswer":
        await s.server.sleep(req.timeout_ms / 1000.0)
    return originate_finish(host, attempt, emit_response=emit_response)


# ----------------------------------------------------------------- AstDB (texts from fixture f)
def _family_key(s: AmiSession, h: Headers, aid: str) -> tuple[str, str] | None:
    family, key = wire.header(h, "Family"), wire.header(h, "Key")
    if not family:
        s.write(wire.error("No family specified.", aid))
        return None
    if not key:
        s.write(wire.error("No key specified.", aid))
        return None
    return family, key


async def db_put(s: AmiSession, h: Headers, aid: str) -> None:
    fk = _family_key(s, h, aid)
    if fk:
        s.server.host.astdb[fk] = wire.header(h, "Val")
        s.write(wire.response("Success", "Updated database successfully", aid))


async def db_get(s: AmiSession, h: Headers, aid: str) -> None:
    fk = _family_key(s, h, aid)
    if not fk:
        return
    if fk not in s.server.host.astdb:
        s.write(wire.error("Database entry not found", aid))
        return
    item = [("Family", fk[0]), ("Key", fk[1]), ("Val", s.server.host.astdb[fk])]
    s.write(wire.list_start("Result will follow", aid) + wire.list_item("DBGetResponse", item, aid, id_last=True)
            + wire.list_complete("DBGetComplete", 1, aid))


async def db_del(s: AmiSession, h: Headers, aid: str) -> None:
    fk = _family_key(s, h, aid)
    if not fk:
        return
    if s.server.host.astdb.pop(fk, None) is None:
        s.write(wire.error("Database entry could not be deleted", aid))
    else:
        s.write(wire.response("Success", "Key deleted successfully", aid))


def _tree(s: AmiSession, h: Headers) -> list[tuple[str, str]]:
    family, key = wire.header(h, "Family"), wire.header(h, "Key")
    return [(f, k) for f, k in s.server.host.astdb
            if (not family or f == family) and (not key or k == key or k.startswith(key + "/"))]


async def db_get_tree(s: AmiSession, h: Headers, aid: str) -> None:
    entries = _tree(s, h)
    if not entries:
        s.write(wire.error("Database entry not found", aid))
        return
    db = s.server.host.astdb
    out = [wire.list_start("Result will follow", aid)]
    out += [wire.list_item("DBGetTreeResponse", [("Key", f"/{f}/{k}"), ("Val", db[(f, k)])], aid, id_last=True)
            for f, k in entries]
    out.append(wire.list_complete("DBGetTreeComplete", len(entries), aid))
    s.write(b"".join(out))


async def db_del_tree(s: AmiSession, h: Headers, aid: str) -> None:
    if not wire.header(h, "Family"):
        s.write(wire.error("No family specified.", aid))
        return
    entries = _tree(s, h)
    for fk in entries:
        del s.server.host.astdb[fk]
    if entries:
        s.write(wire.response("Success", "Key tree deleted successfully", aid))
    else:
        s.write(wire.error("Database entry not found", aid))


async def command(s: AmiSession, h: Headers, aid: str) -> None:
    text = " ".join(wire.header(h, "Command").split())
    stop = cli.shutdown_request(text)
    if stop is not None:
        # The commanding session gets no Response at all, only EOF (fixtures i2, i4).
        await s.server.shutdown(restart=stop, exclude=s)
        return
    ok, lines = cli.run(s.server, text)
    s.write(wire.response("Success" if ok else "Error", "Command output follows", aid,
                          *(("Output", line) for line in lines)))


async def list_commands(s: AmiSession, h: Headers, aid: str) -> None:
    entries = sorted(s.server.action_descriptions().items(), key=lambda kv: kv[0].lower())
    s.write(wire.response("Success", None, aid, *((name, f"{desc}  (Priv: {priv})") for name, (desc, priv) in entries)))


CORE_ACTIONS: dict[str, tuple[Handler, str, str]] = {
    "Login": (login, "Login Manager.", "<none>"),
    "Logoff": (logoff, "Logoff Manager.", "<none>"),
    "Ping": (ping, "Keepalive command.", "<none>"),
    "Events": (events, "Control Event Flow.", "<none>"),
    "CoreShowChannels": (core_show_channels, "List currently active channels.", "system,reporting,all"),
    "Status": (status, "List channel status.", "system,call,reporting,all"),
    "BridgeList": (bridge_list, "Get a list of bridges in the system.", "<none>"),
    "CoreStatus": (core_status, "Show PBX core status variables.", "system,reporting,all"),
    "CoreSettings": (core_settings, "Show PBX core settings (version etc).", "system,reporting,all"),
    "ModuleCheck": (module_check, "Check if module is loaded.", "system,all"),
    "ModuleLoad": (module_load, "Module management.", "system,all"),
    "Originate": (originate, "Originate a call.", "originate,all"),
    "DBPut": (db_put, "Put DB entry.", "system,all"),
    "DBGet": (db_get, "Get DB Entry.", "system,reporting,all"),
    "DBDel": (db_del, "Delete DB entry.", "system,all"),
    "DBGetTree": (db_get_tree, "Get DB entries, optionally at a particular family/key", "system,reporting,all"),
    "DBDelTree": (db_del_tree, "Delete DB Tree.", "system,all"),
    "Command": (command, "Execute Asterisk CLI Command.", "command,all"),
    "ListCommands": (list_commands, "List available manager commands.", "<none>"),
}
