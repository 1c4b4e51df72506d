"""Every cache key holds everything that determines what its entry holds, and nothing else.

The walk goes over every field of the study file (`dataclasses.fields`, nested sections too),
changes one to another valid value (checked by `config.parse`), and asks each cache key: it must
change when the field changes what the entry holds (else a stale entry is used), and stay the
same when it does not (else nothing is ever shared). A field added to the study file later fails
here until it is classified below for every key: in the key, or out of it with the reason.
"""

import dataclasses
import json
import types

import numpy as np
import pytest
from helpers import ROOT

from harness import config
from harness.confirm import confirmation, keys
from harness.data import sources
from harness.distill import methods
from harness.distill.methods import Method, for_arm
from harness.distill.recipe import Recipe
from harness.record import TrialRecord
from harness.search import stores
from harness.teacher import trained as teacher
from harness.teacher.trained import Teacher
from harness.training import twin
from harness.training.context import Context, arm_config

DEFAULT = ROOT / "studies" / "fashion_mnist.yaml"

# ------------------------------------------------------------ changing one field

# A field that is null in the default study, and what it becomes.
WHEN_NULL = {
    "dataset.data_dir": "/elsewhere",
    "dataset.limit": 3000,
    "dataset.image_size": [32, 32],
    "dataset.color_mode": "rgb",
    "teacher.jit_compile": True,
    "transfer.omit_classes": [3],
    "search.width.low": 8,
    "search.width.high": 64,
    "search.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
    "search.epochs": {"choices": [2, 3]},
    "search.depth": {"choices": [2, 3]},
    "max_params": 100_000,
    "search.method": {"choices": ["kd", "dkd"]},
    "confirm.arms": [{"name": "a"}],
    "confirm.reference": "a",
    "distillation.views": {"count": 4},
}
# Where a value needs another field beside it: set on both sides of the comparison ...
CONTEXT = {
    "teacher.warmup_epochs": {"teacher.schedule": "linear_warmup_cosine", "teacher.warmup_epochs": 1},
    "training.warmup_epochs": {"training.schedule": "linear_warmup_cosine", "training.warmup_epochs": 1},
    "student.augment.jitter": {"distillation.teacher": "online"},
    "confirm.reference": {"confirm.arms": [{"name": "a"}, {"name": "b"}]},
    "distillation.views": {"distillation.teacher": "views"},
}
# ... or changed with it (fields no key reads).
WITH = {
    "transfer.labels": {"search.alpha": None},
    "search.width.low": {"search.width.choices": None, "search.width.high": 64},
    "search.width.high": {"search.width.choices": None, "search.width.low": 8},
}
FIRST = {"dataset.name": "mnist", "training.precision": "bfloat16"}  # "auto" may resolve to float32
CHOICES = (*config.FAMILIES, *config.OPTIMIZERS, *config.SCHEDULES, *config.PRECISIONS, *config.PRUNERS,
           *config.CHAMPION_RULES, "cached", "online", "flatten", "gap", "dkd", "logit_std")


def _get(d, dotted):
    for part in dotted.split("."):
        d = d[part]
    return d


def _set(d, dotted, value):
    *parents, last = dotted.split(".")
    for part in parents:
        d = d[part]
    d[last] = value


