"""The few Asterisk CLI commands the lab answers through `Action: Command`.

Output shapes come from fixtures d2, d6 and g2 (column widths included). Unknown commands get the
real "No such command" error; `core stop now` / `core restart now` are recognised here and carried out
by the server (the commanding session then sees only EOF). No state is changed in this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .channels import STATE_DESC, alarm_short, alarm_text

if TYPE_CHECKING:
    from .server import LabAmiServer

BUILT = "2026-11-23 09:39:06 UTC"
_STOP = {"core stop now": False, "core stop gracefully": False, "core stop when convenient": False,
         "core restart now": True, "core restart gracefully": True, "core restart when convenient": True}


def shutdown_request(text: str) -> bool | None:
    """None if `text` is not a stop/restart command, else whether it asks for a restart."""
    return _STOP.get(text.lower())


def run(server: LabAmiServer, text: str) -> tuple[bool, list[str]]:
    """(success, output lines) for one CLI command line."""
    words = text.lower().split()
    host = server.host
    handlers = {
        "core show version": lambda: [f"Asterisk 20.20.1 built by ccfo-lab @ lab on a x86_64 running Linux on {BUILT}"],
        "core show uptime": lambda: [f"System uptime: {server.uptime_s()} seconds",
                                     f"Last reload: {server.uptime_s()} seconds"],
        "core show channels": lambda: _channels(server),
        "core show channels concise": lambda: _concise(server),
    }
    if host.chan_dahdi_loaded:
        handlers["dahdi show channels"] = lambda: _dahdi_channels(server)
        handlers["pri show spans"] = lambda: _pri_spans(server)
    if "chan_sip" in server.loaded_modules():
        handlers["sip show peers"] = lambda: [
            f"{'Name/username':<25} {'Host':<39} {'Dyn':<3} {'Forcerport':<10} {'Comedia':<10} {'ACL':<3} "
            f"{'Port':<8} {'Status':<11} {'Description':<32} ",
            "0 sip peers [Monitored: 0 online, 0 offline Unmonitored: 0 online, 0 offline]"]
    key = " ".join(words)
    if key == "dahdi show status" and host.chan_dahdi_loaded:
        return _dahdi_status(server)
    if key in handlers:
        return True, handlers[key]()
    hint = " ".join(text.split()[:2])
    return False, [f"No such command '{text}' (type 'core show help {hint}' for other possible commands)"]


def _channels(server: LabAmiServer) -> list[str]:
    host = server.host
    lines = [f"{'Channel':<64} {'Location':<32} {'State':<7} {'Application(Data)':<30}"]
    for c in host.channels.values():
        loc = f"{c.exten}@{c.context}:{c.priority}"
        app = f"{c.application}({c.app_data})"
        lines.append(f"{c.name:<64.64} {loc:<32.32} {STATE_DESC.get(c.state, 'Unknown'):<7.7} {app:<30.30}")
    lines += [f"{len(host.channels)} active channels", f"{len(host.calls)} active calls",
              f"{host.processed_calls} calls processed"]
    return lines


def _concise(server: LabAmiServer) -> list[str]:
    return [
        "!".join((c.name, c.context, c.exten, str(c.priority), STATE_DESC.get(c.state, "Unknown"), c.application,
                  c.app_data, c.caller_num, "", "", "3", str(c.seconds()), c.bridge, c.uniqueid))
        for c in server.host.channels.values()
    ]


def _dahdi_channels(server: LabAmiServer) -> list[str]:
    host = server.host
    fmt = "{:>7} {:>4} {:<20.20} {:<10.10} {:<15.15} {:<8.8} {:<20.20} {:<10.10} {:<10.10} {:<12.12} {:<32.32}"
    lines = [fmt.format("Chan", "Span", "Signalling", "Extension", "Context", "Language", "MOH Interpret",
                        "Blocked", "In Service", "Alarms", "Description")]
    for span in host.spans.values():
        for channo in span.bearer_channels:
            lines.append(fmt.format(channo, span.number, "ISDN PRI", "", "from-trunk", "", "default", "",
                                    "Yes", alarm_text(host.channel_alarm(channo)), ""))
    for channo in host.fax_channels:
        lines.append(fmt.format(channo, host.fax_span, "FXS Kewlstart", "", "fax-in", "", "default", "",
                                "Yes" if host.driver_running else "No",
                                alarm_text(host.channel_alarm(channo)), ""))
    return lines


def _pri_spans(server: LabAmiServer) -> list[str]:
    host = server.host
    if not host.driver_running or not host.spans:
        return [""]
    return [
        f"PRI span {s.number}/0: {'In Alarm, ' if s.alarm else ''}"
        f"{'Up' if s.alarm == 0 and s.dchannel_up else 'Down'}, Active"
        for s in host.spans.values()
    ]


def _dahdi_status(server: LabAmiServer) -> tuple[bool, list[str]]:
    host = server.host
    if not host.driver_running:
        return False, ["No DAHDI found. Unable to open /dev/dahdi/ctl: No such file or directory",
                       "Command 'dahdi show status' failed."]
    lines = [f"{'Description':<40} {'Alarms':<10} {'IRQ':<4} {'bpviol':<7} {'CRC':<7} {'Framing':<8} "
             f"{'Coding':<8} {'Options':<8} {'LBO':<10}"]
    for s in host.spans.values():
        lines.append(f"{'T4XXP (PCI) Card 0 Span ' + str(s.number):<40} {alarm_short(s.alarm):<10} {0:<4} "
                     f"{0:<7} {0:<7} {'CCS':<8} {'HDB3':<8} {'CRC4':<8} 0 db (CSU)/0-133 feet (DSX-1)")
    return True, lines
