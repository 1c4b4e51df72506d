import math

from harness import bench


def test_run_pairs_reports_every_metric_for_both_pairs():
    """A smoke run on 2,048 examples: the shape of the report, not its speed."""
    result = bench.run_pairs(("mlp", "cnn"), repeats=1, limit=2048)
    assert set(result) == {"mlp", "cnn"}
    for pair, metrics in result.items():
        assert set(bench.KEYS) <= set(metrics), pair
        for key, value in metrics.items():
            assert math.isfinite(value) and (value > 0 or key == "student_xla"), (pair, key, value)
    assert result["cnn"]["teacher_flops_ratio"] >= 10
    table = bench.format_table(result)
    assert "mlp" in table and "cnn" in table
    assert all(key in table for key in bench.KEYS)


def test_command_line_prints_the_table_and_writes_json(monkeypatch, tmp_path, capsys):
    """`python -m harness bench --no-study`: the wiring only, with the timing stubbed out."""
    import json

    from harness import cli

    fake = {"mlp": {k: 1.0 for k in bench.KEYS}}
    monkeypatch.setattr(bench, "run_pairs", lambda pairs, repeats: fake)
    out = tmp_path / "bench.json"
    args = cli.build_parser().parse_args(["bench", "--pair", "mlp", "--no-study", "--json", str(out)])
    assert args.func(args) == 0
    assert "scratch_epoch_s" in capsys.readouterr().out
    assert json.loads(out.read_text()) == {"pairs": fake}
