"""The MIB kit both daemons use: CCFO-MIB's layout, pysnmp wire helpers, SNMPv3 security, notification
sending and decoding, the host view and the wiring from site.yaml.

`view`, `layout`, `decode` and `security` are pure (no pysnmp); `notify` and `wire` hold the pysnmp use.
This package's `__init__` imports nothing, so importing the pure modules never loads pysnmp.
"""
