"""Records of the simulated telephony host (spans, channels, calls) and the AMI field blocks they render.

Holds plain mutable records and the field layouts copied from the Asterisk 20 transcripts and the
chan_dahdi notes (`shared/reference/ami-dahdi-pri.md`). No event emission, no sockets: `host.py`
decides *when* something happens, this module only says *what it looks like on the wire*.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

STATE_DESC = {0: "Down", 1: "Rsrvd", 2: "OffHook", 3: "Dialing", 4: "Ring", 5: "Ringing", 6: "Up", 7: "Busy"}
CAUSE_TEXT = {
    0: "Unknown", 16: "Normal Clearing", 17: "User busy", 19: "User alerting, no answer",
    34: "Circuit/channel congestion", 38: "Network out of order",
}
UNKNOWN = "<unknown>"

# DAHDI alarm bits (dahdi/user.h) and the one text chan_dahdi's alarm2str() reports for a mask: the
# first set bit in this order wins; a mask with only other bits reads "Unknown Alarm".
ALARM_BITS: dict[str, int] = {
    "recovering": 1 << 0, "loopback": 1 << 1, "yellow": 1 << 2, "red": 1 << 3, "blue": 1 << 4,
    "notopen": 1 << 5,
    # DAHDI E1/T1 drivers raise LOS together with RED (loss of signal is a red condition).
    "los": (1 << 3) | (1 << 8),
}
_TEXT_ORDER = (
    (1 << 3, "Red Alarm"), (1 << 2, "Yellow Alarm"), (1 << 4, "Blue Alarm"), (1 << 0, "Recovering"),
    (1 << 1, "Loopback"), (1 << 5, "Not Open"),
)
NOTOPEN = ALARM_BITS["notopen"]
# DAHDIShowStatus' short flags, all of them listed, in this order.
_SHORT_ORDER = ((1 << 4, "BLU"), (1 << 2, "YEL"), (1 << 3, "RED"), (1 << 1, "LB"), (1 << 0, "REC"),
                (1 << 5, "NOP"))

SIG_PRI = ("ISDN PRI", 128)
SIG_FAX = ("FXS Kewlstart", 8196)


def alarm_text(mask: int) -> str:
    if mask == 0:
        return "No Alarm"
    for bit, text in _TEXT_ORDER:
        if mask & bit:
            return text
    return "Unknown Alarm"


def alarm_short(mask: int, has_channels: bool = True) -> str:
    if mask == 0:
        return "OK" if has_channels else "UNCONFIGURED"
    flags = [text for bit, text in _SHORT_ORDER if mask & bit]
    return "/".join(flags) if flags else "UUU"


@dataclass
class Span:
    """One PRI span: its DAHDI channel numbering, alarm mask and D-channel (layer 2) state."""

    number: int
    bearer: int
    first: int  # DAHDI channel number of timeslot 1
    timeslots: int
    dchannel: int
    alarm: int = 0
    dchannel_up: bool = True
    seq: int = 0  # chan_dahdi's per-span `new_chan_seq`, shown in hex in channel names
    bearer_channels: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bearer_channels = [c for c in range(self.first, self.first + self.timeslots) if c != self.dchannel]

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


def layout_spans(spans: list[tuple[int, int]]) -> list[Span]:
    """Number DAHDI channels sequentially per span as DAHDI's system.conf does.

    An E1 (30 bearers) has 31 timeslots with the D-channel on 16; anything else is T1-like with the
    D-channel on the last timeslot (23 bearers -> D on 24).
    """
    out: list[Span] = []
    base = 0
    for number, bearer in sorted(spans):
        timeslots = 31 if bearer == 30 else bearer + 1
        dchan = base + 16 if bearer == 30 else base + timeslots
        out.append(Span(number, bearer, base + 1, timeslots, dchan))
        base += timeslots
    return out


@dataclass
class LabTrunk:
    """One SIP trunk: its Asterisk endpoint/peer name, channel driver, call limit and reachability."""

    name: str
    driver: str  # "pjsip" (res_pjsip endpoint) or "sip" (chan_sip peer)
    channels: int
    reachable: bool = True
    seq: int = 0  # Asterisk's global channel sequence, shown as 8 hex digits in channel names

    @property
    def tech(self) -> str:
        return "PJSIP" if self.driver == "pjsip" else "SIP"

    @property
    def prefix(self) -> str:
        return f"{self.tech}/{self.name}-"


@dataclass
class Channel:
    """One Asterisk channel, with the snapshot fields every channel event carries."""

    name: str
    uniqueid: str
    linkedid: str
    context: str
    exten: str
    caller_num: str
    caller_name: str = UNKNOWN
    channo: int = 0
    span: int | None = None
    state: int = 0
    priority: int = 1
    connected_num: str = UNKNOWN
    connected_name: str = UNKNOWN
    application: str = ""
    app_data: str = ""
    bridge: str = ""
    dnid: str = ""
    created: float = field(default_factory=time.monotonic)

    @property
    def tech(self) -> str:
        return self.name.split("/", 1)[0]

    def snapshot(self) -> list[tuple[str, str]]:
        return [
            ("Channel", self.name), ("ChannelState", str(self.state)),
            ("ChannelStateDesc", STATE_DESC.get(self.state, "Unknown")),
            ("CallerIDNum", self.caller_num or UNKNOWN), ("CallerIDName", self.caller_name or UNKNOWN),
            ("ConnectedLineNum", self.connected_num or UNKNOWN),
            ("ConnectedLineName", self.connected_name or UNKNOWN),
            ("Language", "en"), ("AccountCode", ""), ("Context", self.context), ("Exten", self.exten),
            ("Priority", str(self.priority)), ("Uniqueid", self.uniqueid), ("Linkedid", self.linkedid),
        ]

    def seconds(self) -> int:
        return int(time.monotonic() - self.created)

    def duration(self) -> str:
        s = self.seconds()
        return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


@dataclass
class Call:
    """A call as the lab drives it: `ivr` (one leg), `agent` (two bridged legs), `fax`, `probe`."""

    call_id: str
    kind: str
    legs: list[Channel]
    bridge: str = ""


def bridge_fields(bridge_id: str, members: int, technology: str = "simple_bridge") -> list[tuple[str, str]]:
    return [
        ("BridgeUniqueid", bridge_id), ("BridgeType", "basic"), ("BridgeTechnology", technology),
        ("BridgeCreator", UNKNOWN), ("BridgeName", UNKNOWN), ("BridgeNumChannels", str(members)),
        ("BridgeVideoSourceMode", "none"),
    ]


def hangup_fields(chan: Channel, cause: int) -> list[tuple[str, str]]:
    return [*chan.snapshot(), ("Cause", str(cause)), ("Cause-txt", CAUSE_TEXT.get(cause, "Unknown"))]


def dahdi_channel_fields(chan: Channel, span: int) -> list[tuple[str, str]]:
    """The `DAHDIChannel` event body: snapshot, then group mask, span and channel number."""
    return [*chan.snapshot(), ("DAHDIGroup", "2"), ("DAHDISpan", str(span)), ("DAHDIChannel", str(chan.channo))]


def coreshowchannel_fields(chan: Channel) -> list[tuple[str, str]]:
    return [
        *chan.snapshot(), ("Application", chan.application), ("ApplicationData", chan.app_data),
        ("Duration", chan.duration()), ("BridgeId", chan.bridge),
    ]


def status_fields(chan: Channel) -> list[tuple[str, str]]:
    """`Status` item fields (fixture d6), for a DAHDI or Local channel on an E1 (A-law) board."""
    return [
        ("Privilege", "Call"), *chan.snapshot(), ("Type", chan.tech), ("DNID", chan.dnid or chan.exten),
        ("EffectiveConnectedLineNum", chan.connected_num or UNKNOWN),
        ("EffectiveConnectedLineName", chan.connected_name or UNKNOWN),
        ("TimeToHangup", "0"), ("BridgeID", chan.bridge), ("Application", chan.application),
        ("Data", chan.app_data), ("Nativeformats", "(alaw)"), ("Readformat", "alaw"), ("Readtrans", ""),
        ("Writeformat", "alaw"), ("Writetrans", ""), ("Callgroup", "0"), ("Pickupgroup", "0"),
        ("Seconds", str(chan.seconds())),
    ]
