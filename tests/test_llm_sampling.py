"""The sampler and the transformer's KV cache: greedy decoding of a known sequence, stopping at
the end token, log-probs against a teacher-forced pass, cache decode against a full forward."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpo_jax.llm import sampling
from bpo_jax.llm.model import ModelConfig, make_model

V = 10


def generate(model, params, prompts, key, cfg):
    return jax.jit(lambda p, x, k: sampling.generate(model, p, x, k, cfg))(params, prompts, key)


def increment_model() -> sampling.LanguageModel:
    """A contract-conforming model whose next token is (last token + 1) mod V, with certainty
    growing with ``params``; its cache only counts tokens."""
    def apply(params, tokens, cache):
        logits = params * jax.nn.one_hot((tokens + 1) % V, V)
        return logits, {"pos": cache["pos"] + tokens.shape[1]}
    return sampling.LanguageModel(apply=apply, init_cache=lambda b, n: {"pos": jnp.zeros((), jnp.int32)})


def test_greedy_decoding_reproduces_the_increment_sequence():
    prompts = jnp.array([[0, 1, 2], [5, 5, 6]])
    g = generate(increment_model(), 10.0, prompts, jax.random.key(0),
                 sampling.SamplingConfig(max_new_tokens=5, temperature=0.0))
    np.testing.assert_array_equal(g.tokens, [[3, 4, 5, 6, 7], [7, 8, 9, 0, 1]])
    np.testing.assert_array_equal(g.mask, 1.0)


def test_stop_at_end_token_masks_the_rest():
    prompts = jnp.array([[4], [7], [1]])
    g = generate(increment_model(), 10.0, prompts, jax.random.key(0),
                 sampling.SamplingConfig(max_new_tokens=5, temperature=0.0, end_token=7, pad_token=0))
    # Row 0: 5 6 7 then stop; row 1: 8 9 0 1 2 never meets 7; row 2: 2..6 reaches 7 only after R.
    np.testing.assert_array_equal(g.tokens, [[5, 6, 7, 0, 0], [8, 9, 0, 1, 2], [2, 3, 4, 5, 6]])
    np.testing.assert_array_equal(g.mask, [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert np.all(np.asarray(g.log_probs)[np.asarray(g.mask) == 0] == 0)


def test_top_p_filter_keeps_the_nucleus():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]]))
    kept = np.isfinite(np.asarray(sampling.top_p_filter(logits, 0.7)))
    np.testing.assert_array_equal(kept, [[True, True, False, False], [False, False, True, True]])
    kept = np.isfinite(np.asarray(sampling.top_p_filter(logits, 0.1)))  # always at least the top token
    np.testing.assert_array_equal(kept.sum(1), [1, 1])
    # A set whose mass reaches top_p exactly is the nucleus: uniform over 4 (0.25 each, exact in
    # float32) at top_p 0.5 keeps 2 tokens, not the third that starts at 0.5.
    for top_p, size in ((0.5, 2), (0.75, 3), (0.25, 1), (0.2500001, 2)):
        assert int(np.isfinite(np.asarray(sampling.top_p_filter(jnp.zeros((1, 4)), top_p))).sum()) == size


@pytest.fixture(scope="module")
def tiny():
    cfg = ModelConfig(vocab_size=12, max_len=16, d_model=16, num_layers=2, num_heads=2)
    model, init = make_model(cfg)
    # jit: flax's eager op-by-op dispatch is slower than compiling once on a small CPU.
    model = model._replace(apply=jax.jit(model.apply))
    return model, jax.jit(init)(jax.random.key(0))


def test_kv_cache_decode_equals_full_forward(tiny):
    model, params = tiny
    tokens = jax.random.randint(jax.random.key(1), (3, 9), 0, 12)
    full, _ = model.apply(params, tokens, model.init_cache(3, 9))
    # Prefill 4 tokens, then decode one token at a time through a longer cache.
    cache = model.init_cache(3, 12)
    first, cache = model.apply(params, tokens[:, :4], cache)
    steps = [first]
    for t in range(4, 9):
        logits, cache = model.apply(params, tokens[:, t:t + 1], cache)
        steps.append(logits)
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, rtol=1e-4, atol=1e-4)
    assert int(cache["pos"]) == 9


def test_sampled_log_probs_equal_teacher_forced(tiny):
    """Under temperature and top-p the reported log-prob is that of softmax(logits / T), which
    is what the trainer recomputes teacher-forced as the old policy."""
    model, params = tiny
    temperature, top_p = 0.8, 0.9
    prompts = jax.random.randint(jax.random.key(2), (6, 5), 0, 12)
    cfg = sampling.SamplingConfig(max_new_tokens=6, temperature=temperature, top_p=top_p, end_token=11, pad_token=0)
    g = jax.jit(lambda p, x, k: sampling.generate(model, p, x, k, cfg))(params, prompts, jax.random.key(3))
    logp, entropy = sampling.token_log_probs(model, params, prompts, g.tokens, temperature)
    mask = np.asarray(g.mask)
    np.testing.assert_allclose(np.asarray(logp) * mask, g.log_probs, rtol=1e-4, atol=1e-5)
    assert np.all(np.asarray(entropy) > 0)
    # Every row is masked from its first end token on (and not before).
    for row, m in zip(np.asarray(g.tokens), mask):
        ends = np.flatnonzero(row == 11)
        stop = ends[0] + 1 if len(ends) else len(row)
        np.testing.assert_array_equal(m, np.arange(len(row)) < stop)
