"""Where a CartPole PPO update spends its time on this machine, measured piece by piece.

    python benchmarks/where_time_goes.py [--rounds 3] [--seeds 10] [--only GROUP] [--out FILE.json]

PureJaxRL's CartPole configuration (4 envs x 128 steps, 4 epochs x 4 minibatches of 128,
tanh 64x64 actor and critic), our PPO at its defaults.  Every figure is the median of
``--rounds`` interleaved calls of one compiled scan (AOT-compiled, so no compile time is in
it), divided by the scan's length:

* per update (200 updates): the whole update; the rollout alone (``collect``: 128 env steps
  with the policy); the learning alone (``learn`` on one fixed rollout: critic, GAE, 4
  shuffles, 16 minibatch steps);
* per minibatch step (2,000 steps of 128 samples): the loss's forward pass alone; its
  gradient with a plain SGD step; its gradient with global-norm clip and Adam on every layer's
  arrays, and on the parameters raveled into one vector (as ``train.py`` runs it); that
  optimiser alone; the flat-vector step vmapped over ``--seeds`` seeds;
* random draws (5,000 calls): one shuffle of the 512-sample batch by ``jax.random.permutation``
  and by ``bpo_jax.shuffle.permutation`` (train.py); one rollout step sampling with a key split
  per step and with the noise drawn for the whole rollout beforehand (train.py);
* the env layer (5,000 steps, ``--only env``): ``env.step`` as the CPU runs it, the same with the
  reset computed on every step (GPUs, vmapped seeds), the task's own step alone, and one key
  split per env per step (what every step cost before keys were drawn only where used);
* per operation (5,000 calls): the kernels the networks are made of at minibatch size, a
  [128, 64] x [64, 64] matmul and a tanh over [128, 64], alone and chained as two layers; and
  a [1024, 1024] matmul, the rate this core reaches when dispatch does not count.

FLOPs per call come from XLA's cost analysis of each step compiled alone (the matmuls: 2mnk),
so every timed program also has an arithmetic rate (GFLOP/s).

The question it answers is whether an update is bound by arithmetic (then any program doing
PureJaxRL's computation costs what PureJaxRL's costs) or by overheads a better program could
remove (dispatch, host round-trips, metrics).  See RESULTS.md for a reading.
"""
from __future__ import annotations

import argparse
import collections
import copy
import glob
import gzip
import json
import os
import re
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import log, machine, out_path, write_results  # noqa: E402

from bpo_jax import Config, shuffle  # noqa: E402
from bpo_jax.networks import init_params, make_network, policy_noise  # noqa: E402
from bpo_jax.train import make_trainer  # noqa: E402

UPDATES, STEPS, CALLS, BIG = 200, 2_000, 5_000, 1024


def update_programs(config: Config, updates: int = UPDATES, options: dict | None = None) -> dict:
    """name -> (compiled scan, its arguments, its length): whole update, rollout, learning
    (``updates`` per scan, compiled with the XLA ``options``)."""
    trainer = make_trainer(config)
    hp = config.hparams()
    state = jax.jit(trainer.init)(jax.random.key(0), hp)
    traj, env_state, _ = jax.jit(trainer.collect)(state, hp)

    def whole(s):
        return trainer.update_chunk(s, hp, updates)[1]["loss"].sum()

    def collect(s):
        def body(s, _):
            t, es, key = trainer.collect(s, hp)
            return s.replace(env_state=es, key=key), t.reward.sum()
        return jax.lax.scan(body, s, None, length=updates)[1].sum()

    def learn(s):
        def body(s, _):  # always the same rollout: only the learning is timed
            s, metrics = trainer.learn(s, traj, env_state, s.key, hp)
            return s, metrics["loss"]
        return jax.lax.scan(body, s, None, length=updates)[1].sum()

    return {f"update: {name}": (jax.jit(fn).lower(state).compile(options), (state,), updates)
            for name, fn in (("whole", whole), ("rollout", collect), ("learn", learn))}


