"""Data parallelism: the env batch split over devices (forced CPU devices) and over processes
(jax.distributed on localhost, gloo collectives) computes the one-device run."""
import csv
import os
import socket
import subprocess
import sys
import textwrap
from typing import Optional

import numpy as np
import pytest

SPLIT_ACROSS_WORKERS = True  # independent tests, each compiling its own programs (see conftest.py)

# 2 updates of 8 envs x 8 steps; both normalisers on, so their global statistics are checked too.
TINY = dict(env="gymnax/CartPole-v1", algo="bpo", num_envs=8, num_steps=8, num_epochs=1, num_minibatches=2,
            hidden_sizes=(16,), total_steps=8 * 8 * 2, normalize_obs=True, normalize_rewards=True, seed=5)
TINY_FLAGS = ["--env", "gymnax/CartPole-v1", "--algo", "bpo", "--num-envs", "8", "--num-steps", "8",
              "--num-epochs", "1", "--num-minibatches", "2", "--hidden-sizes", "16", "--total-steps", "128",
              "--normalize-obs", "--normalize-rewards", "--seed", "5", "--seeds", "1", "--chunk-updates", "2",
              "--quiet", "--no-tensorboard", "--no-compile-cache", "--fast-compile"]
TOL = dict(rtol=1e-5, atol=1e-6)


