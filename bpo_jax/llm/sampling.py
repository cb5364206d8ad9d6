"""Batched autoregressive generation with a KV cache, and teacher-forced scoring.

The model contract (bring your own flax model)
----------------------------------------------
A model is a :class:`LanguageModel` of two pure functions:

* ``apply(params, tokens, cache) -> (logits, cache)``: ``tokens`` [B, T] int32 are the next T
  tokens of every sequence; ``logits`` [B, T, V] float are the next-token logits at each of
  those positions.  ``cache`` is any pytree holding the keys/values of the tokens seen so far
  and the current position; the returned cache has the T new tokens appended.  Called with a
  fresh cache and the whole sequence it is the ordinary causal forward pass; called with one
  token at a time it decodes incrementally.  Both must give the same logits.
* ``init_cache(batch_size, max_len) -> cache``: an empty cache for ``max_len`` tokens.

For a flax linen module ``m`` whose ``__call__(tokens, cache)`` returns ``(logits, cache)``,
``LanguageModel(apply=m.apply, init_cache=...)`` is all it takes (see :mod:`bpo_jax.llm.model`).
All prompts of a batch have the same length (this module does no left padding).

Shapes: B = batch, P = prompt length, R = max_new_tokens, V = vocabulary size.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp


class LanguageModel(NamedTuple):
    """The model contract: see the module docstring."""

    apply: Callable[[Any, jax.Array, Any], tuple[jax.Array, Any]]
    init_cache: Callable[[int, int], Any]


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How :func:`generate` draws tokens (hashable: a static argument under jit)."""

    max_new_tokens: int
    """R: response length; generation always runs R steps and masks what follows the end token."""
    temperature: float = 1.0
    """Softmax temperature; 0 means greedy (argmax) decoding."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p (1: off)."""
    end_token: Optional[int] = None
    """Generation of a sequence stops after this token (it is kept and masked in); None: never."""
    pad_token: int = 0
    """Written after the end token, where the mask is 0."""


class Generation(NamedTuple):
    """What :func:`generate` returns."""

    tokens: jax.Array  # [B, R] int32 response tokens (pad_token after the end token)
    log_probs: jax.Array  # [B, R] log-prob of each token under softmax(logits / temperature); 0 where masked
    mask: jax.Array  # [B, R] float32 1 up to and including the end token


def _scaled_logits(logits: jax.Array, temperature: float) -> jax.Array:
    # Log-probs are reported under the temperature-scaled distribution the tokens were drawn
    # from (temperature 1 gives the policy itself); greedy decoding reports the unscaled ones.
    return logits / temperature if temperature > 0 else logits


def top_p_filter(logits: jax.Array, top_p: float) -> jax.Array:
    """Set to -inf every logit outside the nucleus: [..., V] -> [..., V].  The most likely
    token is always kept, so the distribution never becomes empty."""
    if top_p >= 1.0:
        return logits
    order = jnp.argsort(-logits, axis=-1)
    sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # probability mass strictly ahead of each token
    keep_sorted = before < top_p
    keep = jnp.take_along_axis(keep_sorted, jnp.argsort(order, axis=-1), axis=-1)  # back to vocab order
    return jnp.where(keep, logits, -jnp.inf)


def _draw(key, logits: jax.Array, cfg: SamplingConfig) -> jax.Array:
    if cfg.temperature <= 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    scaled = top_p_filter(logits / cfg.temperature, cfg.top_p)
    return jax.random.categorical(key, scaled, axis=-1).astype(jnp.int32)


def generate(model: LanguageModel, params: Any, prompts: jax.Array, key: jax.Array,
             cfg: SamplingConfig) -> Generation:
    """Sample R tokens after each prompt: one prefill call, then a ``lax.scan`` of one-token
    decode steps through the KV cache.

    Args:
      prompts: [B, P] int32.  key: PRNG key (unused when greedy).

    Returns:
      Generation of [B, R] tokens, log-probs and mask.
    """
    batch, prompt_len = prompts.shape
    cache = model.init_cache(batch, prompt_len + cfg.max_new_tokens)
    logits, cache = model.apply(params, prompts, cache)
    last = logits[:, -1]
    done = jnp.zeros((batch,), bool)

    def step(carry, step_key):
        last, cache, done = carry
        token = _draw(step_key, last, cfg)
        logp = jnp.take_along_axis(jax.nn.log_softmax(_scaled_logits(last, cfg.temperature), -1),
                                   token[:, None], axis=-1)[:, 0]
        live = ~done
        token = jnp.where(live, token, cfg.pad_token)
        if cfg.end_token is not None:
            done = done | (token == cfg.end_token)
        # The last step's forward pass is wasted work, but keeps the scan body uniform.
        logits, cache = model.apply(params, token[:, None], cache)
        return (logits[:, -1], cache, done), (token, jnp.where(live, logp, 0.0), live.astype(jnp.float32))

    keys = jax.random.split(key, cfg.max_new_tokens)
    _, (tokens, log_probs, mask) = jax.lax.scan(step, (last, cache, done), keys)
    return Generation(tokens=tokens.T, log_probs=log_probs.T, mask=mask.T)


def token_log_probs(model: LanguageModel, params: Any, prompts: jax.Array, responses: jax.Array,
                    temperature: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """Teacher-forced log-probs and entropies of the response tokens in one forward pass.

    Args:
      prompts: [B, P].  responses: [B, R].

    Returns:
      log_probs: [B, R] log pi(response_t | prompt, response_<t) under softmax(logits / temperature).
      entropy: [B, R] entropy of that next-token distribution.
    """
    tokens = jnp.concatenate([prompts, responses], axis=1)
    prompt_len, resp_len = prompts.shape[1], responses.shape[1]
    logits, _ = model.apply(params, tokens, model.init_cache(tokens.shape[0], tokens.shape[1]))
    logits = _scaled_logits(logits[:, prompt_len - 1:prompt_len + resp_len - 1], temperature)
    logp_all = jax.nn.log_softmax(logits, axis=-1)
    log_probs = jnp.take_along_axis(logp_all, responses[..., None], axis=-1)[..., 0]
    entropy = -(jnp.exp(logp_all) * logp_all).sum(-1)
    return log_probs, entropy