def minibatch_programs(config: Config, seeds: int = 10, steps: int = STEPS,
                       options: dict | None = None) -> tuple[dict, dict]:
    """name -> (compiled scan, its arguments, its length) for one 128-sample PPO minibatch, and
    name -> FLOPs of one step (XLA's cost analysis of the step compiled alone)."""
    trainer = make_trainer(config)
    network = make_network(config, trainer.env.action_space, trainer.env.obs_spec)
    keys = jax.random.split(jax.random.key(1), 4)
    n = config.minibatch_size
    obs = jax.random.normal(keys[0], (seeds, n, 4))
    action = jax.random.bernoulli(keys[1], 0.5, (seeds, n)).astype(jnp.int32)
    adv = jax.random.normal(keys[2], (seeds, n))
    params = jax.vmap(lambda k, o: init_params(network, k, o))(jax.random.split(keys[3], seeds), obs)
    one = lambda tree: jax.tree.map(lambda x: x[0], tree)
    optimizer = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(2.5e-4, eps=1e-5))

    def loss(p, obs, action, adv):  # PureJaxRL's PPO loss on a minibatch: clipped surrogate, value MSE, entropy
        dist, (value, _) = network.apply(p, obs)
        ratio = jnp.exp(dist.log_prob(action) - jnp.log(0.5))
        a = (adv - adv.mean()) / (adv.std() + 1e-8)
        surrogate = -jnp.minimum(ratio * a, jnp.clip(ratio, 0.8, 1.2) * a).mean()
        return surrogate + 0.25 * ((value - adv) ** 2).mean() - 0.01 * dist.entropy().mean()

    unravel = ravel_pytree(one(params))[1]

    def forward_step(p, data):
        return loss(p, *data)

    def sgd_step(p, data):
        return jax.tree.map(lambda w, g: w - 1e-4 * g, p, jax.grad(loss)(p, *data))

    def adam_step(c, data):  # the optimiser on every layer's arrays (optax's own tree handling)
        p, s = c
        u, s = optimizer.update(jax.grad(loss)(p, *data), s, p)
        return optax.apply_updates(p, u), s

    def flat_step(c, data):  # the optimiser on the parameters raveled into one vector, as train.py
        f, s = c
        g = jax.grad(lambda f: loss(unravel(f), *data))(f)
        u, s = optimizer.update(g, s, f)
        return f + u, s

    def adam_only_step(c, data):  # the optimiser on a stand-in gradient (the parameters themselves)
        p, s = c
        u, s = optimizer.update(p, s, p)
        return optax.apply_updates(p, u), s

    def looped(step, vmapped=False):
        step = jax.vmap(step) if vmapped else step
        return lambda c, data: jax.lax.scan(lambda c, _: (step(c, data), None), c, None, length=steps)[0]

    def forward_loop(p, data):
        return jax.lax.scan(lambda c, _: (c + forward_step(jax.tree.map(lambda x: x + 1e-9 * c, p), data), None),
                            0.0, None, length=steps)[0]

    p1 = one(params)
    f1, fs = ravel_pytree(p1)[0], jax.vmap(lambda p: ravel_pytree(p)[0])(params)
    d1, ds = (obs[0], action[0], adv[0]), (obs, action, adv)  # one seed's minibatch, every seed's
    cases = {  # name: (step, looped program, carry, minibatch)
        "loss forward": (forward_step, forward_loop, p1, d1),
        "gradient + SGD": (sgd_step, looped(sgd_step), p1, d1),
        "gradient + clip + Adam": (adam_step, looped(adam_step), (p1, optimizer.init(p1)), d1),
        "gradient + clip + Adam, flat vector": (flat_step, looped(flat_step), (f1, optimizer.init(f1)), d1),
        "clip + Adam alone": (adam_only_step, looped(adam_only_step), (p1, optimizer.init(p1)), d1),
        f"{seeds} seeds vmapped: gradient + clip + Adam, flat vector":
            (jax.vmap(flat_step), looped(flat_step, vmapped=True), (fs, jax.vmap(optimizer.init)(fs)), ds),
    }
    programs, flops = {}, {}
    for name, (step, loop, arg, d) in cases.items():
        programs[f"minibatch: {name}"] = (jax.jit(loop).lower(arg, d).compile(options), (arg, d), steps)
        flops[f"minibatch: {name}"] = float(jax.jit(step).lower(arg, d).compile().cost_analysis().get("flops", 0.0))
    return programs, flops


