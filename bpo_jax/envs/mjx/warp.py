"""MuJoCo Warp (``impl='warp'``): what the two MJX-based suites, mjx/ and playground/, share.

Warp is MJX's second implementation (warp-lang, built for NVIDIA GPUs; it also has a slow CPU
backend).  Its specifics, kept out of the generic env layer:

* ``impl`` is checked the same way in both suites (:func:`check_impl`); choosing Warp lowers
  warp-lang's log level to WARNING unless the user set one;
* a batch of Warp ``mjx.Data`` keeps some buffers (contacts, constraint rows, their counters)
  shared by all worlds, with no per-env axis: only MJX's own ``Data.where`` and ``Data[index]``
  know which fields those are, so the base class's auto-reset hands ``Data`` to them
  (:func:`data_nodes`, :attr:`bpo_jax.envs.base.FunctionalEnv.state_nodes`);
* that contact pool holds ``naconmax`` contacts for the whole batch (:func:`buffer_sizes`), and
  the mjx/ suite builds its Data with those sizes (:func:`make_data`);
* MJX-Warp has no ``rne_postconstraint``: nothing that reads ``cfrc_ext`` runs on it
  (:func:`check_supported`), and without warp-lang MJX refuses it deep inside ``put_model``
  (:func:`require_installed` says so first);
* its envs run their auto-reset on every step, also on the CPU (:data:`SKIP_IDLE_RESETS`).
"""
from __future__ import annotations

WARP_SEEDS = 10  # worlds per env that impl='warp' sizes its contact buffer for by default


def check_impl(env_id: str, impl: str) -> None:
    """A one-line ValueError unless ``impl`` names an MJX implementation ('jax' or 'warp').

    For Warp also lowers warp-lang's log level from its default INFO to WARNING: at INFO it
    prints a start-up banner and a line per kernel module loaded (dozens per compiled program),
    which bury the trainer's progress lines.  A level the user set is left alone; warnings
    (e.g. a contact pool too small) still print."""
    if impl not in ("jax", "warp"):
        raise ValueError(f"{env_id}: impl must be 'jax' or 'warp' (MuJoCo Warp), got {impl!r}")
    if impl == "warp":
        try:
            import warp
        except ImportError:
            return  # the suite reports the missing package
        if warp.config.log_level == warp.LOG_INFO:
            warp.config.log_level = warp.LOG_WARNING


def data_nodes() -> tuple[type, ...]:
    """The state nodes (:attr:`~bpo_jax.envs.base.FunctionalEnv.state_nodes`) of a suite whose
    simulator state holds ``mjx.Data``: it merges and indexes itself, leaving Warp's world-shared
    buffers whole (with the JAX implementation it is per-env leaf by leaf, the same as default)."""
    from mujoco import mjx

    return (mjx.Data,)


# A cond whose branches get vmapped (the CPU's idle-reset skip, under vmapped seeds) closes
# over batched values, which Warp's custom_vmap refuses (an AssertionError listing booleans):
# Warp envs always run their reset, as on a GPU.
SKIP_IDLE_RESETS = False


def require_installed(env_id: str) -> None:
    """A one-line ValueError where warp-lang is missing: checked before MJX is asked for Warp,
    whose own refusal is a RuntimeError deep in ``mjx.put_model``."""
    from mujoco.mjx import warp as mjx_warp

    if not mjx_warp.WARP_INSTALLED:
        raise ValueError(f"{env_id}: impl='warp' needs warp-lang (pip install warp-lang) for MJX's Warp backend")


def check_supported(env_id: str, reads_cfrc_ext: bool, always: bool) -> None:
    """One-line ValueErrors for what MJX-Warp cannot run: no warp-lang, or a task whose reward or
    observation reads ``cfrc_ext`` (``always``: whatever the options, e.g. Humanoid-v4)."""
    require_installed(env_id)
    if reads_cfrc_ext:
        what = "its observation always includes" if always else "these options use"
        raise ValueError(f"{env_id}: impl='warp' has no mj_rnePostConstraint, and {what} contact forces "
                         "(cfrc_ext); use impl='jax', or on v5 include_cfrc_ext_in_observation=False and "
                         "contact_cost_weight=0")


def buffer_sizes(mj_model, num_envs: int, naconmax: int = 0) -> tuple[int, int]:
    """(naconmax, njmax) of Warp's Data for ``num_envs`` worlds of host model ``mj_model``.

    MJX-JAX allocates every candidate contact of a world (and its constraint rows): an exact
    per-world bound.  Warp's contact buffer is one pool for all worlds of a batch, and seeds
    vmapped in one program are worlds too, hence the WARP_SEEDS headroom.  ``naconmax > 0``
    is taken as given."""
    from mujoco import mjx

    jax_data = mjx.make_data(mj_model)
    per_world = jax_data._impl.contact.dist.shape[0]
    return int(naconmax) or max(1, per_world * num_envs * WARP_SEEDS), max(1, jax_data._impl.efc_J.shape[0])


def make_data(mj_model, naconmax: int, njmax: int):
    """Fresh Warp ``mjx.Data``.  MJX builds it from the host model only, so a device model that
    differs (e.g. a ``model=`` override of the mjx/ suite) changes the physics calls, not the Data."""
    from mujoco import mjx

    return mjx.make_data(mj_model, impl="warp", naconmax=naconmax, njmax=njmax)
