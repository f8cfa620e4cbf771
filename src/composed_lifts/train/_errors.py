"""Where the fine-tuning errors are defined (``composed_lifts._errors``); named here for imports."""

from .._errors import NonFiniteLossError, TokenRangeError, TrainStateMismatchError

__all__ = ["NonFiniteLossError", "TokenRangeError", "TrainStateMismatchError"]
