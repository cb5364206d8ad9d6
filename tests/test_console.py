"""bpo_jax.console: a line that cannot be written never stops a command."""
import os

from bpo_jax import console


def test_a_line_to_a_pipe_whose_reader_has_gone_is_dropped_and_so_are_later_ones():
    """`bpo-jax llm ... | true` finished its run, then exited 1 on its last line (Broken pipe)."""
    read, write = os.pipe()
    os.close(read)
    stream = os.fdopen(write, "w")
    try:
        console.say("the run finished", stream)  # EPIPE (Python ignores SIGPIPE): silenced
        console.say("and this one too", stream)
        assert os.path.samefile(f"/proc/self/fd/{stream.fileno()}", os.devnull)
    finally:
        stream.close()


def test_a_line_to_a_full_device_is_dropped():
    with open("/dev/full", "w") as stream:
        console.say("no space left", stream)
