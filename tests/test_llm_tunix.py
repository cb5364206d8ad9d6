"""The Tunix adapter's pure functions (no tunix needed), and registration where tunix exists."""
import jax.numpy as jnp
import numpy as np
import pytest

from bpo_jax.llm import groups, losses, tunix


def test_estimator_packs_grpo_advantage_and_gbpo_logit():
    r = jnp.array([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    packed = tunix.gbpo_advantages(r, num_generations=3, temperature=0.5)
    gid = jnp.array([0, 0, 0, 1, 1, 1])
    assert packed.shape == (6, 2)
    np.testing.assert_allclose(packed[:, 0], groups.grpo_advantages(r, gid), rtol=1e-6)
    np.testing.assert_allclose(packed[:, 1], groups.gbpo_target_logits(r, gid, 0.5), rtol=1e-6)
    z, logit = tunix.unpack(packed, 0.5)
    np.testing.assert_allclose(z, packed[:, 0])
    z1, logit1 = tunix.unpack(jnp.array([0.5, -1.0]), 0.25)  # a plain 1-D advantage
    np.testing.assert_allclose(logit1, [2.0, -4.0])
    with pytest.raises(ValueError):
        tunix.gbpo_advantages(r, num_generations=4)


def test_loss_on_tunix_arrays_equals_the_library_loss():
    rng = np.random.default_rng(0)
    logp = jnp.array(rng.normal(-1, 0.3, (4, 3)), jnp.float32)
    old = logp + 0.1
    mask = jnp.array([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]], jnp.float32)
    packed = tunix.gbpo_advantages(jnp.array([1.0, 0.0, 0.0, 1.0]), 2)
    loss, aux = tunix.gbpo_loss_from_logps(logp, old, None, mask, packed, 0.3, 0.3)
    z, logit = tunix.unpack(packed, 1e-4)
    expected = losses.aggregate(losses.gbpo_token_loss(logp, old, z, logit, 0.3, 0.3), mask)
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert "ratio_out_frac" in aux


def test_register_without_tunix_explains_or_registers():
    if tunix.available():
        from tunix.rl import function_registry

        assert tunix.register("gbpo_test") == "gbpo_test"
        assert function_registry.get_policy_loss_fn("gbpo_test") is tunix.gbpo_policy_loss
        adv = function_registry.get_advantage_estimator("gbpo_test")(np.array([1.0, 0.0]), 2)
        assert np.asarray(adv).shape == (2, 2)
    else:
        with pytest.raises(ImportError, match="pip install google-tunix"):
            tunix.register()


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_a_group_size_that_is_not_a_positive_integer_is_refused(bad):
    with pytest.raises(ValueError, match=f"num_generations must be a positive integer, got {bad!r}"):
        tunix.gbpo_advantages(jnp.array([1.0, 0.0, 0.0, 1.0]), bad)


@pytest.mark.parametrize("given,clip", [
    (dict(epsilon=0.2, epsilon_low=0.0, epsilon_high=0.0), (0.0, 0.0)),  # was (0.2, 0.2): 0 read as "not set"
    (dict(epsilon=0.3), (0.3, 0.3)),
    (dict(epsilon=0.2, epsilon_high=0.28), (0.2, 0.28)),
    (dict(), (0.2, 0.2)),
])
def test_the_clip_tunix_configures_is_the_one_the_loss_uses(monkeypatch, given, clip):
    from types import SimpleNamespace

    used = []
    monkeypatch.setattr(tunix, "_per_token_logps", lambda *args: None)
    monkeypatch.setattr(tunix, "gbpo_loss_from_logps", lambda logps, old, ref, mask, adv, low, high, **kw: (
        used.append((low, high)) or (0.0, {})))
    example = SimpleNamespace(old_per_token_logps=None, completion_mask=None, advantages=None)
    tunix.gbpo_policy_loss(None, example, SimpleNamespace(**given), pad_id=0, eos_id=1)
    assert used == [clip]
