"""``composed_lifts_forward(seed, x, N, F)``: init from the seed *and* apply, compiled once.

Its params come from the seed (a new seed every call), so its output is not
checked against the reference here (tests check it against the seed's recipe),
and its time includes the init.
"""

from __future__ import annotations

import itertools

import jax

NAME = "ours: composed_lifts_forward (init+apply)"
GROUP = "ours"
SAME_PARAMS = False


def build(p):
    from composed_lifts import composed_lifts_forward

    seeds = itertools.count(1)

    def call():
        out = composed_lifts_forward(next(seeds), p.x, p.N, p.F)
        return jax.block_until_ready(out).reshape(p.B, p.F)

    return call
