"""Finished runs against the paper's reported values, as a Markdown table.

The paper's values are data (``bpo_jax/data/paper_results.json``, with their source): the
final value and the band across seeds at the end of each curve, and the intermediate values the
reference digest reads off the figures (Hopper at 1M and 2M steps, ...; a curve's peak where the
digest gives its step, such as Ant BPO's 5,286 at 18.3M, is one of them).  For every run this
compares, at each of those points the run reached:

* at the paper's budget, our mean over seeds against the paper's band: **above**, **inside**
  or **below** it;
* at an intermediate point (one value, no band), the paper's value against the range of our
  seeds: **above** (every seed beats it), **inside** (it lies within our seeds' range) or
  **below** (every seed falls short).

A run shorter than every paper point is listed at its own end, "not comparable".  Our value at
a step is :meth:`bpo_jax.curves.Curve.at`: the mean return of the training episodes that
ended in the last 10% of updates up to that step (the paper's is SB3's mean of the last 100
training episodes; both are training-episode returns of the stochastic policy).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Optional, Sequence

import numpy as np

from bpo_jax.curves import Curve


@dataclass(frozen=True)
class PaperValue:
    """What the paper reports for one (environment, algorithm)."""

    env: str
    algo: str
    budget: int
    """Steps per seed (or iterations, see ``x``) at the end of the paper's curve."""
    final: float
    band: tuple[float, float]
    """The band across seeds at the end of the curve."""
    points: dict[int, float]
    """Intermediate values: step (or iteration) -> value."""
    figure: str
    x: str = "env_steps"
    """Unit of ``budget`` and ``points``: env_steps, or iterations (one update each)."""


@dataclass(frozen=True)
class Row:
    """Our seeds at one step, beside the paper's value there."""

    env: str
    algo: str
    step: int
    values: np.ndarray
    """[S] our return per seed at ``step``."""
    paper: Optional[float]
    band: Optional[tuple[float, float]]
    verdict: str


def paper_source() -> str:
    return _data()["source"]


def paper_values() -> list[PaperValue]:
    return [PaperValue(env=r["env"], algo=r["algo"], budget=int(r["budget"]), final=float(r["final"]),
                       band=(float(r["band"][0]), float(r["band"][1])),
                       points={int(k): float(v) for k, v in r["points"].items()}, figure=r["figure"],
                       x=r.get("x", "env_steps"))
            for r in _data()["results"]]


def paper_value(env: str, algo: str) -> Optional[PaperValue]:
    return next((p for p in paper_values() if p.env == env and p.algo == algo), None)


def _data() -> dict:
    return json.loads(resources.files("bpo_jax").joinpath("data/paper_results.json").read_text())


def verdict(values: np.ndarray, paper: float, band: Optional[tuple[float, float]]) -> str:
    """above / inside / below: our mean against the paper's band, or, for a single paper value,
    that value against our seeds' range."""
    v = values[np.isfinite(values)]
    if not len(v):
        return "no episode finished"
    if band is not None:
        lo, hi = band
        mean = v.mean()
        return "above the paper's band" if mean > hi else "below the paper's band" if mean < lo else "inside the paper's band"
    if v.min() > paper:
        return "above the paper (every seed)"
    if v.max() < paper:
        return "below the paper (every seed)"
    return "inside (the paper's value is within our seeds' range)"


def compare(curve: Curve) -> list[Row]:
    """Rows for one run: each paper point it reached (and the paper's budget), else its end."""
    pv = paper_value(curve.env, curve.algo)
    reached = curve.steps[-1]
    rows = []
    if pv is not None:
        unit = curve.steps[0] if pv.x == "iterations" else 1  # steps per iteration = per update
        for point, value in sorted(pv.points.items()):
            # A point before the first update ends has no return of its own (the run's first
            # updates are longer than it): left out, as a point past the run's end.
            if curve.steps[0] <= point * unit * 1.001 and point * unit <= reached * 1.001:
                rows.append(Row(curve.env, curve.algo, int(point * unit), curve.at(point * unit), value, None,
                                verdict(curve.at(point * unit), value, None)))
        if pv.budget * unit <= reached * 1.001:
            at = curve.at(pv.budget * unit)
            rows.append(Row(curve.env, curve.algo, int(pv.budget * unit), at, pv.final, pv.band,
                            verdict(at, pv.final, pv.band)))
    if not rows:
        why = "no paper value for this task" if pv is None else (
            f"not comparable: the paper's first value is at {min([pv.budget, *pv.points]) :,} "
            f"{'iterations' if pv.x == 'iterations' else 'steps'}")
        rows.append(Row(curve.env, curve.algo, int(reached), curve.at(reached), None, None, why))
    return rows


def _spread(values: np.ndarray) -> str:
    v = values[np.isfinite(values)]
    if not len(v):
        return "n/a"
    if len(v) == 1:
        return f"{v[0]:,.1f}"
    return f"{v.mean():,.1f} ± {v.std(ddof=1):,.1f} [{v.min():,.1f}, {v.max():,.1f}]"


def _cell(text: str) -> str:
    """``text`` as one table cell: a ``|`` (a run folder named ``lr|a``, which names its
    variant) escaped, else it splits the row into more cells than the header; a line break
    (also legal in a folder name) ends the row, so it becomes a space."""
    return " ".join(text.replace("|", r"\|").splitlines())


def markdown(curves: Sequence[Curve], title: str = "Results against the paper") -> str:
    """The report: one table row per (run, compared point), then the source of the paper's values."""
    lines = [f"# {_cell(title)}", "",
             "Ours: mean ± standard deviation over seeds [min, max] of the training-episode return "
             "(episodes that ended in the last 10% of updates up to the step).", "",
             "| env | algo | steps per seed | seeds | ours | paper | paper band | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for curve in curves:
        for r in compare(curve):
            paper = "" if r.paper is None else f"{r.paper:,.1f}"
            band = "" if r.band is None else f"{r.band[0]:,.1f} – {r.band[1]:,.1f}"
            counted = int(np.isfinite(r.values).sum())  # a seed with no episode in the window has no value
            seeds = f"{counted}" if counted == len(r.values) else f"{counted} of {len(r.values)}"
            lines.append(f"| {_cell(r.env)} | {_cell(curve.name)} | {r.step:,} | {seeds} | "
                         f"{_spread(r.values)} | {paper} | {band} | {r.verdict} |")
    lines += ["", f"Paper values: {paper_source()}", ""]
    return "\n".join(lines)
