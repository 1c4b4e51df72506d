import math

import numpy as np
import pytest

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
    from harness.bench import cnn, population

    fake = {"mlp": {k: 1.0 for k in bench.KEYS}}
    rows = [{"k": 2, "width": 16, "lone_epoch_s": 2.0, "together_epoch_s": 1.0, "speedup": 2.0}]
    cnn_rows = [{"family": "separable", "params": 5162, "xla": False, "examples": 10, "epoch_s": 1.0, "gflops": 3.0,
                 "matmul_gflops": 100.0, "share": 0.03},
                {"family": "cnn", "params": 4466, "xla": False, "examples": 10, "epoch_s": 1.0, "gflops": 3.0,
                 "matmul_gflops": 100.0, "share": 0.03, "k": 10, "speedup": 3.25}]
    monkeypatch.setattr(bench, "run_pairs", lambda pairs, repeats: fake)
    monkeypatch.setattr(population, "run_population", lambda repeats: rows)
    monkeypatch.setattr(cnn, "run_cnn", lambda repeats: cnn_rows)
    out = tmp_path / "bench.json"
    args = cli.build_parser().parse_args(["bench", "--pair", "mlp", "--no-study", "--json", str(out)])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "scratch_epoch_s" in printed and "2.00x" in printed and "separable" in printed and "3.25x" in printed
    written = json.loads(out.read_text())
    host = written.pop("host")  # the real machine's, first: figures from two hosts compare only as ratios
    shared = written.pop("contention")  # what each part shared the CPU with, measured around it
    assert written == {"pairs": fake, "population": rows, "cnn_students": cnn_rows}
    assert shared.keys() == written.keys() and all({"steal_pct", "others_pct", "wall_s"} <= f.keys()
                                                   for f in shared.values())
    assert "stolen" in printed.splitlines()[-1]
    assert host["onednn"] is True and host["cores"] >= 1 and "oneDNN on" in printed.splitlines()[0]
    assert host["cpu"] and host["cpu"] in printed.splitlines()[0]
    # --only cnn: that part alone; --no-cnn: every part but it
    args = cli.build_parser().parse_args(["bench", "--only", "cnn", "--json", str(out)])
    assert args.func(args) == 0 and json.loads(out.read_text()).keys() == {"host", "cnn_students", "contention"}
    shared = json.loads(out.read_text())["contention"]
    assert shared.keys() == {"cnn_students"} and 0 <= shared["cnn_students"]["steal_pct"] <= 100
    assert json.loads(out.read_text())["cnn_students"] == cnn_rows
    args = cli.build_parser().parse_args(["bench", "--no-cnn", "--no-study", "--json", str(out)])
    assert args.func(args) == 0 and "cnn_students" not in json.loads(out.read_text())


def test_the_host_reads_its_cpu_and_extensions_from_cpuinfo(tmp_path):
    from harness.bench import host

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx2 fma\n\n"
                    "processor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx2 fma\n")
    described = host.describe(info)
    assert described["cpu"] == "AMD EPYC" and described["extensions"] == ["avx2", "fma"]
    assert host.describe(tmp_path / "absent")["extensions"] == []


def test_cnn_rows_time_each_family_with_xla_on_and_off_and_a_population():
    """The smallest real run (one small plain CNN, 256 examples, K 2): the shape of the rows, not their speed."""
    from harness.bench import cnn

    lone_on, lone_off, pop = cnn.run_cnn(families=("cnn",), sizes={"cnn": (2,)}, repeats=1, limit=256,
                                         population_limit=256, k=2)
    assert (lone_on["xla"], lone_off["xla"]) == (True, False) and pop["k"] == 2
    for row in (lone_on, lone_off, pop):
        assert row["family"] == "cnn" and row["params"] > 0 and row["matmul_gflops"] > 0
        assert row["gflops"] == pytest.approx(row["k"] * row["train_flops_per_example"] * row["examples"]
                                              / row["epoch_s"] / 1e9 if "k" in row else
                                              row["train_flops_per_example"] * row["examples"] / row["epoch_s"] / 1e9)
        assert row["share"] == pytest.approx(row["gflops"] / row["matmul_gflops"])
    assert pop["speedup"] == pop["lone_epoch_s"] / pop["epoch_s"] > 0


def test_flops_count_depthwise_separable_and_batch_norm_from_their_shapes():
    import keras

    from harness.bench.cnn import separable_cnn
    from harness.distill import models

    x = keras.Input((8, 8, 4))
    dw = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)
    sep = keras.layers.SeparableConv2D(5, 3, padding="same")
    bn = keras.layers.BatchNormalization()
    model = keras.Model(x, bn(sep(dw(x))))
    assert models.flops_per_example(model) == (2 * 64 * 9 * 4 * 2            # depthwise: 3x3 per channel, x2
                                               + 2 * 64 * (9 * 8 + 8 * 5)     # separable: depthwise + pointwise
                                               + 2 * 64 * 5)                  # batch norm: scale and shift
    # the bench's separable students: depthwise and pointwise layers all counted, between 5 K and 60 K params
    small, large = (separable_cnn((28, 28, 1), 10, a) for a in (0.3, 1.15))
    assert 4_000 < small.count_params() < large.count_params() < 60_000
    assert models.flops_per_example(large) > 3 * models.flops_per_example(small)


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


def test_a_spawned_childs_peak_memory_is_its_own():
    """The bench's study child reports its own peak, not the parent's pages it held between its
    fork and its exec (which `ru_maxrss` keeps on Linux)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from harness.bench.memory import peak_rss_gib

    held = np.ones(2**30 // 8)  # 1 GiB resident in this process
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        child = pool.submit(peak_rss_gib).result()
    assert held.nbytes == 2**30 and peak_rss_gib() >= 1.0  # the parent's own peak holds the GiB
    assert child < 0.5  # the child's does not
