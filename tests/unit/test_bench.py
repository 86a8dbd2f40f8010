"""The benchmark's summary: the peak, the best rate a p99 bound allows, and what a target rate
leaves of the machine's CPU per transfer."""
from tools.bench import budget, peaks


def point(clients: int, rate: float, p99: float | None) -> dict:
    return {"clients": clients, "transfers_per_s": rate, "latency_ms": {"p50": None, "p99": p99}}


def test_the_best_rate_within_a_p99_bound_is_not_the_peak_when_the_peak_waits_too_long():
    points = [point(1, 60.0, 25.0), point(16, 200.0, 95.0), point(32, 260.0, 180.0), point(64, 300.0, 400.0)]
    peak, within = peaks(points, 1500.0, 100.0)
    assert peak == {"clients": 64, "transfers_per_s": 300.0, "p99_ms": 400.0, "ratio_to_raw_rpc": 0.2}
    assert within == {"clients": 16, "transfers_per_s": 200.0, "p99_ms": 95.0, "ratio_to_raw_rpc": 0.133}


def test_no_point_within_the_bound_is_said_as_none_and_a_point_without_answers_never_counts():
    peak, within = peaks([point(1, 0.0, None), point(8, 90.0, 150.0)], 1000.0, 100.0)
    assert peak["clients"] == 8 and within is None
    assert peaks([point(8, 90.0, 100.0)], 1000.0, 100.0)[1]["clients"] == 8   # the bound itself is kept


def test_the_budget_says_the_most_a_points_cost_allows_and_the_most_a_target_leaves():
    p = {"clients": 8, "bank_cpu_ms_per_transfer": 9.3, "machine_cpu_ms_per_transfer": 12.5}
    assert budget(p, 600.0, 2) == {"clients": 8, "machine_cpu_ms_per_transfer": 12.5, "bank_cpu_ms_per_transfer": 9.3,
                                   "ceiling_per_s": 160.0, "target_per_s": 600.0, "target_allows_ms": 3.33}
    assert budget({**p, "machine_cpu_ms_per_transfer": 2.5}, 600.0, 2)["ceiling_per_s"] == 800.0   # within reach


def test_a_point_that_answered_nothing_has_no_ceiling():
    p = {"clients": 1, "bank_cpu_ms_per_transfer": None, "machine_cpu_ms_per_transfer": None}
    assert budget(p, 600.0, 2)["ceiling_per_s"] is None