def _env(devices: Optional[int]) -> dict:
    """This environment on the CPU with ``devices`` forced host devices (None: no count chosen,
    so the CLI picks its own)."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f]
    if devices is not None:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    env = {**os.environ, "XLA_FLAGS": " ".join(flags), "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_NUM_CPU_DEVICES", None)  # it would override XLA_FLAGS
    return env


def _python(code: str, devices: int, timeout=300):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=_env(devices), timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.extended  # the default suite splits envs over 4 devices in test_two_processes_train_together_like_one
def test_four_devices_compute_the_one_device_run(tmp_path):
    """One program per device count, in one process with 4 forced CPU devices: same params
    and metrics, and every env-state leaf (incl. per-env keys) really split 4 ways."""
    out = _python(f"""
        import jax, numpy as np
        from bpo_jax import Config, runner
        cfg = Config(**{TINY!r})
        r4 = runner.run(cfg, num_seeds=2, reports=1, split="envs", compiler_options=runner.FAST_COMPILE)
        r1 = runner.run(cfg, num_seeds=2, reports=1, devices=jax.devices()[:1], compiler_options=runner.FAST_COMPILE)
        assert len(r4.state.env_state.obs.sharding.device_set) == 4
        for leaf in jax.tree.leaves(r4.state.env_state.replace(reset_pool=None)):
            shape = leaf.sharding.shard_shape(leaf.shape)
            assert shape[:2] == (2, 2), (leaf.shape, shape)  # seeds whole, 8 envs / 4 devices
            assert [s.data.shape[:2] for s in leaf.addressable_shards] == [(2, 2)] * 4
        assert r4.state.params["params"]["actor"]["Dense_0"]["kernel"].sharding.is_fully_replicated
        for a, b in zip(jax.tree.leaves(r4.state.params), jax.tree.leaves(r1.state.params)):
            np.testing.assert_allclose(a, b, rtol={TOL['rtol']}, atol={TOL['atol']})
        for k in r1.metrics:
            np.testing.assert_allclose(r4.metrics[k], r1.metrics[k], rtol={TOL['rtol']}, atol={TOL['atol']}, err_msg=k)
        try:
            runner.run(cfg.replace(num_envs=6, total_steps=96), reports=1, split="envs",
                       compiler_options=runner.FAST_COMPILE)
        except Exception as e:
            print("ERR", type(e).__name__, e)
        print("OK")
    """, devices=4)
    assert "OK" in out
    assert "ERR ConfigError `num_envs` 6 must be divisible by the number of devices (4)" in out


@pytest.mark.slow
@pytest.mark.extended  # the default suite trains seeds split over 2 devices in test_train_puts_seeds_on_every_core_*
def test_seeds_split_over_devices_compute_the_one_device_run():
    """split="seeds" on 2 forced CPU devices: every state leaf split along its seed axis, one
    seed per device, and the same numbers as the one-device run; a seed count that does not
    divide over the devices is refused before anything compiles."""
    out = _python(f"""
        import jax, numpy as np
        from bpo_jax import Config, runner
        from bpo_jax.config import ConfigError
        cfg = Config(**{TINY!r})
        r2 = runner.run(cfg, num_seeds=2, reports=1, split="seeds", compiler_options=runner.FAST_COMPILE)
        r1 = runner.run(cfg, num_seeds=2, reports=1, devices=jax.devices()[:1], compiler_options=runner.FAST_COMPILE)
        for leaf in jax.tree.leaves(r2.state.replace(env_state=r2.state.env_state.replace(reset_pool=None))):
            if leaf.ndim:
                assert leaf.sharding.shard_shape(leaf.shape)[0] == 1, (leaf.shape, leaf.sharding)
        for a, b in zip(jax.tree.leaves(r2.state.params), jax.tree.leaves(r1.state.params)):
            np.testing.assert_allclose(a, b, rtol={TOL['rtol']}, atol={TOL['atol']})
        for k in r1.metrics:
            np.testing.assert_allclose(r2.metrics[k], r1.metrics[k], rtol={TOL['rtol']}, atol={TOL['atol']}, err_msg=k)
        try:
            runner.run(cfg, num_seeds=3, reports=1, split="seeds")
        except ConfigError as e:
            print("ERR", e)
        try:
            runner.make_mesh(jax.devices(), 3, 1, "envs")
        except ConfigError as e:
            print("ERR2", e)
        print("OK")
    """, devices=2)
    assert "OK" in out
    assert "ERR `num_seeds` 3 must be divisible by the number of devices (2) to split the seeds over them; " \
           "change it, or give `split` envs" in out
    # one seed cannot be split either: no `split` seeds offered
    assert "ERR2 `num_envs` 3 must be divisible by the number of devices (2) to split the envs over them; " \
           "change it\n" in out


@pytest.mark.extended  # 16 s; the default suite trains 3 grid members split over devices just below
def test_variants_split_over_devices_like_seeds_and_fit_the_devices():
    """Two configurations x one seed as one program on 2 forced CPU devices: one member per
    device, each member the one-device run of its configuration.  Three members of one env each
    divide over neither the seeds nor the envs: they run on one device, not fail."""
    out = _python(f"""
        import jax, numpy as np
        from bpo_jax import Config, runner
        cfg = Config(**{TINY!r})
        grid = [cfg, cfg.replace(lr=1e-3, bpo_lambda=0.1)]
        r2 = runner.run(cfg, num_seeds=1, reports=1, variants=grid, compiler_options=runner.FAST_COMPILE)
        assert r2.num_seeds == 2 and len(r2.state.obs_stats.mean.sharding.device_set) == 2
        for i, c in enumerate(grid):
            alone = runner.run(c, num_seeds=1, reports=1, devices=jax.devices()[:1], compiler_options=runner.FAST_COMPILE)
            for a, b in zip(jax.tree.leaves(r2.state.params), jax.tree.leaves(alone.state.params)):
                np.testing.assert_allclose(np.asarray(a)[i:i + 1], b, rtol={TOL['rtol']}, atol={TOL['atol']})
        one_env = cfg.replace(num_envs=1, num_minibatches=1)
        r3 = runner.run(one_env, num_seeds=1, reports=1, compiler_options=runner.FAST_COMPILE,
                        variants=[one_env.replace(lr=v) for v in (1e-4, 3e-4, 1e-3)])
        assert r3.num_seeds == 3 and len(r3.state.obs_stats.mean.sharding.device_set) == 1
        print("OK")
    """, devices=2)
    assert "OK" in out


def test_runs_that_divide_over_no_device_count_alone_start_and_train_together(tmp_path):
    """On 3 devices (the CLI's choice for 3 members on 2 cores), one seed of 4 envs divides over
    neither: each run still starts (on the devices that fit it), and the 3 train as one program,
    a member a device."""
    out = _python(f"""
        import jax
        from bpo_jax import Config
        from bpo_jax.session import RunOptions, RunSession, run_together
        cfg = Config(**{TINY!r}).replace(num_envs=4)
        opts = RunOptions(progress=False, tensorboard=False, checkpoints=False, fast_compile=True, compile_cache=False)
        runs = [RunSession.start(cfg.replace(lr=v), 1, f"{tmp_path}/run{{i}}", options=opts)
                for i, v in enumerate((1e-4, 3e-4, 1e-3))]
        done = run_together(runs)
        assert [d.summary["num_seeds"] for d in done] == [1, 1, 1]
        print("OK")
    """, devices=3)
    assert "OK" in out


@pytest.mark.parametrize("seeds, cores, devices", [
    (1, 2, 1), (2, 2, 2), (4, 2, 2), (10, 2, 2), (3, 2, 3), (7, 2, 7), (10, 4, 5), (6, 4, 6), (12, 5, 6),
    (10, 16, 10), (2, 1, 1)])
def test_cpu_devices_for_seeds(seeds, cores, devices):
    """The smallest divisor of the seed count that is at least the core count (or the seed count)."""
    from bpo_jax import runner

    assert runner.cpu_devices_for(seeds, cores) == devices
    assert seeds % devices == 0 and devices >= min(cores, seeds)
    assert not any(seeds % d == 0 for d in range(min(cores, seeds), devices))


# A machine with two cores, whatever this one has.
TWO_CORES = "import os; os.sched_getaffinity = lambda pid: {0, 1}\n"


def test_cpu_cores_become_devices_before_the_backends_start():
    """use_cpu_cores: nothing for one seed; 10 seeds on 2 cores -> 2 CPU devices, and an auto
    split then splits seeds that divide over them (10) and the env batch otherwise (3); once
    the backends run it changes nothing.  A device count the user chose is left alone."""
    code = TWO_CORES + textwrap.dedent("""
        from bpo_jax import runner
        import jax
        print(runner.use_cpu_cores(1), runner.use_cpu_cores(10), len(jax.devices()),
              runner.resolve_split("auto", 10), runner.resolve_split("auto", 3), runner.resolve_split("envs", 10),
              runner.use_cpu_cores(10))
    """)
    run = lambda env: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                     env=env, timeout=300)
    proc = run(_env(None))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["None", "2", "2", "seeds", "envs", "envs", "None"]
    proc = run(_env(3))  # the user's XLA_FLAGS count stands: 3 devices, seeds that do not divide get envs
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["None", "None", "3", "envs", "seeds", "envs", "None"]


@pytest.mark.slow
def test_train_puts_seeds_on_every_core_with_the_one_device_numbers(tmp_path):
    """bpo-jax train with several seeds on a 2-core CPU: the seeds split over 2 CPU devices, as
    its first line says, and the same run as --split envs on one device (float rounding)."""
    at = TINY_FLAGS.index("--seeds") + 1
    flags = TINY_FLAGS[:at] + ["2"] + TINY_FLAGS[at + 1:]
    code = TWO_CORES + "import sys\nfrom bpo_jax import cli\nsys.exit(cli.main(sys.argv[1:]))\n"
    procs = {split: subprocess.Popen([sys.executable, "-c", code, "train", *flags, "--split", split,
                                      "--out", str(tmp_path / split)], stderr=subprocess.PIPE, text=True, env=_env(None))
             for split in ("auto", "envs")}  # side by side: each process starts alone for seconds
    runs = {}
    for split, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        runs[split] = (err, list(csv.DictReader(open(tmp_path / split / "metrics.csv"))))
    assert "2 seed(s)" in runs["auto"][0] and "seeds split over 2 CPU devices" in runs["auto"][0]
    assert "split over" not in runs["envs"][0]
    auto, envs = runs["auto"][1], runs["envs"][1]
    assert len(auto) == len(envs) == 4
    for a, b in zip(auto, envs):
        for column in a:
            if column != "steps_per_second":  # empty cells: no episode ended in that update
                value = lambda cell: float(cell or "nan")
                np.testing.assert_allclose(value(a[column]), value(b[column]), **TOL, err_msg=column)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_together_like_one(tmp_path):
    """Two CLI processes x 2 CPU devices (gloo collectives) = one 4-device program; process
    0 alone writes, and its final checkpoint equals the one-process, one-device run."""
    import jax

    from bpo_jax import Config, checkpoint, runner

    port, out = _free_port(), tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, "-m", "bpo_jax", "train", *TINY_FLAGS, "--out", str(out),
                               "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(2))
             for i in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    assert "wrote" in results[0][0] and "wrote" not in results[1][0]  # only process 0 writes (gloo prints too)

    _, ckpt = checkpoint.locate(str(out))
    template = runner.state_template(checkpoint.read_config(ckpt), 1)
    state, metrics, _, _ = checkpoint.restore(ckpt, template)
    ref = runner.run(Config(**TINY), num_seeds=1, reports=1, compiler_options=runner.FAST_COMPILE)  # one CPU device
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref.state.params)):
        np.testing.assert_allclose(a, b, **TOL)
    for k in ref.metrics:
        np.testing.assert_allclose(metrics[k], ref.metrics[k], **TOL, err_msg=k)
    np.testing.assert_array_equal(state.env_state.obs.shape, ref.state.env_state.obs.shape)


@pytest.mark.extended
def test_a_resumed_env_split_keeps_its_devices_and_a_user_set_count_is_noted(tmp_path):
    """A run whose env batch was split over 2 CPU devices resumed on one (its device count was
    not restored) and so on other programs, without a word; with a device count the user set
    that cannot give its programs, the resume now says so, naming what to unset."""
    flags = [*TINY_FLAGS, "--no-anneal-lr"]
    flags[flags.index("--seeds") + 1] = "3"
    cli = [sys.executable, "-m", "bpo_jax", "train"]

    def train(args, devices):
        proc = subprocess.run([*cli, *args], capture_output=True, text=True, env=_env(devices), timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stderr

    train([*flags, "--out", str(tmp_path / "whole"), "--total-steps", "256"], 2)
    first = train([*flags, "--out", str(tmp_path / "run")], 2)
    assert "env batch split over 2 CPU devices" in first
    again = train(["--resume", str(tmp_path / "run"), "--total-steps", "256", "--quiet", "--fast-compile"], None)
    assert "env batch split over 2 CPU devices; resuming at update 2" in again and "note:" not in again
    rows = lambda name: list(csv.DictReader(open(tmp_path / name / "metrics.csv")))
    strip = lambda rs: [{k: v for k, v in r.items() if k != "steps_per_second"} for r in rs]
    assert strip(rows("run")) == strip(rows("whole"))  # bit for bit
    # With --split envs given, the count is restored too (it was left at one device).
    again = train(["--resume", str(tmp_path / "run"), "--total-steps", "320", "--quiet", "--fast-compile", "--split",
                   "envs"], None)
    assert "env batch split over 2 CPU devices; resuming at update 4" in again and "note:" not in again
    # A one-device run resumed where the user set two devices is noted too (it said nothing).
    train([*flags, "--out", str(tmp_path / "one"), "--seeds", "1"], 1)
    grown = train(["--resume", str(tmp_path / "one"), "--total-steps", "256", "--quiet", "--fast-compile"], 2)
    assert "note: this run trained with its one device and resumes with its env batch split over 2 devices" in grown
    moved = train(["--resume", str(tmp_path / "run"), "--total-steps", "384", "--quiet", "--fast-compile"], 1)
    assert ("note: this run trained with its env batch split over 2 devices and resumes with its one device "
            "(XLA_FLAGS' --xla_force_host_platform_device_count or jax_num_cpu_devices ($JAX_NUM_CPU_DEVICES) sets "
            "this process's count: unset it to resume bit for bit): it goes on to float rounding, not bit for bit") \
        in moved


def test_joining_that_cannot_happen_is_one_line_not_a_hang_or_an_abort(tmp_path, monkeypatch, capsys):
    """Process 0 of 2 alone waited 341 s in silence, then JAX's coordination service aborted it
    with a C++ stack trace (exit 134); an unknown host hung; $JAX_COORDINATOR_ADDRESS without a
    cluster said only "Number of processes must be defined"."""
    import time

    from bpo_jax import cli

    def start(extra, env):  # both side by side: each process starts alone for seconds
        return subprocess.Popen([sys.executable, "-m", "bpo_jax", "train", *TINY_FLAGS, "--out", str(tmp_path / "run"),
                                 *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    began = time.perf_counter()
    alone = start(["--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2", "--process-id", "0",
                   "--join-timeout", "3"], _env(1))
    no_cluster = start([], {**_env(1), "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}"})
    _, err = alone.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert alone.returncode == 2 and time.perf_counter() - began < 60, err[-3000:]
    assert lines[0].startswith("joining the run at 127.0.0.1:") and "as process 0 of 2; waiting up to 3 s" in lines[0]
    assert lines[-1].startswith("bpo-jax: error: no run formed at 127.0.0.1:") and lines[-1].endswith(
        " within 3 s: process 0 must be able to listen at that address and every other process reach it: start all 2 "
        "with the same --coordinator and --num-processes and their own --process-id (or give a longer "
        "--join-timeout)") and "Traceback" not in err
    _, err = no_cluster.communicate(timeout=120)
    assert no_cluster.returncode == 2 and err.strip().splitlines()[-1].endswith(
        "but JAX detected no cluster (SLURM, Open MPI, ...) to take the process count and index from: give "
        "--coordinator, --num-processes and --process-id, or unset it"), err[-3000:]
    assert not (tmp_path / "run").exists()

    def unknown(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)
    assert cli.main(["train", "--out", str(tmp_path / "run"), "--coordinator", "nosuchhost:1234",
                     "--num-processes", "2", "--process-id", "1"]) == 2
    assert capsys.readouterr().err == ("bpo-jax: error: --coordinator host 'nosuchhost' does not resolve (Name or "
                                       "service not known); give process 0's address\n")
    assert cli.main(["train", "--coordinator", "localhost:1", "--num-processes", "1", "--process-id", "0",
                     "--join-timeout", "0"]) == 2
    assert capsys.readouterr().err == "bpo-jax: error: --join-timeout must be >= 1 second, got 0\n"
    assert cli.main(["train", "--coordinator", "::1:1234", "--num-processes", "2", "--process-id", "1"]) == 2
    assert "[::1]:1234 for IPv6), got '::1:1234'" in capsys.readouterr().err
