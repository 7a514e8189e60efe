"""SIP trunk reachability from AMI list answers: res_pjsip endpoints and chan_sip peers, and the trunk table.

A host's telephony may be SIP trunks (a channel limit each) instead of or beside DAHDI spans. Their
channels count toward C while Asterisk sees the trunk reachable:

* res_pjsip: `PJSIPShowEndpoints` answers one `EndpointList` event per endpoint (ObjectType `endpoint`,
  ObjectName, DeviceState, ActiveChannels, ...) and `EndpointListComplete`; with no endpoint at all it
  answers `Response: Error` / `No endpoints found`. DeviceState `Unavailable` means no contact of the
  endpoint is reachable (qualify failed or nothing registered): down; `Invalid` / `Unknown` say nothing
  usable; every other state (`Not in use`, `In use`, `Busy`, `Ringing`, `On Hold`...) is up.
* chan_sip: `SIPpeers` answers one `PeerEntry` event per peer (ObjectName, Status, ...) and
  `PeerlistComplete` (fixture d7). Status is `OK (N ms)` (qualify answered), `LAGGED (N ms)` (answered
  late: still carries calls), `UNREACHABLE`, `UNKNOWN` (qualify sent, no answer yet) or `Unmonitored`
  (qualify=no: Asterisk does not probe it and will try it: counted as up, and said so).

* `DeviceStateList` (res_manager_devicestate, write class call or reporting) is the fallback for res_pjsip
  trunks when `PJSIPShowEndpoints` (write class system, which the shipped `ccfo` AMI user does not have)
  answers `Permission denied`: one `DeviceStateChange` event per cached device (Device `PJSIP/NAME`,
  State `NOT_INUSE`, `INUSE`, `UNAVAILABLE`, ...), then `DeviceStateListComplete`. The same event arrives
  unsolicited (class call) when a device changes, and updates the trunk at once.

A configured trunk missing from a list answer is down ("not configured in Asterisk"), or unknown when
the answer was DeviceStateList (it lists only devices with a cached state); a missing module
(`Invalid/unknown command`) makes all trunks of that driver down; a refused list (`Permission denied`)
leaves them unknown and says which AMI write class is missing. Malformed items (no ObjectName, a
status we do not know) are logged with their raw text and skipped or read as unknown, never a crash.
Pure state: no I/O; the monitor feeds it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ccfo.domain.site import SipDriver, SipTrunk

from .message import AmiMessage

log = logging.getLogger(__name__)

UP, DOWN, UNKNOWN = "up", "down", "unknown"
LIST_ACTION = {SipDriver.PJSIP: "PJSIPShowEndpoints", SipDriver.SIP: "SIPpeers"}
_ITEM_EVENT = {SipDriver.PJSIP: "EndpointList", SipDriver.SIP: "PeerEntry"}
_MODULE = {SipDriver.PJSIP: "res_pjsip", SipDriver.SIP: "chan_sip"}
_PEER_STATUS = re.compile(r"^(OK|LAGGED|UNREACHABLE|UNKNOWN|UNMONITORED)\b\s*(?:\((\d+) ms\))?", re.IGNORECASE)
_DEVICE_DOWN = {"unavailable"}
_DEVICE_UNKNOWN = {"invalid", "unknown", ""}
DEVICE_LIST = "DeviceStateList"
_NEEDS = {SipDriver.PJSIP: "system", SipDriver.SIP: "system or reporting"}


@dataclass(frozen=True, slots=True)
class TrunkStatus:
    """One trunk now: `state` up, down or unknown, with Asterisk's own words in `detail`."""

    name: str
    driver: str
    channels: int
    state: str
    detail: str

    @property
    def up(self) -> bool:
        return self.state == UP


def peer_state(status: str) -> tuple[str, str]:
    """A chan_sip peer `Status` (PeerEntry, SIPshowpeer) as (state, detail)."""
    match = _PEER_STATUS.match(status.strip())
    if match is None:
        return UNKNOWN, f"unrecognised peer status {status!r}"
    word = match[1].upper()
    if word in ("OK", "LAGGED"):
        return UP, status.strip()
    if word == "UNREACHABLE":
        return DOWN, "UNREACHABLE (qualify not answered)"
    if word == "UNMONITORED":
        return UP, "Unmonitored (qualify=no: reachability not probed)"
    return UNKNOWN, "UNKNOWN (qualify sent, no answer yet)"


def endpoint_state(device_state: str) -> tuple[str, str]:
    """A res_pjsip endpoint's `DeviceState` (EndpointList) as (state, detail)."""
    text = device_state.strip()
    low = text.lower()
    if low in _DEVICE_DOWN:
        return DOWN, f"DeviceState {text} (no reachable contact)"
    if low in _DEVICE_UNKNOWN:
        return UNKNOWN, f"DeviceState {text or '(empty)'}"
    return UP, f"DeviceState {text}"


