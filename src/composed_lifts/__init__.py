"""composed-lifts: layer stacks scanned over depth and vmapped over a batch, with the layout you meant.

The public API is exactly what this module exports (``__all__``).
"""

from . import errors as errors
from ._convert import linen_to_nnx as linen_to_nnx
from ._convert import nnx_to_linen as nnx_to_linen
from ._convert import stack_params as stack_params
from ._convert import unstack_params as unstack_params
from ._forward import composed_lifts_forward as composed_lifts_forward
from ._options import BatchMode as BatchMode
from ._options import LayerInputs as LayerInputs
from ._options import Remat as Remat
from ._options import StackOptions as StackOptions
from ._seed import Block as Block
from ._seed import seed_model as seed_model
from ._stack_functional import scan_layers as scan_layers
from ._stack_functional import unroll_layers as unroll_layers
from ._stack_linen import linen_stack as linen_stack
from ._stack_nnx import NNXStack as NNXStack
from ._stack_nnx import nnx_split_apply as nnx_split_apply
from ._stack_nnx import nnx_stack as nnx_stack

__version__ = "0.1.0"

__all__ = [
    "BatchMode",
    "NNXStack",
    "Block",
    "LayerInputs",
    "Remat",
    "StackOptions",
    "composed_lifts_forward",
    "errors",
    "linen_stack",
    "linen_to_nnx",
    "nnx_split_apply",
    "nnx_stack",
    "nnx_to_linen",
    "scan_layers",
    "seed_model",
    "stack_params",
    "unroll_layers",
    "unstack_params",
]
