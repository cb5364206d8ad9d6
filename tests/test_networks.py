"""Initial parameters (orthogonal kernels with the reference's gains), sampling, and the action mapping
to environment bounds."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpo_jax import Config
from bpo_jax.envs import Box, Discrete
from bpo_jax.networks import (Categorical, DiagGaussian, action_to_env, init_params, make_network,
                              orthogonal_kernels, policy_noise)

BOX = Box(low=jnp.array([-1.0, 0.0]), high=jnp.array([1.0, 4.0]), shape=(2,))


def test_clip_is_identity_inside_and_clips_outside():
    a = jnp.array([[0.5, 3.0], [-7.0, 9.0]])
    np.testing.assert_allclose(action_to_env(BOX, a, "clip"), [[0.5, 3.0], [-1.0, 4.0]])


def test_tanh_maps_onto_the_box_smoothly():
    a = jnp.array([[0.0, 0.0], [50.0, -50.0], [0.5, 1.0]])
    out = np.asarray(action_to_env(BOX, a, "tanh"))
    np.testing.assert_allclose(out[0], [0.0, 2.0], atol=1e-6)  # the centre of the box
    np.testing.assert_allclose(out[1], [1.0, 0.0], atol=1e-6)  # saturates at the bounds
    np.testing.assert_allclose(out[2], [np.tanh(0.5), 2.0 + 2.0 * np.tanh(1.0)], rtol=1e-6)


def test_discrete_actions_pass_through():
    a = jnp.array([0, 1, 2])
    np.testing.assert_array_equal(action_to_env(Discrete(3), a, "tanh"), a)


def _gram(w):
    """W^T W for a tall kernel, W W^T for a wide one (the identity times gain^2 if orthogonal)."""
    w = np.asarray(w, np.float64)
    return w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T


def test_init_params_gives_each_kernel_its_gain_times_an_orthogonal_matrix():
    config = Config(algo="bpo", hidden_sizes=(64, 32), median_hidden_sizes=(16,), init_std=0.7)
    network = make_network(config, Box(low=-jnp.ones(3), high=jnp.ones(3), shape=(3,)))
    params = init_params(network, jax.random.key(3), jnp.zeros((2, 5)))["params"]
    gains = {  # path -> (shape, gain): sqrt 2 in the trunks, 0.01 policy head, 1 value head and every median
        # layer (digest 3.2: "extractor sqrt 2, action head 0.01, value head 1, u_net 1 (all layers)")
        ("actor", "MLP_0", "Dense_0"): ((5, 64), np.sqrt(2)), ("actor", "MLP_0", "Dense_1"): ((64, 32), np.sqrt(2)),
        ("actor", "Dense_0"): ((32, 3), 0.01),
        ("critic", "MLP_0", "Dense_0"): ((5, 64), np.sqrt(2)), ("critic", "MLP_0", "Dense_1"): ((64, 32), np.sqrt(2)),
        ("critic", "Dense_0"): ((32, 1), 1.0),
        ("critic", "median_trunk", "Dense_0"): ((32, 16), 1.0), ("critic", "Dense_1"): ((16, 1), 1.0),
    }
    kernels = {tuple(k.key for k in path[:-1]): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
               if path[-1].key == "kernel"}
    assert set(kernels) == set(gains)
    for path, (shape, gain) in gains.items():
        w = kernels[path]
        assert w.shape == shape, path
        np.testing.assert_allclose(_gram(w), gain**2 * np.eye(min(shape)), atol=1e-5 * gain**2, err_msg=str(path))
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if path[-1].key == "bias":
            np.testing.assert_array_equal(leaf, 0.0)
    std = network.apply({"params": params}, jnp.zeros((1, 5)), method="policy").std
    np.testing.assert_allclose(std, 0.7, rtol=1e-5)


def test_init_params_is_deterministic_per_key():
    network = make_network(Config(), Discrete(2))
    obs = jnp.zeros((1, 4))
    a, b, c = (init_params(network, jax.random.key(k), obs) for k in (0, 0, 1))
    for x, y, z in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(c)):
        np.testing.assert_array_equal(x, y)
        if x.ndim == 2:
            assert not np.allclose(x, z)


def test_orthogonal_kernels_are_haar_and_independent():
    """Closed-form moments of a Haar-random orthogonal matrix (every column uniform on the sphere
    S^{m-1}): E[q^2] = 1/m, E[q^4] = 3/(m(m+2)), and two entries of one row in different columns
    E[q_11^2 q_12^2] = 1/(m(m+2)) (1/m^2 if they were independent).  Kernels of one group (same
    long side m = 5, padded to a common width) must be independent of each other."""
    m = 5
    shapes = [(5, 3), (2, 5), (5, 5), (5, 5)]
    ws = jax.jit(jax.vmap(lambda k: orthogonal_kernels(k, shapes)))(jax.random.split(jax.random.key(0), 20_000))
    for w, shape in zip(ws, shapes):
        w = np.asarray(w, np.float64)
        assert w.shape == (20_000,) + shape
        cols = w if shape[0] >= shape[1] else np.swapaxes(w, 1, 2)  # [K, m, n]: orthonormal columns
        np.testing.assert_allclose(np.mean(cols**2), 1 / m, rtol=0.02)
        np.testing.assert_allclose(np.mean(cols**4), 3 / (m * (m + 2)), rtol=0.05)
        np.testing.assert_allclose(np.mean(cols[:, 0, 0] ** 2 * cols[:, 0, 1] ** 2), 1 / (m * (m + 2)), rtol=0.1)
    a, b = np.asarray(ws[2], np.float64), np.asarray(ws[3], np.float64)
    np.testing.assert_allclose(np.mean(a[:, 0, 0] ** 2 * b[:, 0, 0] ** 2), 1 / m**2, rtol=0.1)
    np.testing.assert_allclose(np.corrcoef(a[:, 0, 0], b[:, 0, 0])[0, 1], 0.0, atol=0.03)


def test_sampling_with_given_noise_equals_sampling_with_a_key():
    """``sample_with(noise(key, shape))`` is ``sample(key)``: the categorical is jax.random.categorical
    draw for draw; the Gaussian mean + std * normal; policy_noise has the rollout's shape."""
    key = jax.random.key(3)
    logits = jax.random.normal(jax.random.key(4), (16, 5))
    cat = Categorical(logits)
    np.testing.assert_array_equal(cat.sample(key), jax.random.categorical(key, logits))
    np.testing.assert_array_equal(cat.sample_with(policy_noise(Discrete(5), key, (16,))), cat.sample(key))
    gauss = DiagGaussian(jnp.ones((16, 3)), jnp.full((3,), 0.5))
    np.testing.assert_allclose(gauss.sample(key), 1.0 + 0.5 * jax.random.normal(key, (16, 3)))
    box = Box(low=-jnp.ones(3), high=jnp.ones(3), shape=(3,))
    assert policy_noise(box, key, (128, 16)).shape == (128, 16, 3)
    assert policy_noise(Discrete(5), key, (128, 16)).shape == (128, 16, 5)


