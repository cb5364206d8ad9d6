"""Error text: the one-line messages' suggestions for a mistyped name; Ctrl-C held over imports,
and never lost inside a garbage-collector callback."""
import gc
import os
import signal
import time

import pytest

from bpo_jax.errors import first_line, interrupt_deferred, interrupts_never_lost, raise_pending_interrupt, unknown_name

GAMES = ["Pong-v5", "SpaceInvaders-v5", "SpaceWar-v5", "Breakout-v5"]


@pytest.mark.parametrize("name,valid,hint", [
    ("Pong", GAMES, "did you mean 'Pong-v5'?"),                      # the version left off
    ("space", GAMES, "did you mean 'SpaceInvaders-v5' or 'SpaceWar-v5'?"),  # a prefix, case ignored
    ("Breakuot-v5", GAMES, "did you mean 'Breakout-v5'?"),           # a typo
    ("bpp", ["bpo", "ppo"], "did you mean 'bpo' or 'ppo'?"),         # equally close: both
])
def test_a_close_name_is_suggested(name, valid, hint):
    text = unknown_name("game", name, valid)
    assert text == f"unknown game {name!r}; {hint} valid: {', '.join(valid)}"


def test_nothing_close_gets_only_the_valid_list():
    assert unknown_name("algo", "sac", ["bpo", "ppo"]) == "unknown algo 'sac'; valid: bpo, ppo"
    many = [f"Game{i}-v5" for i in range(10)]
    assert "did you mean" not in unknown_name("game", "Game", many)  # ten prefixed: no help to list


def test_first_line():
    assert first_line(ValueError("one\ntwo")) == "one"
    assert first_line(ValueError("\n  ")) == "ValueError"


def test_interrupt_deferred_holds_ctrl_c_until_the_body_ends():
    before = signal.getsignal(signal.SIGINT)
    reached = False
    with interrupt_deferred() as pressed:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs in the main thread at the next bytecode boundaries
        reached = True
    assert reached and pressed == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is before


def test_interrupt_deferred_leaves_an_ignored_sigint_ignored():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a background job
    try:
        with interrupt_deferred() as pressed:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        assert pressed == [] and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_ctrl_c_inside_a_gc_callback_is_kept_for_the_next_safe_point():
    """Python prints and drops an exception raised in a gc callback (JAX registers one): the
    command trained on to the end after such a Ctrl-C."""
    fired = []

    def callback(phase, info):
        if phase == "start" and not fired:
            fired.append(phase)
            signal.raise_signal(signal.SIGINT)  # the handler runs at the next bytecode: in here
            sum(range(100))

    gc.callbacks.append(callback)
    try:
        with interrupts_never_lost():
            gc.collect()  # not raised in the callback, where it would be dropped
            assert fired
            with pytest.raises(KeyboardInterrupt):
                raise_pending_interrupt()
            raise_pending_interrupt()  # raised once
            with pytest.raises(KeyboardInterrupt):  # anywhere else: at once, as usual
                signal.raise_signal(signal.SIGINT)
    finally:
        gc.callbacks.remove(callback)