def op_programs(n: int) -> tuple[dict, dict]:
    """name -> (compiled scan, its arguments, its length) for the networks' kernels at n samples,
    and name -> FLOPs of one call for the matmuls."""
    x = jax.random.normal(jax.random.key(2), (n, 64))
    w = jax.random.normal(jax.random.key(3), (64, 64)) * 0.1
    bodies = {
        "op: matmul [n,64]x[64,64]": lambda c: jnp.sum(jnp.dot(x + c, w)),
        "op: tanh [n,64]": lambda c: jnp.sum(jnp.tanh(x + c)),
        "op: two tanh layers": lambda c: jnp.sum(jnp.tanh(jnp.dot(jnp.tanh(jnp.dot(x + c, w)), w))),
        "op: sum [n,64] (a floor)": lambda c: jnp.sum(x + c),
    }
    flops = {"op: matmul [n,64]x[64,64]": 2.0 * n * 64 * 64, "op: two tanh layers": 4.0 * n * 64 * 64}
    out = {}
    for name, body in bodies.items():
        fn = lambda c, body=body: jax.lax.scan(lambda c, _: (c + 1e-9 * body(c), None), c, None, length=CALLS)[0]
        out[name] = (jax.jit(fn).lower(0.0).compile(), (0.0,), CALLS)
    # The core's ceiling: a matmul large enough that dispatch does not count.
    big = jax.random.normal(jax.random.key(4), (BIG, BIG))
    fn = lambda c: jax.lax.scan(lambda c, _: (c + 1e-9 * jnp.sum(jnp.dot(big + c, big)), None), c, None, length=20)[0]
    out[f"op: matmul [{BIG},{BIG}]x[{BIG},{BIG}] (the ceiling)"] = (jax.jit(fn).lower(0.0).compile(), (0.0,), 20)
    flops[f"op: matmul [{BIG},{BIG}]x[{BIG},{BIG}] (the ceiling)"] = 2.0 * BIG**3
    return out, flops


def random_programs(config: Config) -> dict:
    """name -> (compiled scan, its arguments, its length) for the random draws of an update: a
    shuffle of the batch, by ``jax.random.permutation`` and by ``bpo_jax.shuffle`` (train.py);
    one rollout step (policy + env) sampling with a key split per step, and with the noise
    given (train.py draws the whole rollout's noise at once)."""
    trainer = make_trainer(config)
    env, hp = trainer.env, config.hparams()
    state = jax.jit(trainer.init)(jax.random.key(0), hp)
    network = make_network(config, env.action_space, env.obs_spec)
    keys = jax.random.split(jax.random.key(5), CALLS)
    n = config.batch_size

    def shuffles(permutation):
        return lambda ks: jax.lax.scan(lambda c, k: (c + permutation(k, n)[0], None), 0, ks)[0]

    def env_step(es, dist, sample):
        action = sample(dist)
        es = env.step(es, action)
        return es, es.reward.sum() + dist.log_prob(action).sum()

    def steps_with_key(s):
        def body(carry, _):
            es, key = carry
            key, k = jax.random.split(key)
            es, out = env_step(es, network.apply(s.params, es.obs, method="policy"), lambda d: d.sample(k))
            return (es, key), out
        return jax.lax.scan(body, (s.env_state, s.key), None, length=CALLS)[1].sum()

    def steps_with_noise(s):
        def body(es, noise):
            return env_step(es, network.apply(s.params, es.obs, method="policy"), lambda d: d.sample_with(noise))
        return jax.lax.scan(body, s.env_state, policy_noise(env.action_space, s.key, (CALLS, env.num_envs)))[1].sum()

    cases = {f"random: jax.random.permutation({n})": (shuffles(jax.random.permutation), keys),
             f"random: bpo_jax.shuffle.permutation({n})": (shuffles(shuffle.permutation), keys),
             "random: rollout step, key split + sample each step": (steps_with_key, state),
             "random: rollout step, noise drawn for the rollout": (steps_with_noise, state)}
    return {name: (jax.jit(fn).lower(arg).compile(), (arg,), CALLS) for name, (fn, arg) in cases.items()}


