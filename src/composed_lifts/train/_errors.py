"""Where the fine-tuning errors are defined (``composed_lifts.errors``); named here for imports."""

from ..errors import NonFiniteLossError, TokenRangeError, TrainStateMismatchError

__all__ = ["NonFiniteLossError", "TokenRangeError", "TrainStateMismatchError"]
