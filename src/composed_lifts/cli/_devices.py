"""``--devices D`` for the subcommands that run a model: a mesh of D devices over the examples."""

from __future__ import annotations

import argparse

import jax
from jax.sharding import Mesh

from .. import device_mesh


def add_devices_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--devices",
        type=int,
        default=None,
        metavar="D",
        help="split the examples over D devices (data parallel); on CPU, D virtual devices "
        "are made when JAX starts",
    )


def devices_mesh(count: int) -> Mesh:
    """A mesh ``{"data": count}``. On CPU, JAX is asked for ``count`` host devices first; that
    works only before JAX's backend starts, else ``device_mesh`` says how to get them."""
    platforms = jax.config.jax_platforms  # type: ignore[attr-defined]
    if count > 1 and platforms in (None, "", "cpu"):  # (the flag affects the CPU backend only)
        try:
            jax.config.update("jax_num_cpu_devices", count)
        except RuntimeError:  # the backend started after all: device_mesh explains
            pass
    return device_mesh({"data": count})