def env_programs(config: Config) -> dict:
    """name -> (compiled scan, its arguments, its length) for the env layer's step alone (actions
    alternating 0/1, no policy): ``env.step`` as the CPU runs it (the reset skipped on steps
    where no episode ended); the same with the reset computed on every step and selected per env
    (as GPUs and vmapped seeds run it); the task's own step (``_step_one``) alone; and the key
    split each env made on every step before the env layer drew keys only where used."""
    env = make_trainer(config).env
    state = jax.jit(env.reset)(jax.random.key(0))
    actions = lambda i: jnp.full((env.num_envs,), i % 2, jnp.int32)

    def stepping(step):
        def run(s):
            def body(s, i):
                s = step(s, actions(i))
                return s, s.reward.sum()
            return jax.lax.scan(body, s, jnp.arange(CALLS))[1].sum()
        return run

    def physics(s, a):
        inner, obs, reward, _, _ = jax.vmap(env._step_one)(s.key, s.inner, a)
        return s.replace(inner=inner, obs=obs, reward=reward)

    def key_split(s, a):
        keys = jax.vmap(lambda k: jax.random.split(k, 3))(s.key)
        return s.replace(key=keys[:, 0], reward=jax.random.uniform(keys[0, 1], (env.num_envs,)) + a)

    every_step_reset = copy.copy(env)
    every_step_reset.skip_idle_resets = False

    cases = {"env: step (reset skipped where no episode ended)": env.step,
             "env: step, reset computed every step": every_step_reset.step,
             "env: the task's step alone": physics,
             "env: one 3-way key split per env": key_split}
    return {name: (jax.jit(stepping(fn)).lower(state).compile(), (state,), CALLS) for name, fn in cases.items()}


# XLA:CPU records each kernel it runs in the JAX profiler's trace when compiled with this option.
TRACE_OPTIONS = {"xla_cpu_enable_xprof_traceme": True}
KERNEL_PROGRAMS = {"update": ("update: whole", 20), "minibatch": ("minibatch: gradient + clip + Adam, flat vector", 500)}


