"""The agent's SNMP side: the responder that serves CCFO-MIB, its instrumentation and the change
detector that turns report differences into notifications.

The MIB kit it builds on (layout, wire, security, notify, view) is in the kernel, `ccfo.snmp`, because the
controller uses it too. This package's `__init__` imports nothing, so importing it never loads pysnmp.
"""
