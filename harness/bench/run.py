"""`python -m harness bench`: the pairs table, the population rows, the CNN student rows, then the study part,
each with the share of the CPU it did not have (`contention`)."""

from __future__ import annotations

import json
from pathlib import Path

from harness.bench import cnn, host, pairs, population
from harness.bench.study import format_study, run_study_bench
from harness.training import contention


def main(args) -> int:
    """Each part unless its `--no-...` flag (or `--only` names another); `--json` writes every figure."""
    only = getattr(args, "only", None)
    result = {"host": host.describe()}
    print(host.format_host(result["host"]))
    shared = result["contention"] = {}
    if only is None:
        names = tuple(pairs.PAIRS) if args.pair == "all" else (args.pair,)
        with contention.measured(shared.setdefault("pairs", {})):
            result["pairs"] = pairs.run_pairs(names, repeats=args.repeats)
        print(pairs.format_table(result["pairs"]))
        print("\n".join(f"{name}: {r['bf16_note']}" for name, r in result["pairs"].items() if r.get("bf16_note")))
    if only is None and not args.no_population:
        with contention.measured(shared.setdefault("population", {})):
            result["population"] = population.run_population(repeats=args.repeats)
        print(population.format_population(result["population"]))
    if only == "cnn" or (only is None and not getattr(args, "no_cnn", False)):
        with contention.measured(shared.setdefault("cnn_students", {})):
            result["cnn_students"] = cnn.run_cnn(repeats=args.repeats)
        print(cnn.format_cnn(result["cnn_students"]))
    if only is None and not args.no_study:
        with contention.measured(shared.setdefault("study", {})):
            result["study"] = run_study_bench()
        print(format_study(result["study"]))
    print(contention.format_contention(shared))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0
