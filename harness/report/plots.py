"""The study's pictures and trial table, logged on its parent MLflow run.

Optuna's own matplotlib plots draw the optimisation history and the parameter
importances. The Pareto plot and the temperature x alpha plot are our own:
Optuna's cannot draw the scratch twins and the teacher beside the front,
and its contour plot needs many more trials than a study here has.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display here
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
from optuna.visualization import matplotlib as ovm  # noqa: E402

from harness.deploy.champion import front  # noqa: E402
from harness.distill import methods  # noqa: E402
from harness.record import TrialRecord, complete_records  # noqa: E402
from harness.training import twin

log = logging.getLogger(__name__)


COST_LABELS = {"params": "student parameters", "latency_ms": "single-image latency, float TFLite, one thread (ms)",
               "size_bytes": "float TFLite file size (bytes)"}


def pareto(records: list[TrialRecord], on_front: list[TrialRecord], name: str, teacher, base,
           champion: TrialRecord | None, path: Path, cost: str = "params") -> None:
    """Accuracy against the study's cost (its second objective); the scratch twins are drawn
    only against parameters (their latency is not measured)."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    x = lambda r: getattr(r, cost)  # noqa: E731
    ax.scatter([x(r) for r in records], [100 * r.val_accuracy for r in records],
               c=[r.temperature for r in records], cmap="viridis", s=40, alpha=0.8,
               norm=matplotlib.colors.LogNorm(), label="distilled trials (colour: temperature)")
    fr = sorted(on_front, key=lambda r: r.params)
    ax.plot([x(r) for r in fr], [100 * r.val_accuracy for r in fr],
            "-", color="tab:blue", lw=1.5, label="Pareto front")
    if base and cost == "params":
        ax.plot([b.params for b in base], [100 * b.val_accuracy for b in base], "s--", color="tab:gray",
                label="trained from scratch")
    ax.axhline(100 * teacher.val_accuracy, color="tab:red", ls=":", label=f"teacher ({teacher.params:,} params)")
    if champion is not None:
        ax.scatter([x(champion)], [100 * champion.val_accuracy], marker="*",
                   s=300, color="gold", edgecolor="black", zorder=5, label=f"champion (trial {champion.number})")
    if ax.collections and ax.collections[0].get_array() is not None and records:
        fig.colorbar(ax.collections[0], ax=ax, label="temperature")
    _save_size_plot(fig, ax, "validation accuracy (%)", f"{name}: accuracy vs {cost}", path, COST_LABELS[cost])


