"""The kernel both ccfo daemons share: the pure domain, config loading, platform helpers, the MIB kit and
the clients of the site's parts.

It imports none of the programs (`controller`, `agents`, `drills`, `lab`); `.importlinter` proves it.
"""
