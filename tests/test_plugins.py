"""Plug-ins (bpo_jax.plugins): loading by module name, by file and as installed entry points;
one-line errors; the record a checkpoint keeps of them, and the CLI's --plugin."""
import json
import os
import sys
import textwrap

import pytest

from bpo_jax import algorithms, cli, plugins
from bpo_jax.envs import registry

# A plug-in with an algorithm and a suite, each named after the module so that tests loading
# several do not clash.  {name} is the module's name.
PLUGIN = '''
import jax.numpy as jnp

from bpo_jax import algorithms, envs


class Chain(envs.FunctionalEnv):
    time_limit = 20

    def __init__(self, num_envs):
        super().__init__("{name}/Chain", num_envs, envs.ObsSpec((2,)), envs.Discrete(2))

    def _reset_one(self, key):
        return (jnp.int32(0), jnp.int32(0)), jnp.zeros(2)

    def _step_one(self, key, inner, action):
        pos, t = inner
        pos, t = jnp.clip(pos + 2 * action - 1, 0, 4), t + 1
        obs = jnp.stack([pos / 4, t / 20]).astype(jnp.float32)
        return (pos, t), obs, (pos == 4).astype(jnp.float32), pos == 4, t >= 20


class VPG(algorithms.Algorithm):
    name, description = "{name}_vpg", "vanilla policy gradient"
    defaults = {{"lr": 1e-3, "ent_coef": 0.0, "vf_coef": 0.5, "value_clip": 0.0}}

    def loss(self, config, hp, x):
        return -(x.ratio * x.batch.advantage).mean(), 0.0, {{}}


envs.register_suite("{name}", lambda: ["Chain"], lambda name, num_envs, **kw: Chain(num_envs), "a chain")
algorithms.register(VPG())
'''


@pytest.fixture
def clean(monkeypatch):
    """Registries, loaded modules, sys.path and the plug-in module's memory as they were."""
    saved = dict(algorithms._REGISTRY), dict(registry._SUITES), set(sys.modules), list(sys.path)
    monkeypatch.setattr(plugins, "_FILES", {})
    monkeypatch.setattr(plugins, "_installed", None)
    yield
    algorithms._REGISTRY.clear(), algorithms._REGISTRY.update(saved[0])
    registry._SUITES.clear(), registry._SUITES.update(saved[1])
    for name in set(sys.modules) - saved[2]:
        del sys.modules[name]
    sys.path[:] = saved[3]


def _write(folder, name, text=None):
    path = folder / f"{name}.py"
    path.write_text(PLUGIN.format(name=name) if text is None else textwrap.dedent(text))
    return path


def test_a_file_plugin_registers_its_names_once(tmp_path, clean):
    path = _write(tmp_path, "plug_a")
    loaded = plugins.load(str(path))
    assert (loaded.module, loaded.algorithms, loaded.suites) == ("plug_a", ("plug_a_vpg",), ("plug_a",))
    assert registry.make("plug_a/Chain", 3).num_envs == 3
    assert plugins.load(str(path)).algorithms == ()  # loaded already: nothing runs again
    assert str(tmp_path) in sys.path  # it may import the modules beside it


def test_a_module_plugin_is_found_on_the_path(tmp_path, clean, monkeypatch):
    _write(tmp_path, "plug_b")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert plugins.load("plug_b").suites == ("plug_b",)


@pytest.mark.parametrize("spec, text, message", [
    ("nosuch_mod", None, "plug-in nosuch_mod: no module named 'nosuch_mod' on the Python path (add its folder"),
    ("{tmp}/missing.py", None, "missing.py: no such file"),
    ("{tmp}/notes.txt", "", "a plug-in file is a Python file ending in .py"),
    ("{tmp}/my-plugin.py", "", "'my-plugin' is not a Python module name; rename the file"),
    ("{tmp}/json.py", "", "a module named 'json' is already imported"),
    ("{tmp}/boom.py", "import os\nraise RuntimeError('no licence')\n", "boom.py failed while loading: {tmp}/boom.py:2: "
                                                                       "RuntimeError: no licence"),
    ("{tmp}/takeover.py", "from bpo_jax import algorithms\nalgorithms.register(algorithms.PPO())\n",
     "takeover.py:2: ValueError: register: algorithm 'ppo' is already registered"),
])
def test_a_plugin_that_cannot_load_is_one_line(tmp_path, clean, spec, text, message):
    spec = spec.format(tmp=tmp_path)
    if text is not None:
        (tmp_path / os.path.basename(spec)).write_text(text)
    with pytest.raises(plugins.PluginError) as e:
        plugins.load(spec)
    assert message.format(tmp=tmp_path) in str(e.value) and "\n" not in str(e.value)
    assert os.path.basename(spec)[:-3] not in sys.modules or spec.endswith("json.py")


def test_a_module_name_for_a_file_here_suggests_its_path(tmp_path, clean, monkeypatch):
    _write(tmp_path, "plug_c")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(plugins.PluginError, match=r"give its path: --plugin \./plug_c\.py$"):
        plugins.load("plug_c")


def test_a_plugin_that_failed_can_be_loaded_once_mended(tmp_path, clean):
    path = tmp_path / "plug_d.py"
    path.write_text("raise ImportError('half written')\n")
    with pytest.raises(plugins.PluginError, match="ImportError: half written"):
        plugins.load(str(path))
    _write(tmp_path, "plug_d")
    assert plugins.load(str(path)).algorithms == ("plug_d_vpg",)


