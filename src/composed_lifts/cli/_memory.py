"""How much memory the machine has available, and the check a command runs before allocating.

The estimates are made by each command from its shapes (``run``: params, input and carries;
``tune``: params, gradients and one carry per layer); they are refused when they exceed
what is available now (``MemAvailable``, and the cgroup's limit when the process has one),
and ``--force`` skips the check.
"""

from __future__ import annotations

from ..memory import available_bytes
from ._errors import MemoryEstimateError

__all__ = ["available_bytes", "check_memory"]


def check_memory(need: int, what: str, flags: str, *, force: bool) -> None:
    """Raise :class:`MemoryEstimateError` when ``need`` bytes exceed what is available."""
    if force:
        return
    available = available_bytes()
    if available is not None and need > available:
        raise MemoryEstimateError(what, need, available, flags)


def stack_param_bytes(block, fields: dict, num_layers: int, carry_shape, *, ensemble=False) -> int:
    """Bytes of the params of ``linen_stack(block)`` on a float32 carry, found abstractly."""
    import jax
    import jax.numpy as jnp

    from .. import BatchMode, StackOptions, linen_stack

    batch = BatchMode.ENSEMBLE if ensemble else BatchMode.SHARED
    model = linen_stack(block, StackOptions(num_layers=num_layers, batch=batch))(**fields)
    carry = jax.ShapeDtypeStruct(tuple(carry_shape), jnp.float32)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), carry)
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree_util.tree_leaves(shapes))
