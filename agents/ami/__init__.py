"""The agent's AMI side: the only package in the project that imports panoramisk.

Public API:
* `AmiMonitor` - live model of one host (spans, board driver, IVR/agent/fax calls, free channels),
  `line_test`, `db_put`, `db_get`; `AmiSnapshot`, `SpanStatus`, `CallCounts`, `DriverState`,
  `LineTestResult` are its frozen read-outs;
* `AmiLink` / `LinkConfig` - one supervised AMI connection (timeouts, Ping watchdog, backoff, no replay);
* `AmiMessage` - an AMI event or response as our own record;
* `AmiError`, `AmiTimeout`, `AmiNotConnected` - what every failure surfaces as.
"""

from .errors import AmiError, AmiNotConnected, AmiTimeout
from .link import AmiLink, LinkConfig
from .message import AmiMessage
from .model import CallCounts, DriverState, HostModel, SpanStatus
from .monitor import AmiMonitor, AmiSnapshot, LineTestResult

__all__ = [
    "AmiError", "AmiLink", "AmiMessage", "AmiMonitor", "AmiNotConnected", "AmiSnapshot", "AmiTimeout",
    "CallCounts", "DriverState", "HostModel", "LineTestResult", "LinkConfig", "SpanStatus",
]
