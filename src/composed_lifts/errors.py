"""The exception classes composed_lifts raises, one per failure mode (public re-export)."""

from ._errors import *  # noqa: F403
from ._errors import __all__ as __all__
