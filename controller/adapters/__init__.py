"""Adapters at the controller's edge: HTTP to agents, SNMP to the PDU and the NMS, TCP probes."""
