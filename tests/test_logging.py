"""Live logging (bpo_jax.tracking): metric namespaces, TensorBoard event files, W&B (with a
stand-in module), the console progress bar or plain lines.  No training: chunks are made up."""
import io
import json
import os
import re
import struct
import sys
import types

import numpy as np
import pytest

from bpo_jax import cli, runner, tracking


def make_chunk(update, k=2, seeds=2, first=False, ret=(20.0, np.nan)):
    """A chunk of k updates ending at `update`; seed 1 has no finished episode in its first update."""
    metrics = {
        "episode_return_mean": np.array([[ret[0]] * k, [ret[1]] + [30.0] * (k - 1)], np.float32)[:seeds],
        "episode_length_mean": np.full((seeds, k), 20.0, np.float32),
        "episodes": np.full((seeds, k), 3, np.int32),
        "policy_loss": np.full((seeds, k), -0.1, np.float32),
        "median_loss": np.full((seeds, k), 0.5, np.float32),
        "approx_kl": np.full((seeds, k), 0.01, np.float32),
        "nonfinite": np.zeros((seeds, k), bool),
    }
    return runner.Chunk(state=None, update=update, num_updates=10, chunk_updates=k, metrics=metrics,
                        history=runner.History([metrics], [np.ones(k)]), steps_per_second=1234.0,
                        train_seconds=1.0, compile_seconds=5.5, first=first)


def test_metrics_map_to_fixed_namespaces_and_nan_is_left_out():
    rows = list(tracking.update_scalars(make_chunk(2).metrics, first_update=0, batch_size=64))
    tags = {tag for _, _, tag, _ in rows}
    assert {"charts/episode_return", "charts/episode_length", "charts/episodes", "losses/policy_loss",
            "losses/median_loss", "losses/approx_kl"} == tags  # nonfinite is not a chart
    returns = [(seed, step, value) for seed, step, tag, value in rows if tag == "charts/episode_return"]
    assert returns == [(0, 64, 20.0), (0, 128, 20.0), (1, 128, 30.0)]  # seed 1's NaN at step 64 is skipped
    assert set(tracking.perf_scalars(make_chunk(2, first=True))) == {"perf/steps_per_second", "perf/compile_seconds"}
    assert set(tracking.perf_scalars(make_chunk(4))) == {"perf/steps_per_second"}


def events(folder):
    """Every Event in the TFRecord event files in `folder`, in file order."""
    from tensorboardX.proto import event_pb2

    for name in sorted(os.listdir(folder)):
        data = open(os.path.join(folder, name), "rb").read()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = event_pb2.Event()
            event.ParseFromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4  # length, its crc, payload, its crc
            yield event


def read_scalars(folder):
    """{tag: [(step, value)]} of the scalars logged in `folder`."""
    out = {}
    for event in events(folder):
        for v in event.summary.value:
            out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_tensorboard_writes_one_run_per_seed(tmp_path):
    tb = tracking.TensorBoard(str(tmp_path / "tb"), num_seeds=2, batch_size=64)
    tb(make_chunk(2, first=True))
    tb(make_chunk(4))
    # On disk when the call returns, before close: the checkpoint saved next must not run ahead of
    # the logs (tensorboardX's writer queue held up to 10 events past its flush, and a run killed
    # after the checkpoint lost them for good).
    assert [s for s, _ in read_scalars(tmp_path / "tb" / "seed_0")["charts/episode_return"]] == [64, 128, 192, 256]
    assert [s for s, _ in read_scalars(tmp_path / "tb" / "seed_1")["charts/episode_return"]] == [128, 256]
    tb.close()
    assert sorted(os.listdir(tmp_path / "tb")) == ["seed_0", "seed_1"]
    seed0, seed1 = read_scalars(tmp_path / "tb" / "seed_0"), read_scalars(tmp_path / "tb" / "seed_1")
    assert seed0["charts/episode_return"] == [(64, 20.0), (128, 20.0), (192, 20.0), (256, 20.0)]
    assert seed1["charts/episode_return"] == [(128, 30.0), (256, 30.0)]
    assert [s for s, _ in seed0["losses/policy_loss"]] == [64, 128, 192, 256]
    assert seed0["perf/compile_seconds"] == [(128, 5.5)] and len(seed0["perf/steps_per_second"]) == 2
    assert "perf/steps_per_second" not in seed1
    # A resumed session purges what a killed one logged after its checkpoint (update 2 here).
    resumed = tracking.TensorBoard(str(tmp_path / "tb"), num_seeds=2, batch_size=64, purge_step=2 * 64 + 1)
    resumed.close()
    assert purge_steps(tmp_path / "tb" / "seed_0") == [129]


