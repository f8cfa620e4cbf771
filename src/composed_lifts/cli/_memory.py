"""How much memory the machine has available, and the check a command runs before allocating.

The estimates are made by each command from its shapes (``run``: params, input and carries;
``tune``: params, gradients and one carry per layer); they are refused when they exceed
what is available now (``MemAvailable``, and the cgroup's limit when the process has one),
and ``--force`` skips the check.
"""

from __future__ import annotations

import os

from ._errors import MemoryEstimateError

__all__ = ["available_bytes", "check_memory"]


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):  # missing, or "max"
        return None


def _cgroup_available() -> int | None:
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        lim, used = _read_int(limit), _read_int(usage)
        if lim is not None and used is not None and lim < 1 << 60:
            return max(lim - used, 0)
    return None


def available_bytes() -> int | None:
    """Memory available to this process now, in bytes (``None`` when it cannot be read)."""
    known = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    return min(known) if known else None


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
