"""bpo_jax.curves on run directories written by hand: damaged or edited files refused in one
line naming the file, links followed, and figures that draw what is there (or say what is not)."""
import csv
import json
import os
import re

import numpy as np
import pytest

from bpo_jax import curves


def _run(path, returns=((10.0, 20.0, 30.0), (11.0, 21.0, 31.0)), steps_per_update=64, **config):
    """A finished run directory as RunSession writes it: config.json, metrics.csv, summary.json.
    ``returns`` is [seeds][updates] (None: no episode ended in that update)."""
    os.makedirs(path, exist_ok=True)
    updates = len(returns[0])
    settings = {"env": "gymnax/CartPole-v1", "algo": "bpo", "total_steps": updates * steps_per_update,
                "lr": 0.001, "num_seeds": len(returns), **config}
    (path / "config.json").write_text(json.dumps(settings))
    with open(path / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["update", "seed", "env_steps", "episode_return_mean", "episodes"])
        for seed, row in enumerate(returns):
            for u, value in enumerate(row):
                w.writerow([u + 1, seed, (u + 1) * steps_per_update, "" if value is None else value,
                            0 if value is None else 2])
    (path / "summary.json").write_text(json.dumps({"env_steps": updates * steps_per_update,
                                                   "num_seeds": len(returns)}))
    return path


def test_a_hand_written_run_loads(tmp_path):
    c = curves.load(str(_run(tmp_path / "run")))
    assert (c.env, c.algo, c.total_steps, c.num_seeds) == ("gymnax/CartPole-v1", "bpo", 192, 2)
    np.testing.assert_allclose(c.returns, [[10, 20, 30], [11, 21, 31]])


def test_a_metrics_file_that_lost_a_whole_seed_is_refused(tmp_path):
    """Cut at a seed boundary, every remaining seed is whole and ends where summary.json says:
    it was read as a 1-seed run and reported with the wrong numbers."""
    run = _run(tmp_path / "run")
    lines = (run / "metrics.csv").read_text().splitlines(keepends=True)
    (run / "metrics.csv").write_text("".join(lines[:4]))  # the header and seed 0's 3 updates
    with pytest.raises(curves.CurveError) as e:
        curves.load(str(run))
    assert "\n" not in str(e.value)
    assert str(e.value) == (f"{run / 'metrics.csv'} holds 1 seed but {run / 'config.json'} records 2 "
                            "(a cut or edited file?)")


@pytest.mark.parametrize("field,value,fragment", [
    ("algo", None, "algo is None, not a name"),
    ("env", 3, "env is 3, not a name"),
    ("total_steps", "lots", "total_steps is 'lots', not a whole number above 0"),
    ("total_steps", True, "total_steps is True, not a whole number above 0"),
    ("num_seeds", 0, "num_seeds is 0, not a whole number above 0"),
])
def test_a_config_field_of_the_wrong_type_is_named_with_its_file(tmp_path, field, value, fragment):
    """``"algo": null`` gave an AttributeError traceback from plot and report; ``"total_steps":
    "lots"`` gave "invalid literal for int()", naming no file."""
    run = _run(tmp_path / "run", **{field: value})
    with pytest.raises(curves.CurveError) as e:
        curves.load(str(run))
    assert str(e.value) == f"{run / 'config.json'}: {fragment} (an edited file?)"


def test_a_summary_field_of_the_wrong_type_is_named_with_its_file(tmp_path):
    run = _run(tmp_path / "run")
    (run / "summary.json").write_text(json.dumps({"env_steps": "192"}))
    with pytest.raises(curves.CurveError, match=r"summary.json: env_steps is '192', not a whole number above 0"):
        curves.load(str(run))


def test_runs_are_found_through_links_each_once_and_a_link_loop_ends(tmp_path):
    """A folder of symbolic links to run directories held "no finished run"; followed, a link to
    a folder above it must not be walked for ever."""
    a, b = _run(tmp_path / "runs" / "a"), _run(tmp_path / "runs" / "b")
    picked = tmp_path / "picked"
    picked.mkdir()
    (picked / "one").symlink_to(a)
    (picked / "two").symlink_to(b)
    (picked / "again").symlink_to(a)  # the same run twice: counted once
    (picked / "up").symlink_to(tmp_path)  # a loop, and the runs once more through it
    found = curves.find_runs([str(picked)])
    assert found == curves.Found(runs=(str(picked / "again"), str(picked / "two")))
    assert [os.path.realpath(r) for r in found.runs] == [str(a), str(b)]


