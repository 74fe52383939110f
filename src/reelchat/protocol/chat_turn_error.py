"""`TurnError`: a conversation that cannot be read as a video request.

Its own module because every reader of a turn raises it (the JSON block, the references, the
turn itself) and `chat_turn` imports those readers.
"""

from __future__ import annotations

__all__ = ["TurnError"]


class TurnError(ValueError):
    """The conversation cannot be read as a video request. `param` names the offending field."""

    def __init__(self, message: str, param: str = "messages") -> None:
        super().__init__(message)
        self.param = param
