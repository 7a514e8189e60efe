"""Lab AMI server: a simulated Asterisk 20 host (DAHDI spans, board driver, fax, calls) speaking real AMI.

For tests, the lab and benchmarks only; production talks to a real Asterisk. Public API:
`LabAmiServer` (the server and its Python control surface), `ControlServer` (its HTTP twin),
`LabError` / `NoCapacity` / `UnknownCall` (control errors).
"""

from .control import ControlServer
from .host import LabError, NoCapacity, UnknownCall
from .server import DEFAULT_MODULES, LabAmiServer

__all__ = ["DEFAULT_MODULES", "ControlServer", "LabAmiServer", "LabError", "NoCapacity", "UnknownCall"]
