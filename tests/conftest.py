"""Strict JAX for every test: rank promotion raises, several CPU devices for sharding tests.

XLA_FLAGS must be set before jax is first imported, so this runs at collection.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

# Compiles dominate test time: few, small examples, no deadline (first calls compile).
settings.register_profile("default", max_examples=10, deadline=None, derandomize=True)
settings.load_profile("default")


@pytest.fixture(params=[True, False], ids=["partitionable", "original"])
def partitionable(request):
    """Both of JAX's threefry counter layouts; the process-wide setting is restored afterwards."""
    before = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", request.param)
    yield request.param
    jax.config.update("jax_threefry_partitionable", before)

# A child process's script (run by test_train_multiprocess.py with its arguments), not a test
# module: --doctest-modules must not import it.
collect_ignore = ["train_multiprocess_script.py"]
