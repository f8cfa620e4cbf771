"""GPT-2 on a layer stack: learned positions, LayerNorm, fused QKV, GELU (tanh), tied head.

Module and param names follow Hugging Face's (``ln_1``, ``attn.c_attn``,
``mlp.c_fc`` ...), so the key map in ``_families/gpt2.py`` reads as a table. Dense kernels
are ``(in, out)``, like GPT-2's ``Conv1D`` weights.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from .._options import Remat
from ._attention import KVCache, attend, decoding_carry, layer_cache, with_cache
from ._layers import apply_layers, positions_of

if TYPE_CHECKING:
    from ._families.gpt2 import GPT2Config

__all__ = ["GPT2", "GPT2Block"]

_init = nn.initializers.normal(0.02)


def _layer_norm(config: GPT2Config, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=config.layer_norm_epsilon, use_fast_variance=False, name=name)


class GPT2Attention(nn.Module):
    config: GPT2Config

    @nn.compact
    def __call__(self, x: jax.Array, positions: jax.Array, cache=None):
        c = self.config
        t, head_dim = x.shape[0], c.n_embd // c.n_head
        qkv = nn.Dense(3 * c.n_embd, kernel_init=_init, name="c_attn")(x)
        q, k, v = (a.reshape(t, c.n_head, head_dim) for a in jnp.split(qkv, 3, axis=-1))
        out, cache = attend(q, k, v, positions, cache)
        return nn.Dense(c.n_embd, kernel_init=_init, name="c_proj")(out), cache


class GPT2MLP(nn.Module):
    config: GPT2Config

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.Dense(self.config.n_inner, kernel_init=_init, name="c_fc")(x)
        h = jax.nn.gelu(h, approximate=True)
        return nn.Dense(self.config.n_embd, kernel_init=_init, name="c_proj")(h)


class GPT2Block(nn.Module):
    """One GPT-2 layer on one sequence: carry ``(x (T, D), positions (T,))`` -> same.

    Decoding, the carry also holds the KV cache and ``xs`` the slot and the layer's
    index (see ``_layers.py``).
    """

    config: GPT2Config

    @nn.compact
    def __call__(self, carry, xs=None):
        x, positions = carry[0], carry[1]
        attn = GPT2Attention(self.config, name="attn")
        cache = layer_cache(carry, xs)
        h, cache = attn(_layer_norm(self.config, "ln_1")(x), positions, cache)
        x = x + h
        x = x + GPT2MLP(self.config, name="mlp")(_layer_norm(self.config, "ln_2")(x))
        return with_cache(carry, x, cache), None


class GPT2(nn.Module):
    """GPT-2 language model: ``ids (B, T)`` (and ``positions (B, T)``) -> logits ``(B, T, V)``.

    ``scan_layers=False`` unrolls the layers (params ``layers_0 ..``); ``remat`` rematerialises
    each layer with that policy (for training). Decoding:
    ``model(ids, positions, cache=cache, slot=slot, mask=mask)`` returns
    ``(logits, cache)``, as :class:`~composed_lifts.models.Decoder` does;
    ``last=True`` gives the last position's logits only.
    """

    config: GPT2Config
    scan_layers: bool = True
    remat: Remat = Remat.NONE

    @nn.compact
    def __call__(
        self,
        ids: jax.Array,
        positions: jax.Array | None = None,
        cache: KVCache | None = None,
        slot: jax.Array | None = None,
        mask: jax.Array | None = None,
        last: bool = False,
    ):
        c = self.config
        positions = positions_of(ids, positions)
        embed = functools.partial(nn.Embed, features=c.n_embd, embedding_init=_init)
        wte = embed(c.vocab_size, name="wte")
        x = wte(ids) + embed(c.n_positions, name="wpe")(positions)
        carry = (x, positions) if cache is None else decoding_carry(x, positions, cache, mask)
        fields: dict[str, Any] = dict(config=c)
        carry = apply_layers(
            GPT2Block,
            c.n_layer,
            self.scan_layers,
            carry,
            remat=self.remat,
            slot=None if cache is None else (0 if slot is None else slot),
            **fields,
        )
        x = carry[0][:, -1:] if last else carry[0]
        logits = wte.attend(_layer_norm(c, "ln_f")(x))
        return logits if cache is None else (logits, KVCache(*carry[2][:2]))