def _leaves(obj, prefix=""):
    """Dotted names of every field, into nested sections (`source` is no key of the file)."""
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name == "source":
            continue
        if dataclasses.is_dataclass(value):
            out += _leaves(value, f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


def _candidates(field, value):
    if field in FIRST:
        yield FIRST[field]
    if value is None:
        yield WHEN_NULL[field]
    elif isinstance(value, bool):
        yield not value
    elif isinstance(value, int):
        yield from (value + 1, value - 1)
    elif isinstance(value, float):
        yield from (value * 0.5, value + 0.1, value * 2)
    elif isinstance(value, str):
        yield from (c for c in CHOICES if c != value)
        yield value + "_other"
    elif isinstance(value, list):
        yield from (value[:-1], value[::-1], value + value[-1:])


def _parse(d):
    return config.parse(d, "walk.yaml")


def variants(base: config.StudyConfig):
    """(field, before, after): two valid studies differing in that field (and what it needs)."""
    for field in _leaves(base):
        if field in NEEDS_FILES:
            continue
        d = base.to_dict()
        for k, v in CONTEXT.get(field, {}).items():
            _set(d, k, v)
        before = _parse(d)
        for candidate in _candidates(field, _get(d, field)):
            if candidate == _get(d, field):
                continue
            after = json.loads(json.dumps(d))
            _set(after, field, candidate)
            for k, v in WITH.get(field, {}).items():
                _set(after, k, v)
            try:
                after = _parse(after)
            except config.ConfigError:
                continue
            yield field, before, after
            break
        else:
            raise AssertionError(f"no valid other value for {field}: add one to WHEN_NULL, CONTEXT or WITH")


# ------------------------------------------------------------ what is in each key and why not

NEVER = {  # fields that choose, stop, count or label runs: none of them changes what a run trains
    "search": "the search's ranges choose trials; a run's own values (T, alpha, width, recipe) are its key's",
    "objectives": "what the search ranks by; the runs it compares are trained alike",
    "max_params": "limits the widths searched; a run's width is its key's",
    "pruner": "stops trials; a stopped trial caches nothing",
    "n_trials": "how many trials, not what one trains",
    "champion": "picks among trained runs",
    "confirm.seeds": "how many seeds; each run's seed is its key's",
    "confirm.together": "a confirmation run's key holds whether it trained in a population "
                        "(keys.key, below); the search's twins and compiled models train alone",
    "confirm.arms": "each arm trains under its own config (arm_config): its runs' keys see it, "
                    "tested by test_an_arm_s_fields_change_its_runs_keys",
    "confirm.reference": "which arm the others are compared with, after training",
    "heartbeat": "how a dead worker is noticed",
    "exports": "what is exported after training",
    "exports_int8_max_drop": "which exports are placed, after training",
    "name": "a study's name: studies that train the same thing share their caches",
    "dataset": "reaches every key as the data's own digest (`Splits.digest`: images, labels, split "
               "indices), whatever the fields that read them; test_own_data.py checks the digest",
}
TEACHER = ["seed", "teacher", "training.precision"]
# distillation.views: under `teacher: views` the twin trains on the same views as its students
TWIN = ["seed", "teacher", "student", "training", "transfer.fraction", "transfer.omit_classes", "distillation.views"]
# Fields whose other value needs files (a model, a module, images): their keys hold the files' own
# digests, checked where the files are made.
NEEDS_FILES = {
    "dataset.folder": "another source of images: the keys see the digest of what it reads (test_own_data.py)",
    "dataset.arrays": "another source of images: the keys see the digest of what it reads (test_own_data.py)",
    "teacher.model": "test_own_teacher.py: a changed model file misses the cache",
    "teacher.input": "only with teacher.model; in loaded.key_part (test_own_teacher.py)",
    "teacher.outputs": "only with teacher.model; in loaded.key_part (test_own_teacher.py)",
    "teacher.endpoint": "only with teacher.model; in loaded.key_part (test_own_teacher.py)",
    "student.builder": "test_own_student.py: an edited builder file changes the twin and compile keys",
    "transfer.unlabeled": "test_own_student.py: the images' digest is in the distilled run's key, not the twin's",
    "transfer.unlabeled_rest": "test_own_student.py: with fraction < 1 only; distilled key, not the twin's",
}
NOT_IN = {
    "teacher": {
        "student": "the teacher is trained before and without any student",
        "training": "the students' recipe; the teacher has its own in `teacher:`",
        "distillation": "how students consult the teacher",
        "transfer": "the students' part of the transfer set; the teacher learns from the whole split",
    },
    "twin": {
        "transfer.labels": "a twin learns from hard labels whatever the students do",
        "distillation": "a twin never consults the teacher",
    },
    "confirm": {
        "transfer.labels": "reaches the run as the trial's alpha (fixed at 0), which the key holds",
        "distillation.method": "reaches a run as its trial's method (Method.of(record)), which the key holds",
    },
    "compiled": {
        "dataset": "fixed for a Context (its splits); a Context's compiled models are its own",
        "seed": "the seed re-arms a compiled model's variables (compiled.py)",
        "teacher": "fixed for a Context, whose compiled models are its own",
        "student": "fixed for a Context, whose compiled models are its own (Compiled.get refuses a "
                   "student of other shapes)",
        "transfer.labels": "alpha is a variable of the compiled step, re-armed per run",
        "distillation.method": "a run's method (its trial's) is an argument of the key, not the file's",
        "distillation.views": "the views are built in the pipeline; the step is the cached mode's",
    },
}
# Every registered method's sections (distill/methods/): a value, what it needs beside it, and why
# the keys that do not hold the file's section still see what it changes.
for _spec in map(methods.get, methods.names()):
    if _spec.Config is not None:
        _first = dataclasses.fields(_spec.Config)[0].name
        WHEN_NULL[f"distillation.{_spec.name}"] = {_first: getattr(_spec.Config(), _first) * 2 + 1}
        CONTEXT[f"distillation.{_spec.name}"] = {"distillation.method": _spec.name}
        NOT_IN["confirm"][f"distillation.{_spec.name}"] = ("reaches a run as its trial's own parameters "
                                                           "(Method.of(record)), which the key holds")
        NOT_IN["compiled"][f"distillation.{_spec.name}"] = ("a run's own parameters: numbers are variables "
                                                            "of the step, set per run; what shapes the graph "
                                                            "(a FitNets layer) is in Method.graph_name, an "
                                                            "argument of the key")
    if _spec.Space is not None:
        WHEN_NULL[f"search.{_spec.name}"] = {dataclasses.fields(_spec.Space)[0].name: {"low": 1.0, "high": 8.0}}
        CONTEXT[f"search.{_spec.name}"] = {"search.method": {"choices": [methods.DEFAULT, _spec.name]}}

IN = {
    "teacher": TEACHER,
    "twin": TWIN,
    "confirm": TWIN + ["distillation.teacher", "confirm.together"],
    "compiled": ["training", "transfer.fraction", "transfer.omit_classes", "distillation.teacher"],
}


def _under(field, names):
    return next((n for n in names if field == n or field.startswith(n + ".")), None)


def _classify(key, field):
    """True: the key must change; a string: why it must not."""
    if _under(field, IN[key]):
        return True
    why = NOT_IN[key].get(_under(field, NOT_IN[key]) or "") or NEVER.get(_under(field, NEVER) or "")
    if why is None:
        raise AssertionError(f"{field} is new: say whether it changes the {key} cache's content "
                             f"(IN[{key!r}]) or why not (NOT_IN or NEVER) in {__file__}")
    return why


# ------------------------------------------------------------ the keys

RECORD = TrialRecord(number=5, width=64, temperature=4.0, alpha=0.3)


def _splits(n=300):
    rng = np.random.default_rng(0)

    def split(m):
        return sources.Split(rng.integers(0, 256, (m, 28, 28, 1)).astype(np.uint8),
                             np.arange(m, dtype=np.int64) % 10, np.arange(m))
    return sources.Splits(split(n), split(50), split(50), 10, (28, 28, 1), "synthetic")


SPLITS = _splits()


def _compiled_key(cfg, tmp_path="/nonexistent"):
    fake = Teacher([], np.zeros((len(SPLITS.transfer), 10), np.float32), 0.0, 0.0, "k", tmp_path, from_cache=True)
    ctx = Context(cfg, stores.Workspace.resolve(tmp_path), SPLITS, fake, "0", "parent")
    recipe = Recipe.of(cfg.training)
    return ctx.compile_key("distilled", 64, recipe) + ctx.compile_key("scratch", 64, recipe)


def _confirm_key(cfg, record=RECORD, seed=3, arm=None):
    """A confirmation run's key, its loss as `confirmation.run` gives it (the trial's, or the arm's)."""
    ctx = types.SimpleNamespace(cfg=cfg, teacher=types.SimpleNamespace(key=teacher.cache_key(cfg, DATA)),
                                splits=types.SimpleNamespace(digest=DATA), unlabeled_key={},
                                together=lambda: cfg.confirm.together)
    return keys.key(ctx, record, seed, for_arm(Method.of(record), arm, cfg.distillation))


DATA = "d" * 64  # a data digest (`Splits.digest`), the same on both sides of every comparison
KEYS = {
    "teacher": lambda cfg: teacher.cache_key(cfg, DATA),
    "twin": lambda cfg: twin.key(cfg, 64, 3, data=DATA),
    "confirm": _confirm_key,
    "compiled": _compiled_key,
}


@pytest.fixture(scope="module")
def walk():
    return list(variants(config.load(DEFAULT)))


@pytest.mark.parametrize("key", sorted(KEYS))
def test_every_field_that_changes_an_entry_changes_its_key(walk, key):
    fn, wrong = KEYS[key], []
    for field, before, after in walk:
        must = _classify(key, field)
        changed = fn(before) != fn(after)
        if must is True and not changed:
            wrong.append(f"{field} changes what the {key} cache holds but not its key")
        elif must is not True and changed:
            wrong.append(f"{field} changes the {key} key though it should not ({must})")
    assert not wrong, "\n".join(wrong)
    assert len(walk) == len(set(_leaves(config.load(DEFAULT))) - set(NEEDS_FILES))  # every field was walked


def test_a_run_s_own_values_change_its_keys():
    """What a trial or confirmation run adds to the file: width, seed, T, alpha, its recipe."""
    cfg = config.load(DEFAULT)
    base = Recipe.of(cfg.training)
    for f in dataclasses.fields(Recipe):
        other = dataclasses.replace(base, **{f.name: next(c for c in _candidates(f.name, getattr(base, f.name))
                                                          if c != getattr(base, f.name))})
        assert twin.key(cfg, 64, 3, other, data=DATA) != twin.key(cfg, 64, 3, base, data=DATA), f.name
    assert twin.key(cfg, 32, 3, data=DATA) != twin.key(cfg, 64, 3, data=DATA) \
        != twin.key(cfg, 64, 4, data=DATA)
    changed = {"method": "dkd", "depth": 3}  # the default student has depth 2
    for name in TrialRecord.SUGGESTED:
        value = getattr(RECORD, name)
        other = dataclasses.replace(RECORD, **{name: changed[name] if name in changed else (value or 1) * 2})
        assert _confirm_key(cfg, other) != _confirm_key(cfg), name
    for spec in map(methods.get, methods.names()):  # every method's own parameters, under that method
        base = dataclasses.replace(RECORD, method=spec.name)
        for name, value in Method(spec.name).own().items():
            other = dataclasses.replace(base, own={name: _changed(value)})
            assert _confirm_key(cfg, other) != _confirm_key(cfg, base), name
    assert _confirm_key(cfg, seed=4) != _confirm_key(cfg)


def _changed(value):
    """Another value of a method's own parameter: a number doubled plus one, a name suffixed (a
    default layer, None, named)."""
    if value is None or isinstance(value, str):
        return (value or "layer") + "_other"
    return type(value)(value * 2 + 1)


def test_the_compiled_key_holds_the_recipe_width_and_kind_but_not_t_alpha_or_seed(tmp_path):
    cfg = config.load(DEFAULT)
    fake = Teacher([], np.zeros((len(SPLITS.transfer), 10), np.float32), 0.0, 0.0, "k", tmp_path, from_cache=True)
    ctx = Context(cfg, stores.Workspace.resolve(tmp_path), SPLITS, fake, "0", "parent")
    base = Recipe.of(cfg.training)
    keys = {ctx.compile_key("distilled", 64, base), ctx.compile_key("scratch", 64, base),
            ctx.compile_key("distilled", 32, base)}
    for f in dataclasses.fields(Recipe):
        value = getattr(base, f.name)
        other = next(c for c in _candidates(f.name, value) if c != value)
        keys.add(ctx.compile_key("distilled", 64, dataclasses.replace(base, **{f.name: other})))
    assert len(keys) == 3 + len(dataclasses.fields(Recipe))
    # T, alpha and the seed are no argument of the key: they are variables, re-armed per run
    # (test_compiled.py checks a re-armed model trains bit for bit like a fresh one)


def test_an_arm_s_fields_change_its_runs_keys():
    """An arm trains under `arm_config`; what it changes is keyed like the file's own fields."""
    cfg = config.load(DEFAULT)
    base = config.ArmConfig("a")
    changes = {"name": "b", "teacher": "online", "jitter": 1, "transfer": config.TransferConfig(fraction=0.5),
               "epochs": 3, "method": "dkd", "temperature": 7.0, "alpha": 0.9}
    needs = {"jitter": {"teacher": "online"}}
    for spec in map(methods.get, methods.names()):  # every method's section, under that method
        if spec.Config is not None:
            first = dataclasses.fields(spec.Config)[0].name
            changes[spec.name] = spec.Config(**{first: _changed(getattr(spec.Config(), first))})
            needs[spec.name] = {"method": spec.name}
    label_only = {"name": "a label: a stored row takes the arm's name when it is read"}
    assert set(changes) == {f.name for f in dataclasses.fields(config.ArmConfig)}, "classify the new arm field"
    for name, value in changes.items():
        start = dataclasses.replace(base, **needs.get(name, {}))
        arm = dataclasses.replace(start, **{name: value})
        before = _confirm_key(arm_config(cfg, start), arm=start)
        after = _confirm_key(arm_config(cfg, arm), arm=arm)
        assert (after != before) == (name not in label_only), name


def test_every_views_field_changes_the_keys_of_a_views_run():
    """Under `teacher: views`, what the views are (each field of `distillation.views`) keys the twin
    and the confirmation run that train on them; the teacher's own entry does not see them."""
    cfg = config.load(DEFAULT)
    base = dataclasses.replace(cfg, distillation=dataclasses.replace(cfg.distillation, teacher="views",
                                                                      views=config.ViewsConfig()))
    others = {"count": 2, "shift": 1, "flip": True, "crop": [20, 20], "mixup": 0.2}
    assert set(others) == {f.name for f in dataclasses.fields(config.ViewsConfig)}, "classify the new field"
    for name, value in others.items():
        other = dataclasses.replace(base, distillation=dataclasses.replace(
            base.distillation, views=dataclasses.replace(base.distillation.views, **{name: value})))
        assert twin.key(other, 64, 3, data=DATA) != twin.key(base, 64, 3, data=DATA), name
        assert _confirm_key(other) != _confirm_key(base), name
        assert teacher.cache_key(other, DATA) == teacher.cache_key(base, DATA), name


def test_a_stored_confirmation_row_takes_the_arm_and_trial_that_ask_for_it(tmp_path):
    """Two arms (or trials) that train the same thing share a run; each reads it under its own name."""
    cfg = config.load(DEFAULT)
    ctx = types.SimpleNamespace(cfg=cfg, teacher=types.SimpleNamespace(key="k"),
                                ws=types.SimpleNamespace(workdir=tmp_path), splits=types.SimpleNamespace(digest=DATA),
                                unlabeled_key={}, together=lambda: True)
    row = confirmation.Row(5, 64, 100, 4.0, 0.3, 3, "distilled", 0.8, 0.79, 0.9, 0.02, 0.1, "first")
    target = tmp_path / "confirm" / f"{keys.key(ctx, RECORD, 3, Method.of(RECORD))}.json"
    target.parent.mkdir()
    target.write_text(json.dumps(dataclasses.asdict(row)))
    got = confirmation.distilled(ctx, dataclasses.replace(RECORD, number=9), 3, arm="second")
    assert (got.arm, got.trial) == ("second", 9)
    assert json.dumps(dataclasses.asdict(dataclasses.replace(got, arm="first", trial=5))) == target.read_text()


def test_the_default_study_keeps_its_keys():
    """The default study's keys change only on purpose (the twin's: width 128, seed 4; for a given
    data digest). They changed once, when the data's digest replaced the dataset's name."""
    cfg = config.load(DEFAULT)
    assert teacher.cache_key(cfg, DATA) == "188483d25a71ea610806"
    assert twin.key(cfg, 128, 4, data=DATA) == "186ea4baf2488c6578e8"