@pytest.mark.parametrize("n", [2, 3, 18, 33])
def test_categorical_log_prob_entropy_and_gradients_equal_numpy(n):
    """log pi(a), entropy and the gradient of log pi(a) + c * entropy against float64 NumPy
    closed forms; n = 33 takes the reduction path (more choices than are written column by column)."""
    logits = jax.random.normal(jax.random.key(n), (64, n)) * 3.0
    action = jax.random.randint(jax.random.key(1), (64,), 0, n)
    l64 = np.asarray(logits, np.float64)
    logp = l64 - l64.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    p = np.exp(logp)
    rows = np.arange(64)
    entropy = -(p * logp).sum(-1)
    cat = Categorical(logits)
    np.testing.assert_allclose(cat.log_prob(action), logp[rows, np.asarray(action)], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cat.entropy(), entropy, rtol=1e-5, atol=1e-5)
    c = 0.3
    grad = jax.grad(lambda l: jnp.sum(Categorical(l).log_prob(action) + c * Categorical(l).entropy()))(logits)
    onehot = np.eye(n)[np.asarray(action)]
    # d log p_a / dl = onehot - p;  d H / dl_j = -p_j (log p_j + H)
    expected = onehot - p - c * p * (logp + entropy[:, None])
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)


def test_two_choice_categorical_is_bit_identical_to_jax_log_softmax():
    """With two choices the column-by-column form sums in the order XLA's reduction does."""
    logits = jax.random.normal(jax.random.key(5), (256, 2)) * 4.0
    action = jax.random.randint(jax.random.key(6), (256,), 0, 2)
    ref = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], -1)[:, 0]
    np.testing.assert_array_equal(Categorical(logits).log_prob(action), ref)


