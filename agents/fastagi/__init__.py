"""FastAGI admission: the dialplan asks before a transfer (or a new IVR call) whether a channel is free.

`AdmissionServer` is the asyncio server; `protocol` holds the pure wire helpers. Imports no AMI or SNMP
library; the capacity math is `ccfo.domain.capacity.admit`.
"""

from agents.fastagi.server import AdmissionServer, AdmissionStats, CapacityUnknown, LiveCapacity

__all__ = ["AdmissionServer", "AdmissionStats", "CapacityUnknown", "LiveCapacity"]
