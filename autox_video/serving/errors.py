"""The one error a request can cause: bad input, answered 400 with its one-line message."""

from __future__ import annotations

from autox_video.errors import AutoXError


class BadInput(AutoXError):
    """A request the server cannot answer (names the input or parameter and what to do); `reason` labels metrics."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # one word for the errors counter: not_a_video, too_large, ...


class PredictorError(AutoXError):
    """The predictor a transformer forwards to failed: 503 when unreachable, 502 when it answered an error."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
        self.reason = "predictor_unreachable" if status == 503 else "predictor_error"
