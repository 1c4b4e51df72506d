"""The study's pictures and trial table, logged on its parent MLflow run.

Optuna's own matplotlib plots draw the optimisation history and the parameter
importances. The Pareto plot and the temperature x alpha plot are our own:
Optuna's cannot draw the scratch baselines and the teacher beside the front,
and its contour plot needs many more trials than a study here has.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import optuna  # noqa: E402

log = logging.getLogger(__name__)
COMPLETE = optuna.trial.TrialState.COMPLETE


def _complete(study):
    return [t for t in study.trials if t.state == COMPLETE and "val_accuracy" in t.user_attrs]


def baselines(ctx, widths) -> list[dict]:
    out = []
    for w in sorted(set(widths)):
        p = ctx.ws.workdir / "baselines" / f"{ctx.baseline_key(w)}.json"
        if p.exists():
            out.append(json.loads(p.read_text()))
    return out


def pareto(study, cfg, teacher, base, champion, path: Path) -> None:
    from .champion import front

    trials = _complete(study)
    on_front = {t.number for t in front(study, cfg)}
    fig, ax = plt.subplots(figsize=(7.5, 5))
    ax.scatter([t.user_attrs["params"] for t in trials], [100 * t.user_attrs["val_accuracy"] for t in trials],
               c=[t.params["temperature"] for t in trials], cmap="viridis", s=40, alpha=0.8,
               norm=matplotlib.colors.LogNorm(), label="distilled trials (colour: temperature)")
    fr = sorted((t for t in trials if t.number in on_front), key=lambda t: t.user_attrs["params"])
    ax.plot([t.user_attrs["params"] for t in fr], [100 * t.user_attrs["val_accuracy"] for t in fr],
            "-", color="tab:blue", lw=1.5, label="Pareto front")
    if base:
        ax.plot([b["params"] for b in base], [100 * b["val_accuracy"] for b in base], "s--", color="tab:gray",
                label="trained from scratch")
    ax.axhline(100 * teacher.val_accuracy, color="tab:red", ls=":", label=f"teacher ({teacher.params:,} params)")
    if champion is not None:
        ax.scatter([champion.user_attrs["params"]], [100 * champion.user_attrs["val_accuracy"]], marker="*",
                   s=300, color="gold", edgecolor="black", zorder=5, label=f"champion (trial {champion.number})")
    if ax.collections and ax.collections[0].get_array() is not None and len(trials):
        fig.colorbar(ax.collections[0], ax=ax, label="temperature")
    ax.set_xscale("log")
    ax.set(xlabel="student parameters", ylabel="validation accuracy (%)",
           title=f"{cfg.name}: accuracy vs size")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def temperature_alpha(study, path: Path) -> None:
    trials = _complete(study)
    fig, ax = plt.subplots(figsize=(6.5, 5))
    gains = [100 * t.user_attrs["distillation_gain"] for t in trials]
    lim = max([abs(g) for g in gains] + [0.1])
    sc = ax.scatter([t.params["temperature"] for t in trials], [t.params["alpha"] for t in trials], c=gains,
                    cmap="RdBu", vmin=-lim, vmax=lim, s=[20 + t.params["width"] ** 0.5 * 4 for t in trials],
                    edgecolor="black", linewidth=0.4)
    fig.colorbar(sc, ax=ax, label="distillation gain (val accuracy points)")
    ax.set_xscale("log")
    ax.set(xlabel="temperature", ylabel="alpha (weight of the hard labels)",
           title="temperature x alpha (size: student width)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _optuna_plot(fn, study, path: Path, **kw) -> None:
    from optuna.visualization import matplotlib as ovm

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


def log_study_artifacts(study, ctx, champion) -> None:
    trials = _complete(study)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        trials_table(study).to_csv(d / "trials.csv", index=False)
        mlflow.log_artifact(str(d / "trials.csv"))
        plots = d / "plots"
        plots.mkdir()
        if trials:
            base = baselines(ctx, [t.params["width"] for t in trials])
            pareto(study, ctx.cfg, ctx.teacher, base, champion, plots / "pareto_front.png")
            temperature_alpha(study, plots / "temperature_alpha.png")
            _optuna_plot("plot_optimization_history", study, plots / "optimization_history.png")
            if len(trials) >= 2:
                _optuna_plot("plot_param_importances", study, plots / "param_importances.png")
        mlflow.log_artifacts(str(plots), "plots")