def temperature_alpha(records: list[TrialRecord], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 5))
    gains = [100 * r.distillation_gain for r in records]
    lim = max([abs(g) for g in gains] + [0.1])
    used = list(dict.fromkeys(r.method or methods.DEFAULT for r in records))
    for method, marker in zip(used, "o^sDv"):  # one marker per distillation method
        rs = [r for r in records if (r.method or methods.DEFAULT) == method]
        sc = ax.scatter([r.temperature for r in rs], [r.alpha for r in rs], c=[100 * r.distillation_gain for r in rs],
                        cmap="RdBu", vmin=-lim, vmax=lim, s=[20 + r.width ** 0.5 * 4 for r in rs], marker=marker,
                        edgecolor="black", linewidth=0.4, label=method if len(used) > 1 else None)
    if len(used) > 1:
        ax.legend(loc="best", fontsize=8, title="method")
    fig.colorbar(sc, ax=ax, label="distillation gain (val accuracy points, one seed)")
    ax.set_xscale("log")
    ax.set(xlabel="temperature", ylabel="alpha (weight of the hard labels)",
           title="temperature x alpha (size: student width)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def confirmed(summary, teacher_test: float, name: str, path: Path) -> None:
    """Test accuracy against parameters with 95% intervals over seeds, distilled vs scratch
    (with several arms: one column per configuration and arm instead)."""
    if any(c.arm or c.method for c in summary):  # several arms, or methods: one column each
        return _confirmed_arms(summary, teacher_test, name, path)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for arm, colour, label in (("test", "tab:blue", "distilled"), ("scratch_test", "tab:gray", "from scratch")):
        cs = sorted(summary, key=lambda c: c.params)
        iv = [getattr(c, arm) for c in cs]
        ax.errorbar([c.params for c in cs], [100 * i.mean for i in iv], yerr=[100 * i.half_width for i in iv],
                    fmt="o-" if arm == "test" else "s--", color=colour, capsize=4, label=f"{label} (95% CI)")
    for c in summary:
        if c.test_gain.excludes_zero:
            ax.annotate(f"{c.test_gain.points()}*", (c.params, 100 * c.test.high), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=7)
    ax.axhline(100 * teacher_test, color="tab:red", ls=":", label="teacher")
    n = summary[0].n if summary else 0
    _save_size_plot(fig, ax, "test accuracy (%)", f"{name}: confirmed over {n} seeds (* gain whose CI excludes 0)",
                    path)


def _confirmed_arms(summary, teacher_test: float, name: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(max(7.0, 1.6 * len(summary) + 2), 5))
    for k, (field, colour, fmt, label) in enumerate((("scratch_test", "tab:gray", "s", "from scratch (the arm's twin)"),
                                                     ("test", "tab:blue", "o", "distilled"))):
        iv = [getattr(c, field) for c in summary]
        ax.errorbar([i + 0.12 * (2 * k - 1) for i in range(len(summary))], [100 * v.mean for v in iv],
                    yerr=[100 * v.half_width for v in iv], fmt=fmt, color=colour, capsize=4, label=f"{label} (95% CI)")
    for i, c in enumerate(summary):
        ax.annotate(c.test_gain.points() + ("*" if c.test_gain.excludes_zero else ""), (i, 100 * c.test.high),
                    textcoords="offset points", xytext=(0, 8), ha="center", fontsize=7)
    ax.axhline(100 * teacher_test, color="tab:red", ls=":", label="teacher")
    ax.set_xticks(range(len(summary)), [f"{c.arm or c.method or methods.DEFAULT}\nw={c.width}, {c.params:,} p"
                                        for c in summary], fontsize=8)
    ax.set_xlim(-0.6, len(summary) - 0.4)
    n = summary[0].n if summary else 0
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{name}: {n} seeds per arm\n(label: paired gain over the arm's scratch twin; * its CI excludes 0)",
                 fontsize=10)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _save_size_plot(fig, ax, ylabel: str, title: str, path: Path, xlabel: str = COST_LABELS["params"]) -> None:
    """Accuracy against parameters (or another cost; log scale), legend, grid; written and closed."""
    ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _optuna_plot(fn, study, path: Path, **kw) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        try:
            ax = getattr(ovm, fn)(study, target=lambda t: t.values[0], target_name="val_accuracy", **kw)
        except (ValueError, RuntimeError, ZeroDivisionError) as e:  # too few trials for this plot
            log.info("skipped %s: %s", fn, e)
            return
    fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
    fig.set_size_inches(7, 4.5)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def trials_table(study):
    df = study.trials_dataframe(attrs=("number", "state", "params", "user_attrs", "duration"))
    keep = [c for c in df.columns if not c.startswith("user_attrs_model")]
    return df[keep]


def log_study_artifacts(study, ctx, champion: TrialRecord | None) -> None:
    records = complete_records(study.trials)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        trials_table(study).to_csv(d / "trials.csv", index=False)
        mlflow.log_artifact(str(d / "trials.csv"))
        plots = d / "plots"
        plots.mkdir()
        if records:
            base = twin.load(ctx.ws.workdir, ctx.cfg, [r.width for r in records],
                                  data=ctx.splits.digest)
            pareto(records, front(study, ctx.cfg), ctx.cfg.name, ctx.teacher, base, champion,
                   plots / "pareto_front.png", ctx.cfg.cost)
            temperature_alpha(records, plots / "temperature_alpha.png")
            _optuna_plot("plot_optimization_history", study, plots / "optimization_history.png")
            if len(records) >= 2:
                _optuna_plot("plot_param_importances", study, plots / "param_importances.png")
        mlflow.log_artifacts(str(plots), "plots")
