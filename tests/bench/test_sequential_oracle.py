"""bench/sequential.py --oracle: the bound any stopping rule on the design meets, from the pairs' replays."""

import importlib.util
import sys

from tests.conftest import REPO


def _bench():
    spec = importlib.util.spec_from_file_location("bench_sequential", REPO / "bench" / "sequential.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_sequential", mod)
    spec.loader.exec_module(mod)
    return mod


def _row(fixed, seq, used, planned=200, replayable=True):
    return {"fixed_n": fixed, "sequential": seq, "items_used": used, "planned": planned, "replayable": replayable}


def test_the_oracle_stops_undecided_pairs_at_once_and_decided_ones_where_the_design_first_agrees():
    bench = _bench()
    rows = [  # what the real rule did (with futility stops): only the fixed-n verdict and the plan are read
        _row("undecided", "undecided", 200),
        _row("within", "undecided", 100),
        _row("beyond", "undecided", 200),
        _row("within", "within", 150, replayable=False),  # left out, as summary() leaves it out
    ]
    no_futility = [  # the same pairs with no futility stop: the design's first decided look, or its end
        _row("undecided", "within", 150),
        _row("within", "within", 150),
        _row("beyond", "undecided", 200),
        _row("within", "within", 50),
    ]
    o = bench.oracle(rows, no_futility, 50)
    assert o["pairs"] == 3
    assert o["agree"] == 2 / 3  # the third pair: no look of the design ever says beyond
    assert o["share"] == (50 + 150 + 50) / 600