def test_one_path_given_as_a_string_is_one_path_not_its_characters(tmp_path):
    """``find_runs("/x/run")`` iterated the characters and walked "/"."""
    run = _run(tmp_path / "run")
    assert curves.find_runs(str(run)) == curves.find_runs([str(run)]) == curves.Found(runs=(str(run),))
    assert curves.find_runs(run).runs == (str(run),)


@pytest.fixture
def drawn(monkeypatch):
    """The figures :func:`curves.plot` saves, kept to look at."""
    from matplotlib.figure import Figure

    figures, save = [], Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (figures.append(fig), save(fig, *a, **k))[1])
    return figures


def _svg_text(runs, path, title=None):
    """The texts of :func:`curves.plot`'s SVG as drawn (``>text<``); math would be glyph by glyph."""
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text as text, not glyph paths
        curves.plot(runs, str(path), title, format="svg")
    return path.read_text()


@pytest.mark.parametrize("title", ["Cost: $5 vs $10", "Hopper: $x^$", r"a \$ b"])
def test_a_title_is_drawn_as_typed(tmp_path, title):
    """``--title 'Cost: $5 vs $10'`` was drawn as math; ``'Hopper: $x^$'`` stopped the figure
    with a 40-line mathtext traceback."""
    run = curves.load(str(_run(tmp_path / "run")))
    assert f">{title}<" in _svg_text([run], tmp_path / "f.svg", title)


def test_env_ids_and_folder_names_are_drawn_as_typed(tmp_path):
    """Panel titles (env ids) and legend labels (folder names where runs share their settings)."""
    runs = curves.load_all([str(_run(tmp_path / name, env="my/$x^$")) for name in ("p$a$", "p$b$")])
    assert [c.variant for c in runs] == ["p$a$", "p$b$"]  # the same settings: named by their folders
    svg = _svg_text(runs, tmp_path / "f.svg")
    for typed in ("my/$x^$", "BPO p$a$ (2 seeds): mean", "BPO p$b$ (2 seeds): mean"):
        assert f">{typed}<" in svg, typed


def _has_marker(line) -> bool:
    return line.get_marker() not in (None, "", "None", " ")


def test_a_curve_of_one_point_is_drawn_with_a_marker(tmp_path, drawn):
    """A 1-update run (or one whose only episodes ended in its last update) drew a line of one
    point: nothing."""
    one = curves.load(str(_run(tmp_path / "one", returns=((10.0,), (12.0,)))))
    late = curves.load(str(_run(tmp_path / "late", returns=((None, None, 5.0), (None, None, 7.0)), algo="ppo")))
    whole = curves.load(str(_run(tmp_path / "whole", env="other")))
    notes = curves.plot([one, late, whole], str(tmp_path / "f.png"))
    first, second = drawn[0].axes[:2]
    assert [_has_marker(line) for line in first.get_lines()] == [True, True]
    assert [_has_marker(line) for line in second.get_lines()] == [False]  # a line of 3 points shows itself
    assert notes == []


def test_a_curve_without_any_episode_is_said_so_not_drawn_empty(tmp_path, drawn):
    """A run in which no episode ended was drawn as an empty panel with a legend entry, and
    plot said nothing."""
    empty = curves.load(str(_run(tmp_path / "empty", returns=((None, None), (None, None)))))
    notes = curves.plot([empty], str(tmp_path / "f.png"))
    assert notes == [f"{tmp_path / 'empty'}: no training episode ended; nothing to draw"]
    ax = drawn[-1].axes[0]
    assert not ax.get_lines() and ax.get_legend() is None
    assert [t.get_text() for t in ax.texts] == ["no training episode ended: BPO (2 seeds)"]
    # Beside a curve that has data: that one drawn and in the legend, the empty one named.
    full = curves.load(str(_run(tmp_path / "full", algo="ppo")))
    assert curves.plot([empty, full], str(tmp_path / "g.png")) == notes
    ax = drawn[-1].axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["PPO (2 seeds): mean"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["PPO (2 seeds): mean"]
    assert not ax.texts and ax.get_title().endswith("\nno training episode ended: BPO (2 seeds)")  # off the curve


def test_nothing_to_draw_is_a_curve_error():
    with pytest.raises(curves.CurveError, match="no run to draw"):
        curves.plot([], "unused.png")


def test_the_cli_prints_the_notes_and_still_writes_the_figure(tmp_path, capsys):
    from bpo_jax import cli

    empty = _run(tmp_path / "empty", returns=((None, None), (None, None)))
    assert cli.main(["plot", str(empty)]) == 0
    err = capsys.readouterr().err
    assert f"bpo-jax: note: {empty}: no training episode ended; nothing to draw" in err
    assert (empty / "figure.png").is_file()


def _edit_metrics(run, edit):
    """Rewrite ``run``'s metrics.csv rows through ``edit(rows) -> rows`` (dicts of strings)."""
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0])
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        w.writerows(edit(rows))


