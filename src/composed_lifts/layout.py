"""The stack layout: where a stack of layers sits in a params tree, in which form, on which axis.

One value, :class:`Stack` (its ``path``, ``num_layers``, :class:`Form`, ``layer_axis`` and
``ensemble_size``), and the only functions that read or change those facts: sharding
rules, checkpoints, key maps, the models and the doctor all take it.

- names: :func:`layer_name` / :func:`layer_index` (``layers_{i}``), :func:`unrolled_count`;
- membership: :meth:`Stack.contains`;
- finding: :func:`find_stack` / :func:`find_stacks` read form, N and ensemble size from a tree;
- form: :func:`unstack_params` / :func:`stack_params` (one stack's subtree) and
  :func:`to_form` (a stack nested in a tree, form and layer axis at once);
- axes: :func:`move_layer_axis`, :func:`layer_axis_to` / :func:`layer_axis_from`,
  :func:`shared_to_ensemble` / :func:`ensemble_to_shared`.

Every conversion only slices, stacks, copies or moves axes, so round trips are ``==``.

>>> import numpy as np
>>> from composed_lifts.layout import Form, Stack, find_stacks, to_form
>>> params = {"embed": np.ones((5, 2)), "stack": {"w": np.arange(24.0).reshape(4, 3, 2)}}
>>> (found,) = find_stacks(params, [Stack("stack")])
>>> found.num_layers, found.form
(4, <Form.STACKED: 'stacked'>)
>>> unrolled = to_form(params, found, found.replace(form=Form.UNROLLED))
>>> sorted(unrolled["stack"]), found.contains("stack/w"), found.contains("embed")
(['layers_0', 'layers_1', 'layers_2', 'layers_3'], True, False)
>>> back = to_form(unrolled, find_stacks(unrolled, [Stack("stack")])[0], found)
>>> bool((back["stack"]["w"] == params["stack"]["w"]).all())
True
"""

from ._layout._axes import ensemble_to_shared as ensemble_to_shared
from ._layout._axes import layer_axis_from as layer_axis_from
from ._layout._axes import layer_axis_to as layer_axis_to
from ._layout._axes import map_stacked_leaves as map_stacked_leaves
from ._layout._axes import move_layer_axis as move_layer_axis
from ._layout._axes import shared_to_ensemble as shared_to_ensemble
from ._layout._find import find_stack as find_stack
from ._layout._find import find_stacks as find_stacks
from ._layout._find import layer_tree as layer_tree
from ._layout._form import stack_params as stack_params
from ._layout._form import to_form as to_form
from ._layout._form import unstack_params as unstack_params
from ._layout._stack import Form as Form
from ._layout._stack import Stack as Stack
from ._layout._stack import as_stacks as as_stacks
from ._layout._stack import layer_index as layer_index
from ._layout._stack import layer_name as layer_name
from ._layout._stack import path_str as path_str
from ._layout._stack import subtree as subtree
from ._layout._stack import unrolled_count as unrolled_count
from ._layout._stack import with_subtree as with_subtree

__all__ = [
    "Form",
    "Stack",
    "as_stacks",
    "ensemble_to_shared",
    "find_stack",
    "find_stacks",
    "layer_axis_from",
    "layer_axis_to",
    "layer_index",
    "layer_name",
    "layer_tree",
    "map_stacked_leaves",
    "move_layer_axis",
    "path_str",
    "shared_to_ensemble",
    "stack_params",
    "subtree",
    "to_form",
    "unrolled_count",
    "unstack_params",
    "with_subtree",
]
