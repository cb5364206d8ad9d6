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