def purge_steps(folder):
    """Steps of the session-start events (TensorBoard purges what was logged after them)."""
    return [e.step for e in events(folder)
            if e.HasField("session_log") and e.session_log.status == e.session_log.START]


def test_wandb_logs_seed_means_and_resumes_its_run(tmp_path, monkeypatch):
    runs = []

    class Run:
        def __init__(self, **kwargs):
            self.kwargs, self.logged, self.finished = kwargs, [], False
            runs.append(self)

        def log(self, values, step):
            self.logged.append((step, values))

        def finish(self):
            self.finished = True

    ids = iter(["first-id", "second-id"])
    stub = types.SimpleNamespace(init=lambda **kw: Run(**kw), util=types.SimpleNamespace(generate_id=lambda: next(ids)))
    monkeypatch.setitem(sys.modules, "wandb", stub)
    logger = tracking.WandB(str(tmp_path), {"algo": "bpo"}, batch_size=64, project="p")
    logger(make_chunk(2, first=True))
    logger.close()
    run = runs[0]
    assert run.kwargs["id"] == "first-id" and run.kwargs["resume"] == "allow" and run.kwargs["project"] == "p"
    assert run.finished and [s for s, _ in run.logged] == [64, 128]
    step64, step128 = run.logged[0][1], run.logged[1][1]
    assert step64["charts/episode_return"] == 20.0 and "charts/episode_return/seed_1" not in step64
    assert step128["charts/episode_return"] == 25.0 and step128["charts/episode_return/seed_1"] == 30.0
    assert step128["perf/compile_seconds"] == 5.5 and "perf/steps_per_second" not in step64
    # A resumed training run continues the same W&B run.
    tracking.WandB(str(tmp_path), {}, batch_size=64)
    assert runs[1].kwargs["id"] == "first-id"
    assert json.loads((tmp_path / "wandb.json").read_text()) == {"id": "first-id"}


