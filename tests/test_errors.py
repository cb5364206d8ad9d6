"""Error text: the one-line messages' suggestions for a mistyped name; Ctrl-C held over imports,
never lost inside a garbage-collector callback, and stopping a command once."""
import functools
import gc
import os
import signal
import sys
import time

import pytest

from bpo_jax.errors import (finishes_before_interrupt, first_line, in_words, interrupt_deferred, interrupts_never_lost,
                            unknown_name)

GAMES = ["Pong-v5", "SpaceInvaders-v5", "SpaceWar-v5", "Breakout-v5"]


@pytest.mark.parametrize("name,valid,hint", [
    ("Pong", GAMES, "did you mean 'Pong-v5'?"),                      # the version left off
    ("space", GAMES, "did you mean 'SpaceInvaders-v5' or 'SpaceWar-v5'?"),  # a prefix, case ignored
    ("Breakuot-v5", GAMES, "did you mean 'Breakout-v5'?"),           # a typo
    ("bpp", ["bpo", "ppo"], "did you mean 'bpo' or 'ppo'?"),         # equally close: both
    ("SpaceInvadersNoFrameskip-v4", GAMES, "did you mean 'SpaceInvaders-v5'?"),  # Gym's id for the game
    ("Breakout-v4", GAMES, "did you mean 'Breakout-v5'?"),           # another version
    ("Atlantis2NoFrameskip-v4", ["Atlantis-v5", "Atlantis2-v5"], "did you mean 'Atlantis2-v5'?"),  # the longest
    ("EtNoFrameskip-v4", ["Et-v5", "Pong-v5"], "did you mean 'Et-v5'?"),
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


def test_in_words_names_flags_and_unbackticks_what_has_none():
    flags = {"total_steps": "--total-steps", "num_envs": "--num-envs"}.get
    assert (in_words("`total_steps` 100 < (`num_envs` 4 x `num_steps` 128); see `total_steps`", flags)
            == "--total-steps 100 < (--num-envs 4 x num_steps 128); see --total-steps")
    assert in_words("no names here, `not a name`", flags) == "no names here, `not a name`"
    # A switch turned off: the flag that turns it off; the library's own spelling where none.
    switches = {"tensorboard=False": "--no-tensorboard"}.get
    assert in_words("log none (`tensorboard=False`) or `lr=False`", switches) == "log none (--no-tensorboard) or lr=False"
    # The command line's own: a switch's negative flag, never the positive one (that inverted it).
    from bpo_jax import cli

    assert cli._worded("`normalize_advantages=False`, `tensorboard=False`, `compile_cache=False`, `lr=False`") == \
        "--no-normalize-advantages, --no-tensorboard, --no-compile-cache, lr=False"


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


@pytest.mark.parametrize("held", [interrupts_never_lost, functools.partial(interrupts_never_lost, every_press=True)])
def test_a_ctrl_c_dropped_inside_a_gc_callback_is_sent_again_and_later_ones_are_ignored(held):
    """Python prints and drops an exception raised in a gc callback (JAX registers one): the
    command trained on to the end after such a Ctrl-C.  It is sent again, untold, and raised
    outside the callback; once one is raised, the process is on its way out and further ones are
    ignored until the body ends.  Around a plug-in's import (every_press=True) one
    dropped so was printed and lost, and the import ran on to its end: it is sent again too."""
    fired, told = [], []

    def callback(phase, info):
        if phase == "start" and not fired:
            fired.append(phase)
            signal.raise_signal(signal.SIGINT)  # the handler runs at the next bytecode: in here
            sum(range(100))

    before, hook = signal.getsignal(signal.SIGINT), sys.unraisablehook
    sys.unraisablehook = told.append  # what would print "Exception ignored in ..."
    gc.callbacks.append(callback)
    try:
        with pytest.raises(KeyboardInterrupt):
            with held():
                gc.collect()  # raised in the callback, dropped there: sent again
                assert fired
                time.sleep(5)  # raised in here, a few ms later
                raise AssertionError("the Ctrl-C was lost")
        assert told == [] and sys.unraisablehook == told.append  # nothing printed; the hook given back
        assert signal.getsignal(signal.SIGINT) is before
    finally:
        gc.callbacks.remove(callback)
        sys.unraisablehook = hook
        signal.signal(signal.SIGINT, before)


def test_a_second_ctrl_c_while_stopping_is_ignored_and_the_handler_is_back_afterwards():
    before = signal.getsignal(signal.SIGINT)
    with interrupts_never_lost():
        try:
            signal.raise_signal(signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:  # the command writes its note ...
            signal.raise_signal(signal.SIGINT)  # ... and another Ctrl-C does not cut it short
            time.sleep(0.05)
    assert signal.getsignal(signal.SIGINT) is before


def test_every_press_raises_again_after_a_caught_one_and_each_is_noted():
    """Around a plug-in's import the first KeyboardInterrupt may be caught (an extension module
    turns it into an ImportError that an optional-dependency probe swallows) while the import
    hangs on: the next Ctrl-C raises again.  In the command's body a second is ignored."""
    before = signal.getsignal(signal.SIGINT)
    for every_press, raised_twice in ((True, True), (False, False)):
        raised = []
        with interrupts_never_lost(every_press=every_press) as pressed:
            for _ in range(2):
                try:
                    signal.raise_signal(signal.SIGINT)
                    time.sleep(0.05)
                except KeyboardInterrupt:
                    raised.append(True)
        assert len(pressed) == 2 and (len(raised) == 2) == raised_twice and raised
        assert signal.getsignal(signal.SIGINT) is before


def test_a_write_held_over_a_ctrl_c_finishes_then_stops_the_command_once():
    done = []

    @finishes_before_interrupt
    def write(name):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # not raised in here
        done.append(name)
        return name

    before = signal.getsignal(signal.SIGINT)
    with interrupts_never_lost():
        with pytest.raises(KeyboardInterrupt):
            write("checkpoint")
        assert done == ["checkpoint"]
        assert write("note") == "note"  # while the command stops, a further Ctrl-C is ignored
    assert done == ["checkpoint", "note"] and signal.getsignal(signal.SIGINT) is before
    with pytest.raises(KeyboardInterrupt):  # outside any command: raised, as Python would
        write("alone")
