"""Clients of the site's parts (the agents' HTTP API, the SNMP power switch): the controller, the drills
and the lab use them; they implement the interfaces of `ccfo.ports`."""