def device_state(code: str) -> tuple[str, str]:
    """A `DeviceStateChange` State (ast_devstate_str: NOT_INUSE, INUSE, UNAVAILABLE, ...) as (state, detail)."""
    low = code.strip().lower().replace("_", " ")
    state = DOWN if low in _DEVICE_DOWN else UNKNOWN if low in _DEVICE_UNKNOWN else UP
    return state, f"device state {code.strip() or '(empty)'}"


def parse_list(driver: SipDriver, items: Iterable[AmiMessage]) -> dict[str, tuple[str, str]]:
    """The (state, detail) of every endpoint or peer in a list answer, by name; malformed items skipped."""
    out: dict[str, tuple[str, str]] = {}
    for item in items:
        if item.get("event") != _ITEM_EVENT[driver]:
            continue
        name = item.get("objectname").strip()
        if not name:
            log.warning("AMI %s item without ObjectName; skipped: %r", item.get("event"), dict(item.headers))
            continue
        if driver is SipDriver.PJSIP:
            if item.get("objecttype", "endpoint") not in ("endpoint", ""):
                continue
            state = endpoint_state(item.get("devicestate"))
        else:
            state = peer_state(item.get("status"))
        if state[0] == UNKNOWN and "unrecognised" in state[1]:
            log.warning("AMI %s %s: %s; read as unknown: %r", item.get("event"), name, state[1], dict(item.headers))
        out[name] = state
    return out


class TrunkTable:
    """The configured trunks and what AMI last said about each (unknown until listed)."""

    def __init__(self, trunks: Iterable[SipTrunk] = ()) -> None:
        self.trunks = tuple(trunks)
        self._state: dict[str, tuple[str, str]] = {t.name: (UNKNOWN, "not listed yet") for t in self.trunks}
        self._listed: set[SipDriver] = set()

    @property
    def drivers(self) -> tuple[SipDriver, ...]:
        """The drivers whose list action must be polled, in a fixed order."""
        return tuple(d for d in SipDriver if any(t.driver is d for t in self.trunks))

    @property
    def known(self) -> bool:
        """Every driver in use has answered its list since the last (re)connect: the states are data."""
        return set(self.drivers) <= self._listed

    def channel_pattern(self) -> str | None:
        """A regular expression matching the trunks' channel names (`PJSIP/NAME-...`), None without trunks."""
        if not self.trunks:
            return None
        return "^(?:" + "|".join(re.escape(t.channel_prefix) for t in self.trunks) + ")"

    def reconcile(self, driver: SipDriver, items: Iterable[AmiMessage]) -> None:
        """A complete list answer: every configured trunk of `driver` takes its listed state, or down."""
        seen = parse_list(driver, items)
        for trunk in self.trunks:
            if trunk.driver is driver:
                self._state[trunk.name] = seen.get(trunk.name, (DOWN, f"not configured in Asterisk ({driver.value})"))
        self._listed.add(driver)

    def reconcile_devices(self, items: Iterable[AmiMessage]) -> None:
        """A complete DeviceStateList answer: the res_pjsip trunks take their device's state (unknown when
        Asterisk has no cached state for it)."""
        states = {item.get("device"): item.get("state") for item in items if item.get("event") == "DeviceStateChange"}
        for trunk in self.trunks:
            if trunk.driver is SipDriver.PJSIP:
                code = states.get(f"PJSIP/{trunk.name}")
                self._state[trunk.name] = device_state(code) if code is not None else (
                    UNKNOWN, f"no device state for PJSIP/{trunk.name}")
        self._listed.add(SipDriver.PJSIP)

    def apply_device_event(self, msg: AmiMessage) -> bool:
        """An unsolicited DeviceStateChange for a res_pjsip trunk: its new state; True when it changed."""
        device = msg.get("device")
        if not device.startswith("PJSIP/"):
            return False
        trunk = next((t for t in self.trunks if t.driver is SipDriver.PJSIP and f"PJSIP/{t.name}" == device), None)
        if trunk is None:
            return False
        new = device_state(msg.get("state"))
        if self._state[trunk.name][0] == new[0]:
            return False
        self._state[trunk.name] = new
        return True

    def refused(self, driver: SipDriver, action: str, message: str, needs: str | None = None) -> None:
        """The list action was refused (the AMI user lacks its write class): the trunks stay unknown."""
        for trunk in self.trunks:
            if trunk.driver is driver:
                self._state[trunk.name] = (UNKNOWN, f"{action} refused ({message.strip()}): the AMI user needs "
                                                    f"write class {needs or _NEEDS[driver]}")

    def module_missing(self, driver: SipDriver, message: str) -> None:
        """The list action is unknown: the channel driver is not loaded, its trunks carry no call."""
        for trunk in self.trunks:
            if trunk.driver is driver:
                self._state[trunk.name] = (DOWN, f"{_MODULE[driver]} not loaded ({message.strip()})")
        self._listed.add(driver)

    def forget(self, why: str) -> None:
        """AMI (re)connected or lost: nothing is known until the next list answers."""
        self._listed.clear()
        for name in self._state:
            self._state[name] = (UNKNOWN, why)

    def status(self) -> tuple[TrunkStatus, ...]:
        return tuple(TrunkStatus(t.name, t.driver.value, t.channels, *self._state[t.name]) for t in self.trunks)
