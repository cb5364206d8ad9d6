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
    monkeypatch.setattr(plugins, "_ORIGINS", {})
    monkeypatch.setattr(plugins, "_installed", None)
    monkeypatch.setattr(plugins, "_installed_done", {})
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
    assert os.path.splitext(os.path.basename(spec))[0] not in sys.modules or spec.endswith("json.py")


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


def test_a_sweep_called_again_without_its_plugin_names_it(tmp_path, clean, capsys):
    """train and eval named the plug-in file a run needs; a sweep gave only the generic hint."""
    from bpo_jax import sweep
    from bpo_jax.session import RunOptions

    path = _write(tmp_path, "plug_s")
    plugins.load(str(path))
    out = tmp_path / "sweep"
    plan = sweep.plan("smoke", algos="plug_s_vpg", num_seeds=1, total_steps=2048, tasks="CartPole-v1")
    sweep._claim(plan, str(out), RunOptions())  # its sweep.json, as the sweep's first call writes it
    del algorithms._REGISTRY["plug_s_vpg"]  # a later process, without --plugin
    assert cli.main(["sweep", "--suite", "smoke", "--tasks", "CartPole-v1", "--algos", "plug_s_vpg", "--seeds", "1",
                     "--total-steps", "2048", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"bpo-jax: error: algorithm 'plug_s_vpg' of the sweep in {out} is not registered: it came from the plug-in "
        f"{path}: import it before loading the run (bpo-jax: --plugin {path})")


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
    plugins._FILES.clear(), plugins._ORIGINS.clear()
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


# The QA pass on --plugin: each test below failed before its fix.

def _cli(capsys, argv):
    """cli.main(argv) -> (exit code, stdout, stderr); a KeyboardInterrupt that escapes fails the
    test instead of stopping pytest."""
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped cli.main")
    out, err = capsys.readouterr()
    return code, out, err.strip()


@pytest.mark.parametrize("body, said", [("import sys\nsys.exit('bye')\n", "2: it called sys.exit('bye')"),
                                        ("import sys\nsys.exit(0)\n", "2: it called sys.exit(0)"),
                                        ("raise SystemExit\n", "1: it called sys.exit()")])
def test_a_plugin_calling_sys_exit_is_an_error_not_a_silent_exit(tmp_path, clean, capsys, body, said):
    """It ended the command at once, exit status 0 (or 1), with nothing said and nothing done."""
    path = tmp_path / "quits.py"
    path.write_text(body)
    code, out, err = _cli(capsys, ["envs", "--plugin", str(path)])
    assert (code, out, err) == (2, "", f"bpo-jax: error: plug-in {path} failed while loading: {path}:{said}")
    assert "quits" not in sys.modules


@pytest.mark.parametrize("flag", ["--plugin", "--plug"])
def test_a_keyboard_interrupt_in_a_plugin_says_so(tmp_path, clean, capsys, flag):
    """A KeyboardInterrupt raised while a plug-in loaded left the command silently (exit 130, no
    message); with an abbreviation of --plugin (loaded in the parse) too."""
    path = tmp_path / "stops.py"
    path.write_text("raise KeyboardInterrupt\n")
    code, out, err = _cli(capsys, ["envs", flag, str(path)])
    assert (code, err) == (130, f"bpo-jax: error: interrupted while loading the plug-in {path}; nothing was run or "
                                "written")


def test_ctrl_c_stops_a_plugin_import_at_once(tmp_path, clean, capsys):
    """A Ctrl-C while a plug-in imported (a slow or hung one) waited for it to finish."""
    import signal

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        pytest.skip("SIGINT is ignored in this process")
    path = tmp_path / "slow.py"
    path.write_text("import os, signal, time\n"
                    "os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, while the import has 2 seconds to go\n"
                    "end = time.monotonic() + 2\n"
                    "while time.monotonic() < end:\n"
                    "    time.sleep(0.01)\n"
                    f"open({str(tmp_path / 'finished')!r}, 'w').close()\n")
    code, out, err = _cli(capsys, ["envs", "--plugin", str(path)])
    assert (code, err) == (130, f"bpo-jax: error: interrupted while loading the plug-in {path}; nothing was run or "
                                "written")
    assert not (tmp_path / "finished").exists()


@pytest.mark.parametrize("flag", ["--plug", "--plugi", "--pl"])
def test_an_abbreviated_plugin_flag_is_loaded_too(tmp_path, clean, capsys, flag):
    """argparse took `--plug FILE` as --plugin, but the plug-in was never imported: 'unknown suite'."""
    path = _write(tmp_path, "plug_abbr")
    code, out, err = _cli(capsys, ["envs", "--suite", "plug_abbr", flag, str(path)])
    assert (code, out, err) == (0, "plug_abbr/Chain\n", "")
    code, out, err = _cli(capsys, ["envs", f"{flag}=nosuch_mod"])
    assert code == 2 and err.startswith("bpo-jax: error: plug-in nosuch_mod: no module named") and "\n" not in err


def test_only_the_commands_that_take_plugin_have_an_option_starting_with_pl():
    """What _load_plugins assumes of the parser: --plugin where PLUGIN_COMMANDS say, and no other
    option that an abbreviation of it could stand for."""
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, command in commands.items():
        strings = [s for a in command._actions for s in a.option_strings if s.startswith("--pl")]
        assert strings == (["--plugin"] if name in cli.PLUGIN_COMMANDS else []), name


@pytest.mark.parametrize("argv, message", [
    (["plot", "{tmp}"], "plot takes no --plugin: it reads the runs' saved files and needs no plug-in; drop it"),
    (["report", "{tmp}", "--out", "{tmp}/r.md"], "report takes no --plugin"),
    (["llm"], "llm takes no --plugin: it trains its own algorithms (gbpo, grpo)"),
    (["nosuch_command"], "invalid choice: 'nosuch_command'"),
])
def test_a_command_without_plugin_does_not_import_it(tmp_path, clean, capsys, argv, message):
    """plot, report and llm imported the plug-in (running its code) and then refused --plugin as
    an unrecognized argument, or failed on a plug-in they had no use for."""
    marker = tmp_path / "imported"
    path = tmp_path / "plug_side.py"
    path.write_text(f"open({str(marker)!r}, 'w').close()\n")
    code, out, err = _cli(capsys, [a.format(tmp=tmp_path) for a in argv] + ["--plugin", str(path)])
    assert code == 2 and message in err and "\n" not in err
    assert not marker.exists()
    code, out, err = _cli(capsys, [a.format(tmp=tmp_path) for a in argv] + ["--plugin", "nosuch_mod"])
    assert code == 2 and message in err


def test_help_is_shown_whatever_the_plugins(tmp_path, clean, capsys, monkeypatch):
    """--help failed on a broken --plugin, or on a broken installed plug-in, which it does not need."""
    (tmp_path / "plug_broken.py").write_text("raise RuntimeError('broken')\n")
    _install(tmp_path, "plug-broken", "b = plug_broken")
    monkeypatch.syspath_prepend(str(tmp_path))
    for argv in (["envs", "--help", "--plugin", "nosuch_mod"], ["envs", "--plugin", "nosuch_mod", "--help"],
                 ["train", "--plug", "nosuch_mod", "--help"], ["train", "--help"]):
        code, out, err = _cli(capsys, argv)  # the failure told in one line, the help shown after it
        assert code == 0 and "--plugin MODULE" in out, (argv, err)
        assert err.splitlines() == [err.splitlines()[0], "bpo-jax: the help below is without the plug-ins (see the "
                                    "error above)"] and "plug-broken" in err.splitlines()[0], err
    code, out, err = _cli(capsys, ["--help"])
    assert code == 0 and "usage: bpo-jax" in out and err == ""
    code, out, err = _cli(capsys, ["envs"])  # without --help the broken one is still named
    assert code == 2 and "installed plug-in 'b' (entry point 'plug_broken' of plug-broken)" in err
    # plot, report and llm need no plug-in: a broken installed one stopped them too.
    (tmp_path / "run").mkdir()
    code, out, err = _cli(capsys, ["plot", str(tmp_path / "run"), "--out", str(tmp_path / "f.png")])
    assert "plug-in" not in err and "plug_broken" not in sys.modules, err


SPLIT = '''
from bpo_jax import algorithms, envs
from {name}_parts import VPG, Chain

envs.register_suite("{name}", lambda: ["Chain"], lambda name, num_envs, **kw: Chain(num_envs), "a chain")
algorithms.register(VPG())
'''


def test_help_lists_the_algorithms_a_plugin_registers(tmp_path, clean, capsys):
    """``train --help --plugin FILE`` named only bpo and ppo under --algo: FILE was not loaded."""
    path = _write(tmp_path, "plug_helped")
    for command, flag in (("train", "--algo STR"), ("sweep", "--algos A,B")):
        code, out, err = _cli(capsys, [command, "--help", "--plugin", str(path)])
        text = " ".join(out.split())  # argparse wraps the help
        assert code == 0 and err == "" and "registered now: plug_helped_vpg" in text, (command, err)
        assert text.index(flag) < text.index("registered now: plug_helped_vpg"), command
    code, out, err = _cli(capsys, ["train", "--help"])  # loaded in this process: listed without --plugin too
    assert code == 0 and "registered now: plug_helped_vpg" in " ".join(out.split())


def test_help_lists_the_algorithms_of_installed_plugins(tmp_path, clean, capsys, monkeypatch):
    _write(tmp_path, "plug_inst")
    _install(tmp_path, "plug-inst", "i = plug_inst")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, err = _cli(capsys, ["train", "--help"])
    assert code == 0 and err == "" and "registered now: plug_inst_vpg" in " ".join(out.split()), err


def test_a_run_records_the_plugin_that_registered_not_the_module_of_the_class(tmp_path, clean):
    """A plug-in registering a class from the module beside it recorded that module, which
    registers nothing: loading it as told left the algorithm unknown."""
    from bpo_jax import Config

    parts = PLUGIN.format(name="plug_split").partition("\nenvs.register_suite")[0]
    (tmp_path / "plug_split_parts.py").write_text(parts)
    path = tmp_path / "plug_split.py"
    path.write_text(SPLIT.format(name="plug_split"))
    assert plugins.load(str(path)).algorithms == ("plug_split_vpg",)
    recorded = plugins.origins(Config(env="plug_split/Chain", algo="plug_split_vpg"))
    assert recorded["algorithm"] == {"name": "plug_split_vpg", "module": "plug_split", "load": str(path)}
    assert recorded["suite"] == {"name": "plug_split", "module": "plug_split", "load": str(path)}


def test_a_module_plugin_from_the_current_folder_is_recorded_by_its_path(tmp_path, clean, monkeypatch):
    """Under `python -m bpo_jax` (the current folder on the path) `--plugin plug_here` recorded
    'plug_here', which the bpo-jax script, or any other folder, does not find."""
    from bpo_jax import Config

    _write(tmp_path, "plug_here")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.load("plug_here")
    origin = plugins.origins(Config(env="plug_here/Chain", algo="ppo"))["suite"]
    assert origin == {"name": "plug_here", "module": "plug_here", "load": str(tmp_path / "plug_here.py")}


def test_a_plugin_file_named_as_another_module_would_hide_it(tmp_path, clean, monkeypatch):
    """A plug-in named like a module not yet imported (onnx.py) took its place: `export --format
    onnx` then said that the onnx package was not installed."""
    (tmp_path / "site").mkdir(), (tmp_path / "plug").mkdir()
    (tmp_path / "site" / "plug_shadowed.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    path = _write(tmp_path / "plug", "plug_shadowed")
    with pytest.raises(plugins.PluginError) as e:
        plugins.load(str(path))
    assert str(e.value) == (f"plug-in {path}: its name 'plug_shadowed' is that of the module "
                            f"{tmp_path}/site/plug_shadowed.py, which it would hide; rename the file")
    assert "plug_shadowed" not in sys.modules


def test_a_plugin_that_failed_after_registering_takes_it_back(tmp_path, clean):
    """A plug-in that registered its suite and then raised kept the suite: once mended, loading
    it again failed on 'already registered'.  A Ctrl-C left the half-run module in sys.modules,
    where loading it again took it for loaded."""
    path = _write(tmp_path, "plug_half")
    good = path.read_text()
    path.write_text(good + "raise RuntimeError('late')\n")
    with pytest.raises(plugins.PluginError, match="RuntimeError: late"):
        plugins.load(str(path))
    assert "plug_half" not in registry.suites() and "plug_half_vpg" not in algorithms.names()
    path.write_text(good + "raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        plugins.load(str(path))
    assert "plug_half" not in sys.modules and "plug_half" not in registry.suites()
    path.write_text(good)
    assert plugins.load(str(path)).suites == ("plug_half",)


@pytest.mark.parametrize("spec, text, message", [
    ("{tmp}/bad_syntax.py", "x = 1\ndef f(:\n", "failed while loading: {tmp}/bad_syntax.py:2: SyntaxError: invalid syntax"),
    (".relative", None, "plug-in .relative: neither a module name (dotted Python names, such as my_pkg.plugin) nor a "
                        ".py file's path"),
    ("{tmp}/empty_message.py", "raise RuntimeError()\n", "failed while loading: {tmp}/empty_message.py:1: RuntimeError"),
])
def test_more_plugins_that_cannot_load_are_one_clear_line(tmp_path, clean, spec, text, message):
    """A SyntaxError named the file only by its base name and no location; a relative module name
    quoted importlib's own file and line; an empty message said 'RuntimeError: RuntimeError'."""
    spec = spec.format(tmp=tmp_path)
    if text is not None:
        (tmp_path / os.path.basename(spec)).write_text(text)
    with pytest.raises(plugins.PluginError) as e:
        plugins.load(spec)
    assert str(e.value).endswith(message.format(tmp=tmp_path)) and "importlib" not in str(e.value)


@pytest.mark.parametrize("value, message", [
    ("plug_ep:VALUE", "entry point 'plug_ep:VALUE' of plug-ep): VALUE is not a function to call (its type: int); "
                      "name the module ('plug_ep') or a function that registers"),
    ("plug_ep: not valid", "entry point 'plug_ep: not valid' of plug-ep): not a module ('my_pkg.plugin') or a "
                           "module's function ('my_pkg.plugin:setup')"),
    ("plug_ep:leave", "entry point 'plug_ep:leave' of plug-ep) failed while loading: {tmp}/plug_ep.py:4: it called "
                      "sys.exit(3)"),
    ("plug_ep_missing", "entry point 'plug_ep_missing' of plug-ep) failed while loading: ModuleNotFoundError: No "
                        "module named 'plug_ep_missing'"),
])
def test_a_broken_entry_point_is_one_clear_line(tmp_path, clean, monkeypatch, value, message):
    """A non-callable attribute was taken silently; a malformed value said "'NoneType' object has
    no attribute 'group'"; sys.exit in a setup function ended the command silently with its code;
    a missing module was placed at a line of importlib's own file."""
    (tmp_path / "plug_ep.py").write_text("import sys\nVALUE = 3\ndef leave():\n    sys.exit(3)\n")
    _install(tmp_path, "plug-ep", f"ep = {value}")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(plugins.PluginError) as e:
        plugins.load_installed()
    assert message.format(tmp=tmp_path) in str(e.value) and "importlib" not in str(e.value)
    assert str(e.value).endswith(f"set {plugins.AUTOLOAD_OFF}=1 to start without installed plug-ins")


def test_an_installed_function_plugin_is_recorded_with_its_package(tmp_path, clean, monkeypatch):
    """A run of an entry point's function (my_pkg:setup) recorded its class's module, whose
    import alone registers nothing: the message said to --plugin it, which did not help."""
    from bpo_jax import Config

    (tmp_path / "plug_fn.py").write_text(PLUGIN.replace("\nenvs.register_suite", "\ndef setup():\n    envs.register_suite")
                                         .replace("\nalgorithms.register(", "\n    algorithms.register(")
                                         .format(name="plug_fn"))
    _install(tmp_path, "plug-fn", "fn = plug_fn:setup")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.load_installed()
    origin = plugins.origins(Config(env="plug_fn/Chain", algo="plug_fn_vpg"))["algorithm"]
    assert origin == {"name": "plug_fn_vpg", "module": "plug_fn", "load": "plug_fn", "package": "plug-fn",
                      "entry_point": "plug_fn:setup"}
    assert plugins.how_to_load(origin, "") == ("it came from the installed package plug-fn's plug-in plug_fn:setup: "
                                               "install plug-fn (its plug-ins load by themselves unless "
                                               f"{plugins.AUTOLOAD_OFF} is set)")


def test_a_run_registered_by_a_script_or_a_session_says_what_to_do(clean, monkeypatch):
    """A run registered in `python -c` or a notebook recorded '<cwd>/<interactive>' as a script's
    path; a script's message gave the command line nothing to do."""
    import types

    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))  # no __file__: a REPL
    assert plugins._load_name("__main__") == "<interactive>"
    assert plugins.how_to_load({"module": "__main__", "load": "<interactive>"}, "") == (
        "an interactive session registered it: register it the same way before loading the run (bpo-jax: put the "
        "registration in a module and give it to --plugin)")
    assert plugins.how_to_load({"module": "__main__", "load": "/w/train.py"}, "") == (
        "the script /w/train.py registered it: register it the same way before loading the run (bpo-jax: --plugin "
        "/w/train.py, once the script trains only under `if __name__ == \"__main__\":`; or put the registration in a "
        "module of its own and give that to --plugin)")


def test_a_plugin_run_is_refused_where_the_builtin_it_replaced_is_back(tmp_path, clean):
    """A run of a plug-in that took over 'ppo' (replace=True) resumed or evaluated, without the
    plug-in, with the built-in PPO, silently."""
    from bpo_jax import Config, checkpoint

    (tmp_path / "config.json").write_text(json.dumps(Config(algo="ppo").to_dict()))
    origin = {"name": "ppo", "module": "my_ppo", "load": "/w/my_ppo.py"}
    (tmp_path / "metadata.json").write_text(json.dumps({"plugins": {"algorithm": origin}}))
    with pytest.raises(checkpoint.CheckpointError) as e:
        checkpoint.read_config(str(tmp_path))
    assert str(e.value) == (f"checkpoint {tmp_path} was trained with a plug-in's algorithm 'ppo', registered in place "
                            "of the built-in one, which is the one in this process: it came from the plug-in "
                            "/w/my_ppo.py: import it before loading the run (bpo-jax: --plugin /w/my_ppo.py)")
    path = tmp_path / "my_ppo.py"
    path.write_text("from bpo_jax import algorithms\n\n\nclass MyPPO(algorithms.PPO):\n    pass\n\n\n"
                    "algorithms.register(MyPPO(), replace=True)\n")
    plugins.load(str(path))
    assert checkpoint.read_config(str(tmp_path)).algo == "ppo"  # with the plug-in loaded


def test_installed_plugins_tried_again_after_one_failed_name_the_broken_one(tmp_path, clean, monkeypatch):
    """A second load_installed() (read_config calls it) called the working one's setup again,
    whose suite was registered already: the error then blamed the plug-in that works."""
    (tmp_path / "plug_ra.py").write_text(PLUGIN.replace("\nenvs.register_suite", "\ndef setup():\n    envs.register_suite")
                                         .replace("\nalgorithms.register(", "\n    algorithms.register(")
                                         .format(name="plug_ra"))
    (tmp_path / "plug_rb.py").write_text("raise RuntimeError('broken')\n")
    _install(tmp_path, "plug-ra", "a = plug_ra:setup")
    _install(tmp_path, "plug-rb", "b = plug_rb")
    monkeypatch.syspath_prepend(str(tmp_path))
    for _ in range(2):
        with pytest.raises(plugins.PluginError, match=r"^installed plug-in 'b' .*RuntimeError: broken"):
            plugins.load_installed()
    assert "plug_ra" in registry.suites()


def test_a_failed_plugin_keeps_what_a_plugin_it_loaded_registered(tmp_path, clean):
    """The take-back after a failure spares a plug-in that the failed one loaded in full: it stays
    loaded, and loading it again is a no-op."""
    inner = _write(tmp_path, "plug_inner")
    outer = tmp_path / "plug_outer.py"
    outer.write_text(f"from bpo_jax import plugins\nplugins.load({str(inner)!r})\n" + PLUGIN.format(name="plug_outer")
                     + "raise RuntimeError('late')\n")
    with pytest.raises(plugins.PluginError, match="RuntimeError: late"):
        plugins.load(str(outer))
    assert "plug_inner" in registry.suites() and "plug_inner_vpg" in algorithms.names()
    assert "plug_outer" not in registry.suites() and "plug_outer_vpg" not in algorithms.names()
    outer.write_text(outer.read_text().replace("raise RuntimeError('late')\n", ""))
    assert plugins.load(str(outer)).suites == ("plug_outer",)


@pytest.mark.parametrize("registers_beside", [False, True])
def test_a_failed_plugin_with_a_module_beside_it_loads_once_mended(tmp_path, clean, registers_beside):
    """Its classes in the module beside it (registered by the plug-in, or by that module as it
    is imported): after a failure, the mended plug-in loads again in the same process."""
    parts = PLUGIN.format(name="plug_beside")
    if not registers_beside:
        parts = parts.partition("\nenvs.register_suite")[0]
    (tmp_path / "plug_beside_parts.py").write_text(parts)
    path = tmp_path / "plug_beside.py"
    good = "import plug_beside_parts\n" if registers_beside else SPLIT.format(name="plug_beside")
    path.write_text(good + "raise RuntimeError('late')\n")
    with pytest.raises(plugins.PluginError, match="RuntimeError: late"):
        plugins.load(str(path))
    assert "plug_beside" not in registry.suites() and "plug_beside_parts" not in sys.modules
    path.write_text(good)
    assert plugins.load(str(path)).suites == ("plug_beside",)


def test_the_resume_command_a_run_prints_carries_its_plugins():
    """INCOMPLETE's note and the stop line tell how to go on: without the plug-in that
    command would fail on the run's unknown algorithm."""
    import argparse

    hint = cli._resume_command(argparse.Namespace(plugin=["./my {x}.py", "pkg.algos"]))
    assert hint.format(out="runs/a") == "bpo-jax train --resume runs/a --plugin './my {x}.py' --plugin pkg.algos"
    assert cli._resume_command(argparse.Namespace(plugin=None)).format(out="r") == "bpo-jax train --resume r"


def test_only_bpo_jax_and_its_submodules_are_built_in():
    """A plug-in package whose name merely starts with "bpo_jax" (bpo_jax_contrib) is a plug-in:
    its runs must record where it came from."""
    assert plugins.built_in("bpo_jax") and plugins.built_in("bpo_jax.envs.gymnax")
    assert not plugins.built_in("bpo_jax_contrib") and not plugins.built_in("bpo_jaxx.algos")


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_any_value_of_the_autoload_switch_turns_installed_plugins_off(tmp_path, clean, monkeypatch, value):
    """Installed plug-ins are not loaded wherever BPO_JAX_NO_PLUGIN_AUTOLOAD is set (to anything
    non-empty): a broken installed one is then never imported."""
    (tmp_path / "plug_z.py").write_text("raise RuntimeError('must not be imported')\n")
    _install(tmp_path, "plug-z", "z = plug_z")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugins.AUTOLOAD_OFF, value)
    assert plugins.load_installed() == []
