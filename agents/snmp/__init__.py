"""SNMP for ccfo: CCFO-MIB's layout, the agent's responder and notification sending.

`view`, `layout`, `changes`, `decode` and `security` are pure (no pysnmp) and safe for the controller to
import; `responder`, `instrum`, `notify` and `wire` hold all of the agent side's pysnmp use. This
package's `__init__` imports nothing, so importing the pure modules never loads pysnmp.
"""