def _gaussian_reference(action, mean, raw, min_std):
    """float64 SciPy reference: std = min_std + softplus(raw), log N(a; mean, std) summed over the
    action axis, and the closed-form entropy sum(0.5 + 0.5 log 2 pi + log std) per state."""
    from scipy import stats

    std = min_std + np.logaddexp(0.0, np.asarray(raw, np.float64))
    logp = stats.norm.logpdf(np.asarray(action, np.float64), np.asarray(mean, np.float64), std).sum(-1)
    entropy = np.full(np.shape(mean)[:-1], np.sum(0.5 + 0.5 * np.log(2 * np.pi) + np.log(std)))
    return logp, entropy


def _central_difference(f, x, h):
    """d sum(f(x)) / dx by float64 central differences, entry by entry."""
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = h
        grad[i] = (np.sum(f(x + step)) - np.sum(f(x - step))) / (2 * h)
    return grad


def test_gaussian_log_prob_entropy_and_gradients_equal_scipy():
    """DiagGaussian with std = min_std + softplus(raw) (as the Actor builds it): log pi(a) against
    scipy.stats.norm.logpdf summed over the action axis, the entropy against the closed form, and
    the gradients of sum(log pi(a)) + c * sum(entropy) w.r.t. the mean and the raw std parameter
    against float64 central differences of the SciPy reference and against the closed forms
    d/dmean = (a - mean)/std^2, d/draw = sigmoid(raw) (sum_b ((a - mean)^2/std^3 - 1/std) + c B/std).
    The first raw is so negative that std sits on its floor min_std."""
    min_std, c = 0.05, 0.3
    raw = np.array([-30.0, 0.0, 1.5], np.float32)  # std = 0.05 (the floor), 0.05 + log 2, 0.05 + softplus(1.5)
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(16, 3)).astype(np.float32)
    std64 = min_std + np.logaddexp(0.0, raw.astype(np.float64))
    action = (mean + rng.normal(size=(16, 3)) * std64 * 1.5).astype(np.float32)
    np.testing.assert_allclose(std64[0], min_std, rtol=1e-10)

    def dist(m, r):
        return DiagGaussian(m, min_std + jax.nn.softplus(r))

    want_logp, want_entropy = _gaussian_reference(action, mean, raw, min_std)
    d = dist(jnp.asarray(mean), jnp.asarray(raw))
    assert float(d.std[0]) == np.float32(min_std)  # the floor
    assert d.log_prob(jnp.asarray(action)).shape == d.entropy().shape == (16,)
    np.testing.assert_allclose(d.log_prob(jnp.asarray(action)), want_logp, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(d.entropy(), want_entropy, rtol=1e-5, atol=1e-5)

    def objective(m, r):
        g = dist(m, r)
        return jnp.sum(g.log_prob(jnp.asarray(action))) + c * jnp.sum(g.entropy())

    grad_mean, grad_raw = jax.grad(objective, argnums=(0, 1))(jnp.asarray(mean), jnp.asarray(raw))

    def reference(m, r):
        logp, entropy = _gaussian_reference(action, m, r, min_std)
        return logp + c * entropy

    fd_mean = _central_difference(lambda m: reference(m, raw), mean, 1e-6)
    fd_raw = _central_difference(lambda r: reference(mean, r), raw, 1e-6)
    np.testing.assert_allclose(grad_mean, fd_mean, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(grad_raw, fd_raw, rtol=1e-4, atol=1e-4)
    a64, m64 = action.astype(np.float64), mean.astype(np.float64)
    sigmoid = 1.0 / (1.0 + np.exp(-raw.astype(np.float64)))
    np.testing.assert_allclose(grad_mean, (a64 - m64) / std64**2, rtol=1e-4, atol=1e-3)
    closed_raw = sigmoid * (np.sum((a64 - m64) ** 2 / std64**3 - 1.0 / std64, axis=0) + c * 16 / std64)
    np.testing.assert_allclose(grad_raw, closed_raw, rtol=1e-4, atol=1e-4)
    assert abs(float(grad_raw[0])) < 1e-6  # on the floor the raw parameter no longer moves std


def test_the_actors_gaussian_is_min_std_plus_softplus_of_its_parameter():
    """Through the network: the Gaussian's std is min_std + softplus(params['actor']['std_raw'])
    (NumPy), its mean the policy head's output, and log pi / entropy and their gradients w.r.t.
    std_raw and the head's bias (which shifts the mean of every state) equal the SciPy reference."""
    min_std, c = 0.02, 0.1
    config = Config(hidden_sizes=(8,), init_std=0.5, min_std=min_std)
    network = make_network(config, Box(low=-jnp.ones(3), high=jnp.ones(3), shape=(3,)))
    obs = jax.random.normal(jax.random.key(0), (32, 4))
    params = init_params(network, jax.random.key(1), obs)
    raw0 = np.asarray(params["params"]["actor"]["std_raw"], np.float64)
    np.testing.assert_allclose(min_std + np.logaddexp(0.0, raw0), 0.5, rtol=1e-5)  # init_std
    raw = np.array([-25.0, -0.5, 0.8], np.float32)
    params["params"]["actor"]["std_raw"] = jnp.asarray(raw)
    params["params"]["actor"]["Dense_0"]["bias"] = jnp.array([0.3, -0.2, 0.1])
    d = network.apply(params, obs, method="policy")
    np.testing.assert_allclose(d.std, min_std + np.logaddexp(0.0, raw.astype(np.float64)), rtol=1e-6)
    mean = np.asarray(d.mean, np.float64)
    action = jax.random.normal(jax.random.key(2), (32, 3)) * 0.4
    want_logp, want_entropy = _gaussian_reference(action, mean, raw, min_std)
    np.testing.assert_allclose(d.log_prob(action), want_logp, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(d.entropy(), want_entropy, rtol=1e-5, atol=1e-5)

    def objective(p):
        g = network.apply(p, obs, method="policy")
        return jnp.sum(g.log_prob(action)) + c * jnp.sum(g.entropy())

    grads = jax.grad(objective)(params)["params"]["actor"]
    reference = lambda m, r: _gaussian_reference(action, m, r, min_std)[0] + c * _gaussian_reference(action, m, r, min_std)[1]
    bias = np.zeros(3)
    fd_bias = _central_difference(lambda b: reference(mean + b, raw), bias, 1e-6)
    fd_raw = _central_difference(lambda r: reference(mean, r), raw, 1e-6)
    np.testing.assert_allclose(grads["Dense_0"]["bias"], fd_bias, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(grads["std_raw"], fd_raw, rtol=1e-4, atol=1e-4)
