"""composed-lifts: layer stacks scanned over depth and vmapped over a batch, with the layout you meant.

The public API is exactly what this module exports (``__all__``).
"""

from . import errors as errors
from . import layout as layout
from ._convert_pattern import stack_pattern_params as stack_pattern_params
from ._convert_pattern import unstack_pattern_params as unstack_pattern_params
from ._forward import ForwardProgram as ForwardProgram
from ._forward import composed_lifts_forward as composed_lifts_forward
from ._forward import forward_program as forward_program
from ._keymap import Cast as Cast
from ._keymap import Fused as Fused
from ._keymap import KeyMap as KeyMap
from ._keymap import Reshape as Reshape
from ._keymap import Rule as Rule
from ._keymap import Transpose as Transpose
from ._keymap import from_state_dict as from_state_dict
from ._keymap import iter_state_dict as iter_state_dict
from ._keymap import read_state as read_state
from ._keymap import state_dict_specs as state_dict_specs
from ._keymap import to_state_dict as to_state_dict
from ._keymap import torch_linear_keymap as torch_linear_keymap
from ._mlp_block import MLPBlock as MLPBlock
from ._options import BatchMode as BatchMode
from ._options import LayerInputs as LayerInputs
from ._options import Remat as Remat
from ._options import StackOptions as StackOptions
from ._pattern import LayerPattern as LayerPattern
from ._seed import Block as Block
from ._seed import seed_model as seed_model
from ._sharding import ShardingRules as ShardingRules
from ._sharding import device_mesh as device_mesh
from ._sharding import logical_specs as logical_specs
from ._sharding import param_shardings as param_shardings
from ._sharding import shard_batch as shard_batch
from ._sharding import sharded_init as sharded_init
from ._stack_functional import scan_layers as scan_layers
from ._stack_functional import unroll_layers as unroll_layers
from ._stack_linen import linen_stack as linen_stack
from ._stack_pattern import linen_pattern_stack as linen_pattern_stack
from ._tune import DOT_BACKENDS as DOT_BACKENDS
from ._tune import TuneReport as TuneReport
from ._tune import TuneResult as TuneResult
from ._tune import tune_stack as tune_stack
from .layout import ensemble_to_shared as ensemble_to_shared
from .layout import layer_axis_from as layer_axis_from
from .layout import layer_axis_to as layer_axis_to
from .layout import path_str as path_str
from .layout import shared_to_ensemble as shared_to_ensemble
from .layout import stack_params as stack_params
from .layout import unstack_params as unstack_params

# The NNX half is imported on first use (PEP 562), so that Linen-only users and the
# CLI do not pay for importing flax.nnx.
_LAZY = {
    "NNXPatternStack": "._stack_pattern_nnx",
    "NNXSplitApply": "._stack_nnx",
    "NNXStack": "._stack_nnx",
    "nnx_split_apply": "._stack_nnx",
    "nnx_pattern_stack": "._stack_pattern_nnx",
    "nnx_stack": "._stack_nnx",
    "linen_to_nnx": "._convert_nnx",
    "nnx_to_linen": "._convert_nnx",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'composed_lifts' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)


__version__ = "0.1.0"

__all__ = [
    "BatchMode",
    "Block",
    "Cast",
    "DOT_BACKENDS",
    "ForwardProgram",
    "Fused",
    "KeyMap",
    "LayerInputs",
    "LayerPattern",
    "MLPBlock",
    "NNXPatternStack",
    "NNXSplitApply",
    "NNXStack",
    "Remat",
    "Reshape",
    "Rule",
    "ShardingRules",
    "StackOptions",
    "Transpose",
    "TuneReport",
    "TuneResult",
    "composed_lifts_forward",
    "device_mesh",
    "ensemble_to_shared",
    "errors",
    "forward_program",
    "from_state_dict",
    "iter_state_dict",
    "layer_axis_from",
    "layer_axis_to",
    "layout",
    "linen_pattern_stack",
    "linen_stack",
    "linen_to_nnx",
    "logical_specs",
    "nnx_pattern_stack",
    "nnx_split_apply",
    "nnx_stack",
    "nnx_to_linen",
    "param_shardings",
    "path_str",
    "read_state",
    "scan_layers",
    "seed_model",
    "shard_batch",
    "sharded_init",
    "shared_to_ensemble",
    "stack_params",
    "stack_pattern_params",
    "state_dict_specs",
    "to_state_dict",
    "torch_linear_keymap",
    "tune_stack",
    "unroll_layers",
    "unstack_params",
    "unstack_pattern_params",
]
