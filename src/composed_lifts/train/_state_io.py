"""Train-state checkpoints: params, optimizer moments, step, data position and RNG in one file.

The state is saved through :mod:`composed_lifts.checkpoint` as one tree::

    params/layers/...          the trained params (the adapters under LoRA)
    opt/<optax path>/mu/layers/...   Adam's moments, shaped like the params
    opt/<optax path>/nu/layers/...
    opt/.../count, step, rng, data_position

with every ``layers`` subtree recorded as a stack. A model's unrolled layers
(``layers_0`` ... beside the embeddings) are filed under ``layers`` too, so the
same stack path holds a scanned run's stacked tensors or an unrolled run's per-layer
ones, and ``load`` converts either into the other's layout, for the moments as for
the params. The file is written atomically (a kill leaves the previous one whole).
The frozen base of a LoRA run is not saved: it is the base model's folder.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from flax import serialization

from ..errors import CheckpointMismatchError
from ._step import TrainState

__all__ = ["load_train_state", "save_train_state", "train_state_tree"]


def _is_layer(key: str) -> bool:
    return key.startswith("layers_") and key[7:].isdigit()


def _nest(params: dict) -> dict:
    """``layers_0 ..`` beside other keys -> under one ``layers`` key (scanned trees unchanged)."""
    layers = {k: v for k, v in params.items() if _is_layer(k)}
    if not layers:
        return dict(params)
    rest = {k: v for k, v in params.items() if not _is_layer(k)}
    return {**rest, "layers": layers}


def _unnest(tree: dict) -> dict:
    inner = tree.get("layers")
    if isinstance(inner, dict) and inner and all(_is_layer(k) for k in inner):
        rest = {k: v for k, v in tree.items() if k != "layers"}
        return {**rest, **inner}
    return dict(tree)


def _params_like(node, params_keys: set[str]) -> bool:
    return isinstance(node, dict) and set(node) == params_keys


def _canonical(node, params_keys: set[str], path: tuple[str, ...], stacks: list[str]):
    if _params_like(node, params_keys):
        stacks.append("/".join((*path, "layers")))
        return _nest(node)
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            value = _canonical(value, params_keys, (*path, str(key)), stacks)
            if not isinstance(value, dict) or value:  # optax's empty states hold nothing
                out[str(key)] = value
        return out
    return node


def train_state_tree(state: TrainState, data_position: int = 0) -> tuple[dict, list[str]]:
    """``(tree, stacks)``: the state as the checkpoint stores it, and its stack paths."""
    keys = set(state.params)
    stacks: list[str] = []
    tree = {
        "params": _canonical(state.params, keys, ("params",), stacks),
        "opt": _canonical(serialization.to_state_dict(state.opt_state), keys, ("opt",), stacks),
        "step": state.step,
        "rng": state.rng,
        "data_position": np.asarray(data_position, np.int64),
    }
    return tree, stacks


def save_train_state(path: str | os.PathLike, state: TrainState, *, data_position: int = 0) -> None:
    """Save ``state`` (and the data position to resume from) to ``path`` atomically.

    ``path`` ending in ``.safetensors`` is one safetensors file, any other path an Orbax
    folder (``composed_lifts.checkpoint.save``'s rule). Across processes
    (``jax.distributed``), every process calls it: a safetensors file is gathered and
    written by process 0 (all return once it is whole); Orbax writes shard by shard.
    """
    from ..checkpoint import Stack, save

    tree, stacks = train_state_tree(state, data_position)
    records = [Stack(s) for s in stacks]
    if not os.fspath(path).endswith(".safetensors"):
        save(path, tree, stacks=records)
        return
    if jax.process_count() == 1:
        save(path, jax.tree_util.tree_map(np.asarray, tree), stacks=records)
        return
    from jax.experimental import multihost_utils

    def gathered(x):  # a global array -> the whole of it on every process; host leaves as they are
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return multihost_utils.process_allgather(x, tiled=True)
        return x

    whole = jax.tree_util.tree_map(gathered, tree)
    if jax.process_index() == 0:
        save(path, jax.tree_util.tree_map(np.asarray, whole), stacks=records)
    multihost_utils.sync_global_devices(f"save_train_state {os.fspath(path)}")


def _abstract(x):
    sharding = getattr(x, "sharding", None)
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding)


def load_train_state(path: str | os.PathLike, like: TrainState) -> tuple[TrainState, int]:
    """Load a train state into ``like``'s layout: ``(state, data_position)``.

    ``like`` is the state a trainer's ``init`` made for the model to resume (scanned or
    unrolled, on any mesh); its frozen base is kept, everything else is read from ``path``.
    A file from another model or run (other shapes, another optimizer) is refused by name.
    """
    from ..checkpoint import load

    tree, _ = train_state_tree(like)
    target = jax.tree_util.tree_map(_abstract, tree)
    got = load(path, like=target)
    opt_sd = serialization.to_state_dict(like.opt_state)
    keys = set(like.params)
    try:
        opt_state = serialization.from_state_dict(
            like.opt_state, _restore(opt_sd, got["opt"], keys)
        )
    except (KeyError, ValueError) as err:
        raise CheckpointMismatchError(
            "opt", "another optimizer state", "this trainer's", str(err)
        ) from None
    params = _unnest(got["params"]) if isinstance(got["params"], dict) else got["params"]
    state = like.replace(
        step=_to_device(got["step"], like.step),
        params=jax.tree_util.tree_map(_to_device, params, like.params),
        opt_state=jax.tree_util.tree_map(_to_device, opt_state, like.opt_state),
        rng=_to_device(got["rng"], like.rng),
    )
    return state, int(np.asarray(got["data_position"]))


def _restore(template, loaded, keys: set[str]):
    """``loaded`` (canonical) back in ``template``'s shape: empty states refilled, layers unnested."""
    if _params_like(template, keys):
        return _unnest(loaded)
    if isinstance(template, dict):
        return {k: _restore(v, loaded.get(str(k), {}), keys) for k, v in template.items()}
    return loaded


def _to_device(x, like):
    if isinstance(x, jax.Array) and getattr(like, "sharding", None) == x.sharding:
        return x
    sharding = getattr(like, "sharding", None)
    return jax.device_put(np.asarray(x), sharding) if sharding is not None else jax.numpy.asarray(x)
