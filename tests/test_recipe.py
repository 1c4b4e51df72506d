"""The training recipe: in the search, shared by a trial and its scratch twin, part of the twin's key."""

import json

import mlflow
import optuna

from harness import config, tracking
from harness.data.evaluate import predict_logits
from harness.distill import models
from harness.distill.recipe import Recipe
from harness.search import stores
from harness.search.trial import Objective
from harness.teacher.trained import Teacher
from harness.training import twin
from harness.training.context import Context


def test_the_twins_key_changes_with_the_recipe():
    cfg = config.parse({"name": "t"})
    base = Recipe.of(cfg.training)
    assert twin.key(cfg, 16, 0, data="d") == twin.key(cfg, 16, 0, base, data="d")
    keys = {twin.key(cfg, 16, 0, r, data="d") for r in
            (base, Recipe.of(cfg.training, learning_rate=0.01), Recipe.of(cfg.training, epochs=7))}
    assert len(keys) == 3


def test_a_suggested_recipe_reaches_the_trial_and_its_twin(small_splits, tmp_path):
    cfg = config.parse({
        "name": "recipe", "dataset": {"limit": 2000},
        "training": {"epochs": 2, "schedule": "cosine"},
        "search": {"width": {"choices": [8]}, "learning_rate": {"low": 0.003, "high": 0.004, "log": True},
                   "epochs": {"choices": [1]}},
        "confirm": {"seeds": 0}}, "recipe.yaml")
    ws = stores.Workspace.resolve(tmp_path)
    exp = tracking.setup(ws.tracking_uri, ws.workdir, cfg.name)
    net = models.mlp((28, 28, 1), 10, [16], name="teacher", seed=0)  # untrained: any teacher will do here
    logits = predict_logits(net, small_splits.transfer.images)
    teacher = Teacher([net], logits, 0.0, 0.0, "k", tmp_path, from_cache=True)
    with tracking.start("study", "parent", experiment_id=exp) as parent:
        ctx = Context(cfg, ws, small_splits, teacher, exp, parent.info.run_id)
        study = optuna.create_study(directions=["maximize", "minimize"])
        study.optimize(Objective(ctx), n_trials=1)
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE
    lr, epochs = trial.params["learning_rate"], trial.params["epochs"]
    assert 0.003 <= lr <= 0.004 and epochs == 1
    recipe = Recipe.of(cfg.training, lr, epochs)
    stored = json.loads(twin.path(ws.workdir, cfg, 8, cfg.seed, recipe, data=small_splits.digest).read_text())
    assert stored["learning_rate"] == lr and stored["epochs"] == 1
    # the file's own recipe: never trained
    assert not twin.path(ws.workdir, cfg, 8, cfg.seed, data=small_splits.digest).exists()
    run = mlflow.get_run(trial.user_attrs["mlflow_run_id"])
    assert float(run.data.params["learning_rate"]) == lr and run.data.params["epochs"] == "1"
    assert run.data.params["schedule"] == "cosine" and trial.user_attrs["epochs_run"] == 1
