"""The shipped MLPBlock computes what the test suite's independent residual MLP computes."""

import jax
import jax.numpy as jnp
import numpy as np

from blocks import F, ResidualMLPLinen
from composed_lifts import MLPBlock, StackOptions, linen_stack


def test_mlp_block_matches_the_reference_block():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, F)), jnp.float32)
    ours = linen_stack(MLPBlock, StackOptions(num_layers=2))(features=F)
    ref = linen_stack(ResidualMLPLinen, StackOptions(num_layers=2))(features=F)
    variables = ours.init(jax.random.PRNGKey(0), x)
    assert jax.tree_util.tree_structure(variables) == jax.tree_util.tree_structure(
        ref.init(jax.random.PRNGKey(0), x)
    )
    np.testing.assert_allclose(ours.apply(variables, x)[0], ref.apply(variables, x)[0], rtol=1e-6)
