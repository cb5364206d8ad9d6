"""The benchmark scripts refuse bad input at the argument stage: exit 2 with one line naming the
problem, no traceback, before anything compiles."""
import importlib
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ISAAC = "isaaclab/Isaac-Velocity-Rough-Anymal-C-v0"

# A few run as the user runs them (a process each, all at once: each imports JAX, seconds on a
# 2-core machine), for the whole path to the exit: id -> (argv, exit status, text the last
# stderr line must hold).
CASES = {
    "throughput isaaclab env": (["throughput.py", "--envs", ISAAC, "--num-envs", "4", "--updates", "1"], 2,
                                "throughput_isaaclab.py"),
    "grid unsweepable field": (["grid.py", "--field", "init_std"], 2, "lr"),
    "scaling worker, too many devices": (["scaling.py", "--worker", json.dumps(
        {"env": "gymnax/CartPole-v1", "algo": "ppo", "num_envs": 4, "num_steps": 8, "updates": 1, "devices": 64,
         "num_seeds": 1, "separate": False})], 1, "64 devices asked for"),
    # With no other checkout on PYTHONPATH, "before" measured this one (or the installed package).
    "before_after before without another checkout": (["before_after.py", "before"], 2,
                                                     "'before' takes another checkout's"),
}


@pytest.fixture(scope="module")
def outcomes():
    """id -> (exit status, stderr) of every case, the processes started together."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    procs = {name: subprocess.Popen([sys.executable, os.path.join("benchmarks", argv[0]), *argv[1:]], cwd=ROOT,
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, (argv, _, _) in CASES.items()}
    return {name: (p.wait(timeout=120), p.communicate()[1]) for name, p in procs.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_refused_in_one_line(outcomes, name):
    _, status, text = CASES[name]
    code, err = outcomes[name]
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert code == status and text in last and "error" in last, err


# The rest in this process (one JAX import for all; every refusal comes before a script changes
# JAX's settings): id -> (script, argv, text the error line must hold, modules hidden as if not
# installed).
IN_PROCESS = {
    "throughput isaaclab preset": ("throughput", ["--preset", "paper/isaaclab/Anymal-C-rough"],
                                   "throughput_isaaclab.py", ()),
    "throughput projection without mjx": ("throughput", ["--envs", "gymnax/CartPole-v1", "--paper-projection"],
                                          "--paper-projection", ()),
    "throughput projection without bpo": ("throughput", ["--envs", "mjx/Hopper-v4", "--algos", "ppo",
                                                         "--paper-projection"], "--paper-projection", ()),
    "compile_time isaaclab env": ("compile_time", ["--env", ISAAC], "throughput_isaaclab.py", ()),
    "compile_time level 4": ("compile_time", ["--levels", "3,4"], "from 0 to 3", ()),
    "scaling isaaclab env": ("scaling", ["--env", ISAAC], "throughput_isaaclab.py", ()),
    "scaling uneven devices": ("scaling", ["--algos", "ppo", "--envs", "4", "--devices", "1,3", "--device-envs", "4"],
                               "not by 3", ()),
    "grid out is a folder": ("grid", ["--out", "."], "names a folder", ()),
    "vs_purejaxrl out in /proc": ("vs_purejaxrl", ["--purejaxrl", ".", "--out", "/proc/nope/x.json"], "cannot write", ()),
    "isaaclab_parity without torch": ("isaaclab_parity", ["--seeds", "1"], "pip install 'bpo-jax[isaaclab]'", ("torch",)),
    "throughput_isaaclab without rsl_rl": ("throughput_isaaclab", [], "pip install 'bpo-jax[isaaclab]'", ("rsl_rl",)),
}


def run_main(monkeypatch, script: str, argv: list[str], hidden=()):
    """benchmarks/<script>.py's main() as if run with ``argv``; returns its SystemExit."""
    for module in hidden:
        monkeypatch.setitem(sys.modules, module, None)  # `import torch` then raises ModuleNotFoundError
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *argv])
    with pytest.raises(SystemExit) as e:
        importlib.import_module(f"benchmarks.{script}").main()
    return e.value


@pytest.mark.parametrize("name", list(IN_PROCESS))
def test_refused_at_the_argument_stage(monkeypatch, capsys, name):
    script, argv, text, hidden = IN_PROCESS[name]
    code = run_main(monkeypatch, script, argv, hidden).code
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and last.startswith(f"{script}.py: error:") and text in last, last


