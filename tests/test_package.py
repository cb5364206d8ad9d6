"""The package itself: ``import bpo_jax`` loads nothing heavy; its names and submodules load on use."""
import subprocess
import sys

import pytest


def test_import_is_light_and_names_and_submodules_load_on_first_use():
    code = ("import sys, bpo_jax; light = 'jax' not in sys.modules; "
            "from bpo_jax import Config, make_train; "
            "print(light, Config.__module__, make_train.__module__, bpo_jax.sweep.plan.__module__, "
            "bpo_jax.export.load_policy.__module__, 'Config' in dir(bpo_jax))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "bpo_jax.config", "bpo_jax.train", "bpo_jax.sweep", "bpo_jax.export", "True"]


@pytest.mark.parametrize("name", ["nope", "__wrapped__"])
def test_an_unknown_name_is_an_attribute_error(name):
    import bpo_jax

    with pytest.raises(AttributeError, match=f"^module 'bpo_jax' has no attribute '{name}'$"):
        getattr(bpo_jax, name)


def test_the_readmes_plugin_example_runs_and_learns(tmp_path, monkeypatch, capsys):
    """The README's plug-in block as written: a user env suite and a user algorithm train
    through RunSession, the algorithm's own metric reaches the CSV, and the chain is learned."""
    import csv
    import pathlib
    import re

    from bpo_jax import algorithms
    from bpo_jax.envs import registry

    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "algorithms.register(VPG())" in b)
    saved_algorithms, saved_suites = dict(algorithms._REGISTRY), dict(registry._SUITES)
    monkeypatch.chdir(tmp_path)
    try:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme_example"})
    finally:
        algorithms._REGISTRY.clear(), algorithms._REGISTRY.update(saved_algorithms)
        registry._SUITES.clear(), registry._SUITES.update(saved_suites)
    assert capsys.readouterr().out.strip().splitlines()[-1] == "1.0"
    rows = list(csv.DictReader(open(tmp_path / "runs" / "vpg_chain" / "metrics.csv")))
    assert float(rows[0]["episode_return_mean"]) < 0.9 and float(rows[-1]["episode_return_mean"]) == 1.0
    assert float(rows[-1]["episode_length_mean"]) < 6 and all(float(r["adv_std"]) >= 0 for r in rows)
