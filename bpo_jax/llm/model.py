"""A small decoder-only transformer (flax linen) implementing the model contract of
:mod:`bpo_jax.llm.sampling`: ``apply(params, tokens, cache) -> (logits, cache)``.

Pre-LayerNorm blocks with learned absolute position embeddings.  The cache holds keys and
values of every layer, [L, B, S, H, Dh] with S the cache length, and the position of the next
token; new keys/values are written at that position, and a query at position p attends to the
cached positions <= p (later slots are empty or not yet valid).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from bpo_jax.llm.sampling import LanguageModel


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Size of the transformer."""

    vocab_size: int
    """V: number of token ids."""
    max_len: int
    """Longest sequence (prompt + response): the size of the position table."""
    d_model: int = 64
    """Width of the residual stream."""
    num_layers: int = 2
    """Number of transformer blocks."""
    num_heads: int = 4
    """Attention heads per block (d_model must be divisible by it)."""
    mlp_ratio: int = 4
    """Hidden width of each MLP as a multiple of d_model."""


class Decoder(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, tokens: jax.Array, cache: dict) -> tuple[jax.Array, dict]:
        """tokens [B, T] int32, cache as :func:`init_cache` -> (logits [B, T, V], new cache)."""
        cfg = self.cfg
        heads, head_dim = cfg.num_heads, cfg.d_model // cfg.num_heads
        batch, length = tokens.shape
        pos = cache["pos"]
        positions = pos + jnp.arange(length)
        x = nn.Embed(cfg.vocab_size, cfg.d_model, name="tok")(tokens)
        x = x + nn.Embed(cfg.max_len, cfg.d_model, name="pos")(positions)[None]
        slots = jnp.arange(cache["k"].shape[2])
        visible = slots[None, :] <= positions[:, None]  # [T, S]: causal, and only written slots
        new_k, new_v = [], []
        for layer in range(cfg.num_layers):
            h = nn.LayerNorm(name=f"ln_att{layer}")(x)
            qkv = nn.Dense(3 * cfg.d_model, name=f"qkv{layer}")(h).reshape(batch, length, 3, heads, head_dim)
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
            k_all = jax.lax.dynamic_update_slice(cache["k"][layer], k.astype(cache["k"].dtype), (0, pos, 0, 0))
            v_all = jax.lax.dynamic_update_slice(cache["v"][layer], v.astype(cache["v"].dtype), (0, pos, 0, 0))
            new_k.append(k_all)
            new_v.append(v_all)
            scores = jnp.einsum("bthd,bshd->bhts", q, k_all) / jnp.sqrt(head_dim).astype(q.dtype)
            scores = jnp.where(visible[None, None], scores, jnp.finfo(scores.dtype).min)
            att = jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(scores, axis=-1), v_all)
            x = x + nn.Dense(cfg.d_model, name=f"proj{layer}")(att.reshape(batch, length, cfg.d_model))
            h = nn.LayerNorm(name=f"ln_mlp{layer}")(x)
            h = nn.Dense(cfg.mlp_ratio * cfg.d_model, name=f"up{layer}")(h)
            x = x + nn.Dense(cfg.d_model, name=f"down{layer}")(nn.gelu(h))
        logits = nn.Dense(cfg.vocab_size, name="head")(nn.LayerNorm(name="ln_f")(x))
        return logits, {"k": jnp.stack(new_k), "v": jnp.stack(new_v), "pos": pos + length}


def init_cache(cfg: ModelConfig, batch_size: int, max_len: int, dtype=jnp.float32) -> dict:
    """Empty cache: keys and values [L, B, max_len, H, Dh], next position 0."""
    if max_len > cfg.max_len:
        raise ValueError(f"cache length {max_len} exceeds the model's max_len {cfg.max_len}")
    shape = (cfg.num_layers, batch_size, max_len, cfg.num_heads, cfg.d_model // cfg.num_heads)
    return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype), "pos": jnp.zeros((), jnp.int32)}


def make_model(cfg: ModelConfig) -> tuple[LanguageModel, Any]:
    """(the contract's LanguageModel, an ``init(key) -> params`` function)."""
    if cfg.d_model % cfg.num_heads:
        raise ValueError(f"d_model {cfg.d_model} must be divisible by num_heads {cfg.num_heads}")
    module = Decoder(cfg)

    def init(key: jax.Array) -> Any:
        return module.init(key, jnp.zeros((1, 1), jnp.int32), init_cache(cfg, 1, 1))

    model = LanguageModel(apply=module.apply, init_cache=lambda b, n: init_cache(cfg, b, n))
    return model, init
