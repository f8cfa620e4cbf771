"""Checkpoints that record their layout, and load into whatever layout the target has.

``save(path, params, stacks=...)`` writes a safetensors file (``*.safetensors``) or an
Orbax checkpoint folder (any other path), recording for every stack its path, number of
layers, form (stacked or unrolled), layer axis, ensemble size, dtypes, the key map and
the library's version. ``load(path, like=target)`` converts whatever is on disk to the
target's layout: scanned into unrolled and back, layer axis 1 into 0, Linen into NNX.
safetensors files are written and read one tensor (one layer) at a time, atomically,
with an xxh3-64 checksum per tensor verified on load.

>>> import numpy as np, tempfile, os
>>> from composed_lifts import unstack_params
>>> from composed_lifts.checkpoint import Stack, load, save
>>> params = {"embed": np.ones((5, 2), np.float32),
...           "stack": {"w": np.arange(24, dtype=np.float32).reshape(4, 3, 2)}}
>>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
>>> save(path, params, stacks=[Stack("stack")])              # stacked, layer axis 0
>>> unrolled = {"embed": params["embed"], "stack": unstack_params(params["stack"])}
>>> got = load(path, like=unrolled)                          # into the unrolled model
>>> bool((got["stack"]["layers_3"]["w"] == params["stack"]["w"][3]).all())
True
>>> load(path, like=params, layer_axis=1)["stack"]["w"].shape  # not (3, 4, 2)
Traceback (most recent call last):
...
composed_lifts.errors.CheckpointMismatchError: param 'stack/w' is 4 layers in the checkpoint but the target needs 3 layers (shape (4, 3, 2))...
"""

from ._format import describe as describe
from ._info import CheckpointInfo as CheckpointInfo
from ._info import TensorInfo as TensorInfo
from ._load import load as load
from ._load import read_layout as read_layout
from ._record import Form as Form
from ._record import KeyMapName as KeyMapName
from ._record import Layout as Layout
from ._record import Stack as Stack
from ._record import StackRecord as StackRecord
from ._save import check_output as check_output
from ._save import save as save

__all__ = [
    "CheckpointInfo",
    "Form",
    "KeyMapName",
    "Layout",
    "Stack",
    "StackRecord",
    "TensorInfo",
    "check_output",
    "describe",
    "load",
    "read_layout",
    "save",
]