@pytest.mark.parametrize("edit, fragment", [
    (lambda rows: [r for r in rows if r["update"] != "2"], "has no rows of update 2"),
    (lambda rows: [{**r, "update": str(int(r["update"]) - 1)} for r in rows], "has rows of update 0"),
    (lambda rows: [{**r, "env_steps": "9999"} if r["update"] == "1" else r for r in rows],
     "update 2 at 128 env steps, not past update 1's 9,999"),
    (lambda rows: [{**r, "env_steps": "65"} if (r["update"], r["seed"]) == ("1", "1") else r for r in rows],
     "update 1 at 65 env steps where an earlier row has 64"),
    (lambda rows: [{**r, "episodes": "2.5"} if r["update"] == "3" else r for r in rows], "episodes is '2.5', not a count"),
])
def test_an_edited_metrics_file_is_refused_not_drawn(tmp_path, edit, fragment):
    """Each was read without a word: an update's rows dropped (the figure lost a point), steps
    running backwards (the report's points looked up in an unsorted array), a seed's steps
    differing (the last row read won), a fractional episode count."""
    run = _run(tmp_path / "run", returns=((10.0, 20.0, 30.0, 40.0), (11.0, 21.0, 31.0, 41.0)))
    _edit_metrics(run, edit)
    (run / "summary.json").write_text(json.dumps({"env_steps": 256, "num_seeds": 2}))
    with pytest.raises(curves.CurveError, match=re.escape(fragment)):
        curves.load(str(run))


def test_control_characters_in_a_title_leave_an_svg_that_parses(tmp_path):
    """A bell in --title made an SVG that no XML parser reads (exit 0)."""
    import xml.dom.minidom

    run = curves.load(str(_run(tmp_path / "run")))
    svg = _svg_text([run], tmp_path / "f.svg", "bell\x07 and\ttab")
    xml.dom.minidom.parseString(svg)
    assert ">bell and tab<" in svg  # a tab has no glyph: a space


def test_formats_that_cannot_hold_the_figure_are_not_offered():
    """eps/ps draw the seeds' bands opaque, hiding one another; pgf needs a TeX system (it ended
    in a traceback naming xelatex)."""
    formats = curves.image_formats()
    assert {"png", "pdf", "svg"} <= set(formats) and not {"eps", "ps", "pgf"} & set(formats)


def test_a_panel_names_each_grid_point_whose_budget_differs(tmp_path):
    """Grid points of one algorithm taken to other budgets read "BPO 192 steps x 2 seeds, BPO 320
    steps x 2 seeds", not saying which is which."""
    runs = curves.load_all([str(_run(tmp_path / "a", lr=0.1)),
                            str(_run(tmp_path / "b", lr=0.2, returns=((1.0,) * 5, (2.0,) * 5))),
                            str(_run(tmp_path / "c", algo="ppo"))])
    assert curves._budgets(runs) == ("BPO lr=0.1 192 steps x 2 seeds, BPO lr=0.2 320 steps x 2 seeds, "
                                     "PPO 192 steps x 2 seeds")
    alike = curves.load_all([str(_run(tmp_path / "d", lr=0.1)), str(_run(tmp_path / "e", lr=0.2))])
    assert curves._budgets(alike) == "BPO 192 steps x 2 seeds"


def test_a_title_keeps_its_unicode_spaces_and_loses_only_control_characters():
    assert curves._plain("BPO\u00a0vs\u202fPPO\u200d\x07\tend\nline") == "BPO\u00a0vs\u202fPPO\u200d end\nline"
