"""composed-lifts: layer stacks scanned over depth and vmapped over a batch, with the layout you meant.

The public API is exactly what this module exports (``__all__``).
"""

from . import errors as errors
from ._forward import composed_lifts_forward as composed_lifts_forward
from ._options import BatchMode as BatchMode
from ._options import LayerInputs as LayerInputs
from ._options import Remat as Remat
from ._options import StackOptions as StackOptions
from ._seed import Block as Block
from ._seed import seed_model as seed_model
from ._stack_linen import linen_stack as linen_stack

__version__ = "0.1.0"

__all__ = [
    "BatchMode",
    "Block",
    "LayerInputs",
    "Remat",
    "StackOptions",
    "composed_lifts_forward",
    "errors",
    "linen_stack",
    "seed_model",
]