def test_wandb_missing_is_a_one_line_error_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    out = tmp_path / "out"
    assert cli.main(["train", "--wandb", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "bpo-jax: error: " + tracking.WANDB_HINT and "pip install 'bpo-jax[wandb]'" in err
    assert not out.exists()


PROGRESS = runner.Progress(update=5, num_updates=10, env_steps=320, total_steps=640, num_seeds=2,
                           episode_return=21.5, steps_per_second=1500.0, eta=2.0)
THROUGHPUT = "1,500 env steps/s (all 2 seeds, training time)"  # the one labelled figure


def test_progress_is_plain_lines_off_a_terminal_and_a_bar_on_one():
    stream = io.StringIO()
    assert tracking.make_progress("bpo x", 640, quiet=True, stream=stream) is None
    lines = tracking.make_progress("bpo x", 640, stream=stream)
    assert isinstance(lines, tracking.ProgressLines)
    lines(PROGRESS)
    text = stream.getvalue()
    assert "50.0%" in text and "320/640" in text and "21.50" in text and THROUGHPUT in text and "ETA" in text

    from rich.console import Console

    screen = io.StringIO()
    bar = tracking.ProgressBar("bpo x", 640, console=Console(file=screen, force_terminal=True, width=120))
    bar(PROGRESS)
    bar.close()
    shown = screen.getvalue()
    assert "320/640 steps per seed" in shown and "21.50" in shown and THROUGHPUT in shown and "ETA 2s" in shown
    # An 80-column terminal lost the return and the ETA to rich's squeezed columns: there the steps
    # show as a percentage and the throughput unlabelled, and the run's label gives way.
    for width in (80, 60):
        screen = io.StringIO()
        bar = tracking.ProgressBar("bpo mjx/Humanoid-v4 (4 runs as one program)", 640,
                                   console=Console(file=screen, force_terminal=True, width=width, color_system=None))
        bar(PROGRESS)
        bar.close()
        line = [x for x in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue()).replace("\r", "\n").splitlines()
                if x.strip()][-1]
        assert len(line) <= width and line.startswith("bpo mjx") and "…" in line
        assert line.split("…")[1].split() == ["50.0%", "return", "21.50", "1,500", "steps/s", "ETA", "2s"]


class ClosedPipe(io.StringIO):
    """A stream whose reader has gone."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def test_progress_falls_silent_when_its_reader_has_gone():
    """A closed pipe (``bpo-jax train | head``) silences the progress lines; it never raises."""
    stream = ClosedPipe()
    lines = tracking.make_progress("bpo x", 640, stream=stream)
    lines(PROGRESS)
    lines(PROGRESS)
    assert lines.stream is None
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "w") as pipe:
        lines = tracking.ProgressLines("bpo x", pipe)
        lines(PROGRESS)
        assert lines.stream is None
        print("later writes and the final flush go to /dev/null", file=pipe, flush=True)


@pytest.mark.parametrize("flags", [["--tensorboard"], ["--no-tensorboard"]])
def test_tensorboard_flag_parses(flags):
    args = cli.parse_args(["train", *flags])
    assert args.tensorboard is (flags[0] == "--tensorboard")


LIMITED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
from bpo_jax import cli
sys.exit(cli.main(['train', '--seeds', '1000', '--out', 'run', '--quiet']))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="open-file limits as Linux sets them")
def test_more_tensorboard_runs_than_open_files_is_refused_before_anything_is_written(tmp_path):
    """400 seeds under `ulimit -n 1024` stopped with "Too many open files" after writing
    hundreds of tb/ folders, and the restart command it printed failed the same way (each seed's
    writer now holds one file, not three: 1,000 seeds are too many)."""
    import subprocess

    proc = subprocess.run([sys.executable, "-c", LIMITED], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith("bpo-jax: error: 1,000 TensorBoard runs (one per seed trained at once)")
    assert "log no TensorBoard runs (--no-tensorboard; metrics.csv keeps" in proc.stderr
    assert "RunOptions" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "run")
    # The library's words name its own option.
    import resource

    with pytest.MonkeyPatch.context() as m:
        m.setattr(resource, "getrlimit", lambda which: (1024, 1024))
        with pytest.raises(tracking.TrackingError, match=r"log no TensorBoard runs \(`tensorboard=False`; metrics.csv"):
            tracking.check_open_files(1000)
        # Where the hard limit allows, the soft one is raised instead.
        raised = []
        m.setattr(resource, "getrlimit", lambda which: (256, 4096))
        m.setattr(resource, "setrlimit", lambda which, limits: raised.append((which, limits)))
        tracking.check_open_files(400)
        assert raised == [(resource.RLIMIT_NOFILE, (4096, 4096))]


def test_a_ctrl_c_while_tensorboard_logs_is_raised_after_it(tmp_path, monkeypatch):
    """Raised inside tensorboardX's queue, it could lose the writer thread's wake-up: close()
    then waited for ever (a run hung once in 17 Ctrl-Cs).  The press waits for the call's end:
    every event of the chunk is written (no record cut), and close() returns."""
    import signal

    tb = tracking.TensorBoard(str(tmp_path / "tb"), num_seeds=2, batch_size=64)
    writer = tb.writers[0]
    real, calls = writer.write_event, []

    def pressed_inside(*args, **kwargs):
        if not calls:
            signal.raise_signal(signal.SIGINT)
        calls.append(1)
        real(*args, **kwargs)

    monkeypatch.setattr(writer, "write_event", pressed_inside)
    with pytest.raises(KeyboardInterrupt):
        tb(make_chunk(2, first=True))
    assert len(calls) == 2  # both of seed 0's updates, after the press
    tb.close()
    assert [s for s, _ in read_scalars(tmp_path / "tb" / "seed_0")["charts/episode_return"]] == [64, 128]
    assert read_scalars(tmp_path / "tb" / "seed_1")["charts/episode_return"] == [(128, 30.0)]
