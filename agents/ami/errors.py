"""Our exceptions for the AMI side of the agent; library and wire failures are raised `from` these.

Callers catch `AmiError` for any AMI failure, or the two subclasses when the reaction differs: a
timeout (Asterisk hung, or an answer never came) versus no usable connection at all.
"""

from __future__ import annotations

from collections.abc import Mapping


class AmiError(Exception):
    """Asterisk answered `Response: Error`, or the AMI link failed. `response` holds the answer's headers."""

    def __init__(self, message: str, response: Mapping[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.response = response


class AmiTimeout(AmiError):
    """No answer within the deadline (connect, login, an action, or our own Ping)."""


class AmiNotConnected(AmiError):
    """There is no logged-in AMI connection, or it was lost while the action was pending."""


class AmiUnresponsive(AmiTimeout):
    """Asterisk holds the connection (TCP is up) but answers nothing: our Ping or the Login went unanswered.
    A hung Asterisk, told apart from one that refuses or closes connections (`ami=hung` vs `ami=lost`)."""