def kernel_profile(compiled, args: tuple, length: int, top: int) -> list[dict]:
    """The ``top`` kernels of one call of ``compiled`` (compiled with TRACE_OPTIONS) by total time:
    per kernel, microseconds and launches per step of the program's scan (``length`` steps), its
    output shape and the operation it came from.  The trace costs ~0.4 us a kernel, so small
    kernels read large: compare the large ones."""
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.block_until_ready(compiled(*args))  # warm
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            jax.block_until_ready(compiled(*args))
        (path,) = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
        with gzip.open(path) as f:
            events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    instructions = {}  # thunk name -> (output shape, op_name)
    for line in compiled.as_text().splitlines():
        m = re.match(r"\s+(?:ROOT )?%(\S+) = (\S+) ([\w-]+)\(", line)
        if m and m.group(3) not in ("while", "conditional", "call"):  # containers: their kernels are listed
            op = re.search(r'op_name="([^"]*)"', line)
            instructions[m.group(1)] = (m.group(2), "/".join(op.group(1).split("/")[-3:]) if op else "")
    total, launches = collections.defaultdict(float), collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e.get("name") in instructions:
            total[e["name"]] += e["dur"]
            launches[e["name"]] += 1
    rows = sorted(total, key=total.get, reverse=True)[:top]
    return [{"kernel": k, "us_per_step": round(total[k] / length, 2), "launches_per_step": round(launches[k] / length, 2),
             "shape": instructions[k][0], "op": instructions[k][1]} for k in rows]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved calls per program (median taken)")
    parser.add_argument("--seeds", type=int, default=10, help="seeds in the vmapped minibatch step (default 10)")
    parser.add_argument("--out", type=out_path, default=None, help="also write the results to this JSON file")
    parser.add_argument("--only", default=None, choices=["update", "minibatch", "op", "random", "env"],
                        help="time only this group of programs (default: all)")
    parser.add_argument("--kernels", type=int, default=0, metavar="N",
                        help="also list the N most expensive kernels of the whole update and the minibatch step "
                             "(XLA:CPU's per-kernel trace events; groups update and minibatch)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seeds < 1 or args.kernels < 0:
        parser.error("--rounds and --seeds must be >= 1, --kernels >= 0")

    config = Config(env="gymnax/CartPole-v1", algo="ppo", total_steps=500_000)
    log("compiling...")
    groups = {"update": lambda: (update_programs(config), {}),
              "minibatch": lambda: minibatch_programs(config, args.seeds),
              "op": lambda: op_programs(config.minibatch_size),
              "random": lambda: (random_programs(config), {}),
              "env": lambda: (env_programs(config), {})}
    programs, flops = {}, {}
    for group, build in groups.items():
        if args.only in (None, group):
            built, built_flops = build()
            programs.update(built)
            flops.update(built_flops)
    times: dict[str, list[float]] = {name: [] for name in programs}
    for r in range(args.rounds):
        log(f"round {r + 1}/{args.rounds}")
        for name, (compiled, args_, length) in programs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(*args_))
            times[name].append((time.perf_counter() - t0) / length * 1e6)
    us = {name: round(statistics.median(t), 2) for name, t in times.items()}
    gflops = {name: round(flops[name] / us[name] / 1e3, 2) for name in flops if flops[name] > 0}
    for name, value in us.items():
        rate = f"  {gflops[name]:>6.1f} GFLOP/s" if name in gflops else ""
        log(f"{name:<62} {value:>10,.1f} us{rate}")
    flat_step, n = "minibatch: gradient + clip + Adam, flat vector", config.batch_size
    ratios = {  # name -> (numerator programs, denominator program), each a sum of medians
        "rollout / update": (["update: rollout"], "update: whole"),
        "learn / update": (["update: learn"], "update: whole"),
        "16 minibatch steps / learn": ([flat_step] * 16, "update: learn"),
        "flat vector / per-layer step": ([flat_step], "minibatch: gradient + clip + Adam"),
        f"{args.seeds} seeds vmapped / 1 seed, per step":
            ([f"minibatch: {args.seeds} seeds vmapped: gradient + clip + Adam, flat vector"], flat_step),
        "2 x (two tanh layers) / loss forward": (["op: two tanh layers"] * 2, "minibatch: loss forward"),
        "bpo_jax.shuffle / jax.random.permutation":
            ([f"random: bpo_jax.shuffle.permutation({n})"], f"random: jax.random.permutation({n})"),
        "rollout step, noise given / key per step":
            (["random: rollout step, noise drawn for the rollout"], "random: rollout step, key split + sample each step"),
        "env step, resets skipped / computed every step":
            (["env: step (reset skipped where no episode ended)"], "env: step, reset computed every step"),
        "task's step alone / env step": (["env: the task's step alone"], "env: step (reset skipped where no episode ended)"),
    }
    shares = {name: sum(us[p] for p in num) / us[den] for name, (num, den) in ratios.items()
              if den in us and all(p in us for p in num)}  # the groups timed (--only)
    for name, value in shares.items():
        log(f"{name:<62} {value:>10.2f}")
    kernels = {}
    for group, (name, length) in KERNEL_PROGRAMS.items() if args.kernels else ():
        if args.only not in (None, group):
            continue
        built = (update_programs(config, updates=length, options=TRACE_OPTIONS) if group == "update"
                 else minibatch_programs(config, args.seeds, steps=length, options=TRACE_OPTIONS)[0])
        compiled, args_, _ = built[name]
        kernels[name] = kernel_profile(compiled, args_, length, args.kernels)
        log(f"{name}: the {args.kernels} most expensive kernels, per step (traced: ~0.4 us a kernel added)")
        for row in kernels[name]:
            log(f"  {row['kernel']:<40} {row['us_per_step']:>9,.2f} us {row['launches_per_step']:>6.1f}x  "
                f"{row['shape'][:28]:<28} {row['op'][:60]}")
    write_results({"machine": machine(), "config": "PureJaxRL CartPole: 4 envs x 128 steps, 4 x 4 minibatches of 128",
                   "rounds": args.rounds, "median_microseconds": us,
                   "flops_per_call": flops, "gflops_per_second": gflops, "all_microseconds": times,
                   "ratios": {k: round(v, 3) for k, v in shares.items()}, "kernels": kernels}, args.out, echo=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
