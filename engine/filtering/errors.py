"""What a refused pattern raises: AWS's one error text (spec 2.6) and, for logs, the reason behind it."""

from __future__ import annotations

from typing import Final

#: The only message AWS returns for any pattern problem (spec 2.6).
MESSAGE: Final = "Invalid filter pattern definition."


class FilterPatternError(ValueError):
    """A pattern AWS would refuse. ``str()`` is always AWS's text; ``reason`` says why, for logs."""

    def __init__(self, reason: str) -> None:
        super().__init__(MESSAGE)
        self.reason = reason
