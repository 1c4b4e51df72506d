"""Every user mistake: one line naming the file and the field, exit code 2, nothing written."""

import copy

import pytest
import yaml
from helpers import SMOKE, harness, run_cli

BASE = yaml.safe_load(SMOKE.read_text())


def _with(path, value):
    cfg = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    node[last] = value
    return cfg


def _without_key(path):
    cfg = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    del node[last]
    return cfg


CASES = {
    # id: (study file contents or None for a missing file, extra args, field, words in the message)
    "missing_file": (None, [], "", "no such study file"),
    "malformed_yaml": ("name: smoke\nsearch: {temperature: [1, 2\n", [], "", "malformed YAML"),
    "unknown_key_typo": ({**BASE, "n_trails": 3}, [], "n_trails", "did you mean 'n_trials'"),
    "unknown_nested_key": (_with("search.temprature", {"low": 1, "high": 2}), [], "search.temprature",
                           "did you mean 'temperature'"),
    "wrong_type": (_with("training.epochs", "ten"), [], "training.epochs", "expected an integer"),
    "empty_list": ({**BASE, "objectives": []}, [], "objectives", "expected a list of strings, got []"),
    "temperature_not_positive": (_with("search.temperature", {"low": 0.0, "high": 2.0}), [],
                                 "search.temperature.low", "greater than 0"),
    "alpha_outside_unit": (_with("search.alpha", {"low": 0.0, "high": 1.5}), [], "search.alpha", "[0, 1]"),
    "width_below_one": (_with("search.width", {"choices": [0, 16]}), [], "search.width.choices",
                        "at least 1"),
    "range_low_above_high": (_with("search.temperature", {"low": 5.0, "high": 2.0}), [],
                             "search.temperature", "greater than high"),
    "unknown_family": (_with("student.family", "transformer"), [], "student.family",
                       "unknown model family"),
    "unknown_dataset": (_with("dataset.name", "no_such_dataset"), [], "dataset.name",
                        "unknown TFDS dataset"),
    "missing_name": (_without_key("name"), [], "name", "is required"),
    "unreachable_storage": (BASE, ["--storage", "postgresql://nobody@127.0.0.1:1/optuna"], "--storage",
                            "cannot connect"),
    "unreachable_tracking": (BASE, ["--tracking-uri", "http://127.0.0.1:1"], "--tracking-uri",
                             "not reachable"),
    "storage_folder_missing": (BASE, ["--storage", "sqlite:////no/such/folder/optuna.db"], "--storage",
                               "does not exist"),
    "bad_n_trials": (BASE, ["--n-trials", "0"], "--n-trials", "at least 1"),
    "no_width_fits_the_budget": ({**BASE, "max_params": 100}, [], "max_params", "no width"),
    "transfer_fraction_outside": ({**BASE, "transfer": {"fraction": 0}}, [], "transfer.fraction", "(0, 1]"),
    # distillation methods (docs/methods.md)
    "unknown_method": ({**BASE, "distillation": {"method": "fitnet"}}, [], "distillation.method", "unknown method"),
    "unknown_searched_method": (_with("search.method", {"choices": ["kd", "crd"]}), [], "search.method.choices",
                                "distinct methods"),
    "method_parameter_under_another_method": ({**BASE, "distillation": {"method": "logit_std", "dkd": {"beta": 2}}},
                                              [], "distillation.dkd", "parameters of method dkd"),
    "searched_parameter_of_an_unsearched_method": (_with("search.logit_std", {"weight": {"low": 1, "high": 9}}), [],
                                                   "search.logit_std", "parameters of method logit_std"),
    "arm_parameter_under_another_method": ({**BASE, "confirm": {"seeds": 2, "arms": [
        {"name": "a", "method": "kd", "logit_std": {"weight": 9}}]}}, [], "confirm.arms[0].logit_std",
        "parameters of method logit_std"),
    "negative_weight": ({**BASE, "distillation": {"method": "dkd", "dkd": {"beta": -1}}}, [], "distillation.dkd",
                        "0 or more"),
    "negative_searched_weight": ({**BASE, "search": {**BASE["search"], "method": {"choices": ["kd", "logit_std"]},
                                                     "logit_std": {"weight": {"low": -2, "high": 9}}}}, [],
                                 "search.logit_std.weight", "never negative"),
    # FitNets' hint layers, checked on the models before the teacher trains (docs/methods.md)
    "hint_layer_missing": ({**BASE, "distillation": {"method": "fitnets", "fitnets": {"student_layer": "nope"}}}, [],
                           "distillation.fitnets.student_layer", "has no layer 'nope'; its layers: "),
    "hint_from_a_feature_map_to_an_mlp": ({**_with("teacher.family", "cnn"), "distillation": {"method": "fitnets"}},
                                          [], "distillation.fitnets.teacher_layer", "no 1x1 convolution or dense"),
    # unlabeled images teach by soft targets alone: only a method registered `masked` (kd) takes them
    "unlabeled_under_fitnets": ({**BASE, "distillation": {"method": "fitnets"},
                                 "transfer": {"fraction": 0.5, "unlabeled_rest": True}}, [],
                                "transfer.unlabeled_rest", "method fitnets does not take; methods that do: kd"),
    "unlabeled_under_a_searched_method": ({**BASE, "search": {**BASE["search"], "method": {"choices": ["kd", "dkd"]}},
                                           "transfer": {"unlabeled": "more.npz"}}, [],
                                          "transfer.unlabeled", "method dkd does not take"),
    # cached views (distillation.teacher: views; docs/study-files.md)
    "views_count_below_one": ({**BASE, "distillation": {"teacher": "views", "views": {"count": 0}}}, [],
                              "distillation.views.count", "at least 1"),
    "views_negative_shift": ({**BASE, "distillation": {"teacher": "views", "views": {"shift": -1}}}, [],
                             "distillation.views.shift", "0 or more"),
    "views_negative_mixup": ({**BASE, "distillation": {"teacher": "views", "views": {"mixup": -0.2}}}, [],
                             "distillation.views.mixup", "0 (off)"),
    "views_without_views_mode": ({**BASE, "distillation": {"views": {"count": 4}}}, [], "distillation.views",
                                 "only with `teacher: views`"),
    "views_crop_larger_than_the_image": ({**BASE, "distillation": {"teacher": "views", "views": {"crop": [30, 20]}}},
                                         [], "distillation.views.crop", "larger than the images (28x28)"),
    "views_arm_unknown_mode": ({**BASE, "confirm": {"seeds": 2, "arms": [{"name": "a", "teacher": "view"}]}}, [],
                               "confirm.arms[0].teacher", "allowed: cached, online, views"),
}


