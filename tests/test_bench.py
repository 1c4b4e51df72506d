import math

from harness.bench import pairs as bench
from harness.distill import precision


def test_run_pairs_reports_every_metric():
    """The smallest real run (one pair, 256 examples): the shape of the report, not its speed."""
    result = bench.run_pairs(("mlp",), repeats=1, limit=256)
    assert set(result) == {"mlp"}
    metrics = result["mlp"]
    assert set(bench.KEYS) <= set(metrics)
    no_bf16 = "bf16_note" in metrics  # bfloat16 keys are null, with the reason, where the hardware has none
    assert no_bf16 == (precision.resolve("auto") == "float32")
    for key, value in metrics.items():
        if no_bf16 and key in bench.BF16_KEYS + ("bf16_note",):
            assert value is None or key == "bf16_note", (key, value)
            continue
        assert math.isfinite(value) and (value > 0 or key == "student_xla"), (key, value)
    table = bench.format_table(result)
    assert "mlp" in table and all(key in table for key in bench.KEYS)


def test_the_cnn_pair_is_a_teacher_far_dearer_than_its_student():
    from harness.distill import models

    spec = bench.PAIRS["cnn"]
    teacher = models.build_teacher(spec["teacher"], (28, 28, 1), 10)
    ratio = models.flops_per_example(teacher) / models.flops_per_example(spec["student"]((28, 28, 1), 10))
    assert ratio >= spec["min_ratio"] >= 10


def test_command_line_prints_the_table_and_writes_json(monkeypatch, tmp_path, capsys):
    """`python -m harness bench --no-study`: the wiring only, with the timing stubbed out."""
    import json

    from harness import cli
    from harness.bench import population

    fake = {"mlp": {k: 1.0 for k in bench.KEYS}}
    rows = [{"k": 2, "width": 16, "lone_epoch_s": 2.0, "together_epoch_s": 1.0, "speedup": 2.0}]
    monkeypatch.setattr(bench, "run_pairs", lambda pairs, repeats: fake)
    monkeypatch.setattr(population, "run_population", lambda repeats: rows)
    out = tmp_path / "bench.json"
    args = cli.build_parser().parse_args(["bench", "--pair", "mlp", "--no-study", "--json", str(out)])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "scratch_epoch_s" in printed and "2.00x" in printed
    assert json.loads(out.read_text()) == {"pairs": fake, "population": rows}


def test_population_rows_time_lone_against_together():
    """The smallest real run (K 2, width 16, 512 examples): the shape of a row, not its speed."""
    from harness.bench import population

    (row,) = population.run_population(sizes=(2,), widths=(16,), repeats=1, limit=512)
    assert (row["k"], row["width"]) == (2, 16)
    assert row["speedup"] == row["lone_epoch_s"] / row["together_epoch_s"] > 0


def test_precision_accuracy_reads_the_study_it_is_given(tmp_path, capsys):
    """`harness bench --precision-accuracy --study FILE` from any folder (an installed harness has no
    studies/): the file named is the one read, and a missing one is a one-line error, exit code 2."""
    from harness import cli

    missing = tmp_path / "nowhere.yaml"
    assert cli.main(["bench", "--precision-accuracy", "--study", str(missing), "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(missing) in err
