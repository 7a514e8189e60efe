"""Checklists: runbooks as data (the weekend upgrade, the data-center migration) with a timing journal.

Pure: model.py (checklists and run records), specs.py (what automatic steps do), machine.py (the run-state
machine: fold events, readiness and blocking, next commands, operator requests), schedule.py (planned vs
real, critical path, projection), checks.py (check evaluation, the checklist's own plans), views.py and
report.py (status JSON; md/html/json reports). Edges: loader.py (YAML with file:line errors), store.py
(the journal is the store), ports.py and drills_port.py (engine, drills, SIPp calls), runner.py (carries
runs out), cli.py (`ccfo checklist`). The API is controller/api/routes/checklists.py; docs/checklists.md.
"""
