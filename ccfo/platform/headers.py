"""HTTP headers the controller and the agents agree on, defined once so the two sides cannot drift.

* `TERM_HEADER`: on an agent's 409 for a stale leader term, the highest term that agent has seen
  (agents/terms.py); the controller journals it (ccfo/clients/agent_http.py).
* `ACTING_HEADER`: on the controller's answer to a report push, `yes` when this controller is the acting
  leader, `no` on a follower. Self-fencing counts only the acting leader's answer as contact
  (agents/reporter.py); an answer without it comes from a controller alone, which always acts.
"""

TERM_HEADER = "X-Ccfo-Highest-Term"
ACTING_HEADER = "X-Ccfo-Acting"