def _write(tmp_path, content):
    study_file = tmp_path / "study.yaml"
    if content is not None:
        study_file.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    workdir = tmp_path / "work"
    workdir.mkdir()
    return study_file, workdir


@pytest.mark.parametrize("case", sorted(CASES))
def test_user_mistake_is_one_clear_line(case, tmp_path, capsys):
    content, extra, field, words = CASES[case]
    study_file, workdir = _write(tmp_path, content)
    code, out, err = run_cli(["study", study_file, "--workdir", workdir, *extra], capsys)
    assert code == 2, out[-2000:] + err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err + out
    assert str(study_file) in lines[0] and field in lines[0] and words in lines[0], lines[0]
    assert list(workdir.iterdir()) == [], "nothing may be written to the working directory"


@pytest.mark.parametrize("case", ["unknown_key_typo", "unreachable_storage"])
def test_the_real_command_line_exits_2_with_one_line(case, tmp_path):
    content, extra, field, words = CASES[case]
    study_file, workdir = _write(tmp_path, content)
    proc = harness("study", study_file, "--workdir", workdir, *extra, check=False, timeout=120)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error:") and words in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert list(workdir.iterdir()) == []


def test_existing_study_with_another_search_space_is_refused(tmp_path, capsys):
    import optuna

    from harness import config
    from harness.search import stores

    workdir = tmp_path / "work"
    workdir.mkdir()
    cfg = config.load(SMOKE)
    ws = stores.Workspace.resolve(workdir)
    stores.create_study(cfg, ws)  # a study 'smoke' made with the original file
    changed = tmp_path / "smoke.yaml"
    changed.write_text(yaml.safe_dump(_with("search.alpha", {"low": 0.0, "high": 0.5})))
    before = sorted(p.name for p in workdir.iterdir())
    code, _, err = run_cli(["study", changed, "--workdir", workdir], capsys)
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert str(changed) in line and "search" in line and "different search space" in line
    assert sorted(p.name for p in workdir.iterdir()) == before  # no mlflow.db, no caches
    st = optuna.load_study(study_name="smoke", storage=ws.storage)
    assert len(st.trials) == 0