def test_vs_purejaxrl_refuses_a_folder_that_is_not_purejaxrl(tmp_path, monkeypatch):
    """A folder with PureJaxRL's file names but not its code stopped with an AttributeError."""
    from benchmarks import vs_purejaxrl

    (tmp_path / "purejaxrl").mkdir()
    for name in ("ppo.py", "wrappers.py"):
        (tmp_path / "purejaxrl" / name).write_text("")
    for module in ("ppo", "wrappers"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(SystemExit) as e:
        vs_purejaxrl.import_purejaxrl(str(tmp_path))
    assert str(e.value) == (f"vs_purejaxrl: error: {tmp_path} is not the PureJaxRL this compares with (no "
                            "ppo.make_train, wrappers.LogWrapper, wrappers.FlattenObservationWrapper)")
    for module in ("ppo", "wrappers"):
        sys.modules.pop(module, None)


AB_SIDES = """
import os, shutil, sys
sys.path.insert(0, os.path.join({root!r}, "benchmarks"))
import ab_update
for side in "AB":
    os.makedirs(f"{tmp}/{{side}}/bpo_jax"); os.makedirs(f"{tmp}/{{side}}/benchmarks")
    open(f"{tmp}/{{side}}/bpo_jax/__init__.py", "w").write(f"SIDE = {{side!r}}\\nConfig = dict\\n")
    shutil.copy(os.path.join({root!r}, "benchmarks", "common.py"), f"{tmp}/{{side}}/benchmarks/common.py")
    open(f"{tmp}/{{side}}/benchmarks/where_time_goes.py", "w").write(
        "import common, bpo_jax\\ndef update_programs(config): return bpo_jax.SIDE\\n")
print([ab_update.programs(f"{tmp}/{{side}}", "ppo") for side in "BABA"])
"""


def test_ab_update_measures_each_side_from_its_own_checkout(tmp_path):
    """Each checkout's common.py moves its root behind PYTHONPATH's entries: the root a previous
    call left on sys.path then won, and the two sides were swapped without a word."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", AB_SIDES.format(root=ROOT, tmp=str(tmp_path))], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=120)
    assert out.stdout.strip() == "['B', 'A', 'B', 'A']", out.stdout + out.stderr


def test_isaaclab_help_needs_no_torch(monkeypatch, capsys):
    assert run_main(monkeypatch, "isaaclab_parity", ["--help"], ("torch", "rsl_rl")).code == 0
    assert "--iterations" in capsys.readouterr().out


def test_gpu_check_stops_on_the_cpu(tmp_path):
    """Started from another folder, with a relative OUT_DIR: step 0 refuses the CPU unless
    ALLOW_CPU=1, and the log lands where OUT_DIR says."""
    script = os.path.join(ROOT, "benchmarks", "gpu_check.sh")
    env = {**os.environ, "SKIP": "0 1 2 3 4 5 6", "JAX_PLATFORMS": "cpu"}  # step 0 runs even where SKIP names it
    refused = subprocess.run(["bash", script, "out"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "ALLOW_CPU=1" in refused.stdout, refused.stdout + refused.stderr
    assert (tmp_path / "out" / "log.txt").exists()
    allowed = subprocess.run(["bash", script, "out"], cwd=tmp_path, env={**env, "ALLOW_CPU": "1"}, capture_output=True,
                             text=True, timeout=60)
    assert allowed.returncode == 0 and "all steps passed" in allowed.stdout, allowed.stdout + allowed.stderr
    # An OUT_DIR that cannot be written: every step ran into it, and it ended "all steps passed".
    unwritable = subprocess.run(["bash", script, "/proc/gpu"], env=env, capture_output=True, text=True, timeout=60)
    assert unwritable.returncode == 1 and unwritable.stdout == "", unwritable.stdout
    assert unwritable.stderr.strip() == "error: cannot write to /proc/gpu; give a folder that can be written as OUT_DIR"


def test_grid_disagreeing_returns_exit_1(monkeypatch, capsys):
    """grid.py measured two ways that trained differently: it says so and exits 1."""
    from benchmarks import grid

    monkeypatch.setattr(grid, "disable_compilation_cache", lambda: None)  # this process's JAX left as it is
    monkeypatch.setattr(grid, "measure", lambda *a: {"final_returns_agree": False})
    monkeypatch.setattr(sys, "argv", ["grid.py", "--seeds", "1", "--values", "1e-3,3e-3"])
    assert grid.main() == 1
    assert "final returns of the two ways differ" in capsys.readouterr().err
