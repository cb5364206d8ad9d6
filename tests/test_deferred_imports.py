"""bpo_jax.deferred_imports: a library imported without the heavy module it seldom uses, on
made-up modules, and in a fresh process for the two libraries the package defers for
(gymnax without seaborn, tensorboardX without torch)."""
import importlib
import subprocess
import sys
import textwrap

import pytest

from bpo_jax.deferred_imports import deferred

HEAVY = "x = 41\nimport builtins\nbuiltins.heavy_loads = getattr(builtins, 'heavy_loads', 0) + 1\n"
LIBRARY = "import bpo_heavy_mod as heavy\n\ndef use():\n    return heavy.x + 1\n"
OPTIONAL = "try:\n    import bpo_heavy_mod as heavy\nexcept ImportError:\n    heavy = None\n"


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """A heavy module, a library that imports it for later use and one that takes it as optional;
    whatever these tests import of them is forgotten afterwards."""
    import builtins

    for name, text in (("bpo_heavy_mod", HEAVY), ("bpo_lib_mod", LIBRARY), ("bpo_optional_mod", OPTIONAL)):
        (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(builtins, "heavy_loads", 0, raising=False)
    yield
    for name in ("bpo_heavy_mod", "bpo_lib_mod", "bpo_optional_mod"):
        sys.modules.pop(name, None)


def loads():
    import builtins

    return builtins.heavy_loads


def test_a_deferred_module_loads_on_the_librarys_first_use_of_it(modules):
    with deferred("bpo_heavy_mod"):
        lib = importlib.import_module("bpo_lib_mod")
    assert "bpo_heavy_mod" not in sys.modules and loads() == 0
    assert lib.use() == 42 and loads() == 1  # loaded now, once
    assert lib.use() == 42 and loads() == 1
    heavy = importlib.import_module("bpo_heavy_mod")  # the real module for everyone else
    assert type(heavy).__name__ == "module" and heavy.x == 41 and loads() == 1


def test_a_module_imported_after_the_library_is_the_real_one(modules):
    with deferred("bpo_heavy_mod"):
        importlib.import_module("bpo_lib_mod")
    heavy = importlib.import_module("bpo_heavy_mod")
    assert type(heavy).__name__ == "module" and heavy.x == 41 and loads() == 1
    assert importlib.util.find_spec("bpo_heavy_mod") is not None


def test_a_hidden_module_is_absent_for_the_library_only(modules):
    with deferred("bpo_heavy_mod", hidden=True):
        lib = importlib.import_module("bpo_optional_mod")
    assert lib.heavy is None and loads() == 0 and "bpo_heavy_mod" not in sys.modules
    assert importlib.import_module("bpo_heavy_mod").x == 41 and loads() == 1


def test_a_module_loaded_already_is_left_as_it_is(modules):
    heavy = importlib.import_module("bpo_heavy_mod")
    for hidden in (False, True):
        with deferred("bpo_heavy_mod", hidden=hidden):
            lib = importlib.reload(importlib.import_module("bpo_optional_mod"))
        assert lib.heavy is heavy and sys.modules["bpo_heavy_mod"] is heavy and loads() == 1


def test_a_module_used_while_the_library_imports_is_loaded_then(modules, tmp_path):
    (tmp_path / "bpo_lib_mod.py").write_text("import bpo_heavy_mod as heavy\nVALUE = heavy.x\n")
    with deferred("bpo_heavy_mod"):
        lib = importlib.import_module("bpo_lib_mod")
    assert lib.VALUE == 41 and loads() == 1 and type(sys.modules["bpo_heavy_mod"]).__name__ == "module"


FRESH = """
import sys
from bpo_jax import envs, tracking
envs.make("gymnax/CartPole-v1", 2)
tracking.TensorBoard(sys.argv[1], 1, 64).close()
print(sorted(m for m in ("seaborn", "torch") if m in sys.modules))
pong = sys.modules["gymnax.environments.misc.pong"]  # gymnax's one user of seaborn, at render time
print(len(pong.sns.color_palette("cubehelix", 3)), "seaborn" in sys.modules)
"""


def test_a_run_starts_without_seaborn_or_torch(tmp_path):
    """gymnax imports seaborn (and scipy.stats: 1.4 s of a run's start on 2 cores) for a colour
    map its Pong renderer reads; tensorboardX imports torch where installed (2.5 s) to accept
    torch tensors.  Neither is loaded where a gymnax run logs to TensorBoard, and both work."""
    if importlib.util.find_spec("torch") is None:  # (importing it here would cost what is measured)
        pytest.importorskip("torch")  # skipped, or failed where the extras are required
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(FRESH), str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == ["[]", "3 True"]
