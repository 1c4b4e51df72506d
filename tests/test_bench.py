import math

from harness import bench


def test_run_pairs_reports_every_metric_for_both_pairs():
    """A smoke run on 2,048 examples: the shape of the report, not its speed."""
    result = bench.run_pairs(("mlp", "cnn"), repeats=1, limit=2048)
    assert set(result) == {"mlp", "cnn"}
    for pair, metrics in result.items():
        assert set(bench.KEYS) <= set(metrics), pair
        for key, value in metrics.items():
            assert math.isfinite(value) and value > 0, (pair, key, value)
    assert result["cnn"]["teacher_flops_ratio"] >= 10
    table = bench.format_table(result)
    assert "mlp" in table and "cnn" in table
    assert all(key in table for key in bench.KEYS)