def _install(site, package, entry_points):
    """A package's metadata as pip writes it: ``entry_points`` is the [bpo_jax.plugins] body."""
    info = site / f"{package.replace('-', '_')}-1.0.dist-info"  # as pip names it
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[bpo_jax.plugins]\n{entry_points}\n")


def test_installed_plugins_load_by_entry_point(tmp_path, clean, monkeypatch):
    _write(tmp_path, "plug_e")
    (tmp_path / "plug_f.py").write_text(PLUGIN.replace("\nenvs.register_suite", "\ndef setup():\n    envs.register_suite")
                                        .replace("\nalgorithms.register(", "\n    algorithms.register(")
                                        .format(name="plug_f"))
    _install(tmp_path, "plug-e", "e = plug_e")
    _install(tmp_path, "plug-f", "f = plug_f:setup")  # a function that registers, called
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = plugins.load_installed()
    assert [(p.module, p.algorithms) for p in loaded] == [("plug_e", ("plug_e_vpg",)), ("plug_f", ("plug_f_vpg",))]
    assert plugins.load_installed() is loaded  # once per process


def test_installed_plugins_can_be_switched_off_and_a_broken_one_is_named(tmp_path, clean, monkeypatch):
    (tmp_path / "plug_g.py").write_text("import not_installed_dependency\n")
    _install(tmp_path, "plug-g", "g = plug_g")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugins.AUTOLOAD_OFF, "1")
    assert plugins.load_installed() == []
    monkeypatch.setattr(plugins, "_installed", None)
    monkeypatch.delenv(plugins.AUTOLOAD_OFF)
    with pytest.raises(plugins.PluginError) as e:
        plugins.load_installed()
    assert str(e.value) == (f"installed plug-in 'g' (entry point 'plug_g' of plug-g) failed while loading: "
                            f"{tmp_path}/plug_g.py:1: ModuleNotFoundError: No module named 'not_installed_dependency'; "
                            f"set {plugins.AUTOLOAD_OFF}=1 to start without installed plug-ins")


def test_origins_name_what_to_load_again(tmp_path, clean):
    from bpo_jax import Config

    plugins.load(str(_write(tmp_path, "plug_h")))
    assert plugins.origins(Config()) == {}  # the built-ins need nothing
    mixed = plugins.origins(Config(env="plug_h/Chain", algo="ppo"))
    assert mixed == {"suite": {"name": "plug_h", "module": "plug_h", "load": str(tmp_path / "plug_h.py")}}
    how = plugins.how_to_load(mixed["suite"], "register it")
    assert how == f"it came from the plug-in {tmp_path}/plug_h.py: import it before loading the run " \
                  f"(bpo-jax: --plugin {tmp_path}/plug_h.py)"
    assert plugins.how_to_load(None, "register it") == "register it"  # a checkpoint without the record


def test_the_readmes_plugin_command_trains_and_a_run_names_its_plugin_where_it_is_missing(tmp_path, clean, capsys,
                                                                                             monkeypatch):
    """The README's `bpo-jax train --plugin ./chain.py` as written (its plug-in block less the
    run, saved as chain.py); the run's checkpoint records the file, so that evaluating it in a
    process without the plug-in names what to load."""
    import pathlib
    import re
    import shlex

    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "algorithms.register(VPG())" in b)
    command = re.search(r"^ +bpo-jax (train --plugin ./chain.py .*)$", readme, re.M).group(1)
    (tmp_path / "chain.py").write_text("\n".join(block.strip().splitlines()[:-3]) + "\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(shlex.split(command) + ["--quiet", "--no-tensorboard", "--seeds", "1"]) == 0
    run = next((tmp_path / "runs").iterdir())
    path = str(tmp_path / "chain.py")
    assert json.loads((run / "summary.json").read_text())["final_episode_return"] == 1.0
    meta = json.loads(next((run / "checkpoints").iterdir()).joinpath("metadata.json").read_text())
    assert meta["plugins"] == {kind: {"name": name, "module": "chain", "load": path}
                               for kind, name in (("algorithm", "vpg"), ("suite", "toy"))}
    # As in a fresh process: the registrations and the module are gone.
    del algorithms._REGISTRY["vpg"], registry._SUITES["toy"], sys.modules["chain"]
    plugins._FILES.clear()
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(run), "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"'vpg', which is not registered in this process: it came from the plug-in {path}: "
                        f"import it before loading the run (bpo-jax: --plugin {path})") and "\n" not in err
    assert cli.main(["eval", "--checkpoint", str(run), "--episodes", "1", "--plugin", "chain.py"]) == 0


@pytest.mark.parametrize("argv, message", [
    (["envs", "--plugin", "nosuch_mod"], "bpo-jax: error: plug-in nosuch_mod: no module named 'nosuch_mod'"),
    (["train", "--algo", "nosuch_algo"], "valid: bpo, ppo (a plug-in's: import the module that registers it first; "
                                         "bpo-jax: --plugin MODULE)"),
    (["train", "--env", "nosuch_suite/X"], "(a plug-in's: import the module that registers it first; bpo-jax: "
                                           "--plugin MODULE)"),
])
def test_cli_plugin_errors_are_one_line(clean, capsys, argv, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
