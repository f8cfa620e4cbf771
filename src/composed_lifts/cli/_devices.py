"""``--devices D`` for the subcommands that run a model: a mesh of D devices over the examples."""

from __future__ import annotations

import argparse

import jax
from jax.sharding import Mesh

from .. import device_mesh
from ..errors import ArgumentRangeError

# The most virtual CPU devices we ask XLA for. Measured on a 2-core machine (jax 0.10): making
# 1,024 CPU devices took 1.7 s and 0.28 GB, 4,096 took 11 s and 0.59 GB, 8,192 took 41 s and
# 1.0 GB, 65,536 did not finish in 60 s (2.5 GB by then), and 1,000,000 is killed by SIGSEGV
# or hangs; `run --devices 1024` took 58 s in all. Past 1,024 the cost grows faster than the
# count and nothing is gained on one machine.
MAX_CPU_DEVICES = 1024


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
        if count > MAX_CPU_DEVICES:  # refused before JAX starts: XLA would crash or hang
            raise ArgumentRangeError(
                "--devices",
                f"<= {MAX_CPU_DEVICES} on CPU (virtual devices; {MAX_CPU_DEVICES} already take "
                f"a minute to run on; more crash XLA or hang)",
                count,
                "split the examples over fewer devices",
            )
        try:
            jax.config.update("jax_num_cpu_devices", count)
        except RuntimeError:  # the backend started after all: device_mesh explains
            pass
    return device_mesh({"data": count})
