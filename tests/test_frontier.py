"""Recommendation policy and schema, on hand-made points."""

from __future__ import annotations

from dataclasses import replace

import pytest

from autoaccel.confirmation import attach_confirmation, disagrees
from autoaccel.errors import UserError
from autoaccel.frontier import Point, objective_frontier, pareto, tie_tolerance
from autoaccel.recommend import choose, recommend

BASELINE = {
    "accuracy": 0.90,
    "latency_ms": 10.0,
    "latency_p90_ms": 11.0,
    "latency_source": "measured",
    "target": "cpu-local",
    "description": "toy: PyTorch eager fp32, batch 1",
    "size_mb": 1.0,
}
WORKLOAD = {"name": "toy", "metric": "accuracy", "metric_description": "top-1"}
SCHEMA = {
    "trial",
    "recipe",
    "target",
    "accuracy",
    "accuracy_drop",
    "latency_ms",
    "latency_source",
    "speedup",
    "summary",
}


def _point(trial: int, accuracy: float, latency: float, feasible: bool = True) -> Point:
    return Point(
        trial=trial,
        recipe={"quantize.mode": "int8_dynamic"},
        description=f"recipe {trial}",
        target="cpu-local",
        accuracy=accuracy,
        accuracy_drop=BASELINE["accuracy"] - accuracy,
        latency_ms=latency,
        latency_p90_ms=latency * 1.1,
        latency_source="measured",
        speedup=BASELINE["latency_ms"] / latency,
        size_mb=0.5,
        feasible=feasible,
    )


def test_recommend_picks_fastest_frontier_point_with_full_schema():
    front = [_point(3, 0.895, 2.0), _point(1, 0.90, 4.0)]
    rec = recommend("s", WORKLOAD, BASELINE, 0.01, front, front)
    assert rec["recommended"]["trial"] == 3
    assert SCHEMA <= set(rec["recommended"])
    assert rec["recommended"]["speedup"] == 5.0
    assert "5.0x faster" in rec["recommended"]["summary"]
    assert "measured on cpu-local" in rec["recommended"]["summary"]
    assert {
        "study",
        "workload",
        "metric",
        "baseline",
        "accuracy_limit",
        "recommended",
        "frontier",
    } <= set(rec)
    assert rec["accuracy_limit"]["min_accuracy"] == 0.89
    assert [p["trial"] for p in rec["frontier"]] == [3, 1]


def _paired(point: Point, low: float, high: float, busy: bool = False) -> Point:
    """`point` with a paired timing's interval (and whether the CPU was busy during it)."""
    return replace(point, speedup_ci=(low, high), rounds=6, contended=busy)


def _confirmed(trial: int, speedup: float, low: float, high: float) -> dict:
    return {
        "trial": trial,
        "speedup": speedup,
        "ci_low": low,
        "ci_high": high,
        "rounds": 12,
        "candidate_ms": 10.0 / speedup,
        "reference_ms": 10.0,
        "contention": {"busy": False, "other_cores": 0.0},
    }


def test_confirmation_details_go_on_the_pick_it_re_timed():
    front = [_point(3, 0.895, 2.0), _point(1, 0.90, 4.0)]
    rec = recommend("s", WORKLOAD, BASELINE, 0.01, front, front)
    attach_confirmation(rec, _confirmed(3, 4.5, 4.3, 4.7))
    assert rec["recommended"]["confirmation"]["rounds"] == 12
    other = recommend("s", WORKLOAD, BASELINE, 0.01, front, front)
    attach_confirmation(other, _confirmed(1, 2.5, 2.4, 2.6))  # a trial no longer the pick
    assert "confirmation" not in other["recommended"]


def test_a_re_timing_outside_the_trials_interval_is_reported_and_quoted():
    pick = _paired(_point(3, 0.895, 0.5), 18.0, 22.0).as_dict()  # 20x, timed on a busy CPU
    message = disagrees(pick, _confirmed(3, 8.0, 7.6, 8.4))
    assert message and "20.00x" in message and "8.00x" in message
    assert "the figure quoted" in message
    assert disagrees(pick, _confirmed(3, 19.0, 17.0, 21.0)) is None  # intervals overlap


def test_nothing_faster_than_the_baseline_beyond_noise_means_keep_the_baseline():
    slower = [
        _paired(_point(0, 0.90, 12.0), 0.80, 0.86),  # 0.83x
        _paired(_point(1, 0.90, 9.8), 0.97, 1.06),  # 1.02x, inside the noise
    ]
    rec = recommend("s", WORKLOAD, BASELINE, 0.01, slower, slower)
    assert rec["verdict"] == "keep-baseline" and rec["recommended"] is None
    assert rec["reason"].startswith("nothing beats the baseline beyond timing noise: keep toy")
    assert [p["trial"] for p in rec["closest"]] == [1, 0]
    faster = [_paired(_point(2, 0.90, 8.0), 1.18, 1.32)]
    assert recommend("s", WORKLOAD, BASELINE, 0.01, faster, faster)["verdict"] == "recommend"


def test_a_pick_timed_on_a_busy_cpu_is_not_ranked():
    busy = [_paired(_point(0, 0.90, 1.0), 6.0, 14.0, busy=True)]
    rec = recommend("s", WORKLOAD, BASELINE, 0.01, busy, busy)
    assert rec["verdict"] == "too-noisy" and rec["recommended"] is None
    assert "busy with other work" in rec["reason"] and "quiet machine" in rec["reason"]
    assert rec["closest"][0]["trial"] == 0


def test_the_summary_quotes_the_interval_and_rounds():
    point = _paired(_point(3, 0.895, 2.0), 4.8, 5.2)
    rec = recommend("s", WORKLOAD, BASELINE, 0.01, [point], [point])
    assert (
        "5.00x (95 % interval 4.80-5.20x, 6 interleaved rounds)" in rec["recommended"]["summary"]
    )


def test_timings_within_noise_tie_and_the_more_accurate_wins():
    fast = _paired(_point(0, 0.895, 2.0), 4.5, 5.5)  # 5.0x +-10 %
    close = _paired(_point(1, 0.90, 2.1), 4.3, 5.2)  # 4.8x, inside the noise, more accurate
    rec = recommend("s", WORKLOAD, BASELINE, 0.01, [fast, close], [fast, close])
    assert rec["recommended"]["trial"] == 1
    assert "ties with trial 0" in rec["rationale"]
    clear = _paired(_point(2, 0.90, 4.0), 2.4, 2.6)  # 2.5x: clearly slower
    rec = recommend("s", WORKLOAD, BASELINE, 0.01, [fast, clear], [fast, clear])
    assert rec["recommended"]["trial"] == 0


def test_pareto_keeps_points_whose_difference_is_inside_the_noise():
    fast = _paired(_point(0, 0.895, 2.0), 4.5, 5.5)
    slightly_slower_same_quality = _paired(_point(1, 0.895, 2.1), 4.3, 5.2)
    clearly_slower_same_quality = _paired(_point(2, 0.895, 4.0), 2.4, 2.6)
    more_accurate_within_noise = _paired(_point(3, 0.899, 2.1), 4.3, 5.2)
    pts = [fast, slightly_slower_same_quality, clearly_slower_same_quality]
    assert [p.trial for p in pareto(None, pts)] == [0, 1]
    assert [p.trial for p in pareto(None, [*pts, more_accurate_within_noise])] == [3]


def test_recommend_is_null_with_reason_and_closest_when_nothing_meets_limit():
    points = [
        _point(0, 0.70, 1.0, False),
        _point(1, 0.85, 2.0, False),
        _point(2, 0.80, 3.0, False),
    ]
    rec = recommend("s", WORKLOAD, BASELINE, 0.01, [], points)
    assert rec["recommended"] is None
    assert "no candidate kept accuracy within 0.01" in rec["reason"]
    assert "trial 1" in rec["reason"]
    assert [p["trial"] for p in rec["closest"]] == [1, 2, 0]


def test_recommend_says_so_when_no_trial_completed():
    rec = recommend("s", WORKLOAD, BASELINE, 0.01, [], [])
    assert rec["recommended"] is None and "no trial completed" in rec["reason"]


# -- the policy: prefer latency, cost or energy; measured wins a tie ------------------------


def _hw(
    trial: int,
    target: str,
    latency: float,
    *,
    accuracy: float = 0.90,
    energy: float | None = None,
    cost: float | None = None,
    feasible: bool = True,
) -> Point:
    measured = target == "cpu-local"
    return replace(
        _point(trial, accuracy, latency, feasible),
        target=target,
        latency_source="measured" if measured else f"estimated:{target}",
        energy_j=energy,
        cost_per_million_usd=cost,
    )


def test_prefer_cost_picks_cheapest_feasible_point_never_an_infeasible_one():
    pts = [
        _hw(0, "nvidia-t4", 0.5, cost=0.01, energy=0.02),
        _hw(1, "nvidia-l4", 0.4, cost=0.005, energy=0.03),
        _hw(2, "google-tpu-v5e", 0.3, cost=0.001, energy=0.001, accuracy=0.80, feasible=False),
        _hw(3, "hailo-8", 0.2, energy=0.0005),  # no published price: no cost figure
    ]
    rec = recommend("s", WORKLOAD, BASELINE, 0.01, [], pts, prefer="cost")
    assert rec["recommended"]["trial"] == 1
    assert rec["prefer"] == "cost" and "prefer cost" in rec["policy"]
    assert "cost per million" in rec["rationale"]
    assert [p["trial"] for p in rec["objective_frontier"]] == [1]


def test_prefer_energy_picks_lowest_energy_feasible_point_never_an_infeasible_one():
    pts = [
        _hw(0, "nvidia-t4", 0.5, cost=0.01, energy=0.02),
        _hw(1, "google-edge-tpu", 2.0, energy=0.0004),
        _hw(2, "hailo-8", 1.0, energy=0.0001, accuracy=0.85, feasible=False),
    ]
    rec = recommend("s", WORKLOAD, BASELINE, 0.01, [], pts, prefer="energy")
    assert rec["recommended"]["trial"] == 1
    chosen, _ = choose(pts, "energy")
    assert chosen is not None and chosen.feasible


def test_prefer_latency_never_recommends_a_faster_infeasible_point():
    pts = [_hw(0, "nvidia-h100-sxm", 0.01, accuracy=0.5, feasible=False), _hw(1, "cpu-local", 3.0)]
    rec = recommend("s", WORKLOAD, BASELINE, 0.01, [], pts)
    assert rec["recommended"]["trial"] == 1


def test_measured_point_wins_a_near_tie_against_an_estimate_below_one_ms():
    estimated = _hw(0, "nvidia-t4", 0.100, cost=0.0010, energy=0.010)
    measured = _hw(1, "cpu-local", 0.110, cost=0.0011, energy=0.011)  # +10 %: within 15 %
    for prefer in ("latency", "cost", "energy"):
        pick, why = choose([estimated, measured], prefer)
        assert pick is measured, prefer
        assert "measured figure is preferred" in why and "trial 0" in why
    rec = recommend("s", WORKLOAD, BASELINE, 0.01, [estimated], [estimated, measured])
    assert rec["recommended"]["trial"] == 1
    assert rec["recommended"]["latency_source"] == "measured"


def test_estimate_wins_when_the_measured_point_is_slower_than_the_noise():
    estimated = _hw(0, "nvidia-t4", 0.100)
    measured = _hw(1, "cpu-local", 0.120)  # +20 %: beyond the 15 % sub-ms noise
    pick, why = choose([estimated, measured], "latency")
    assert pick is estimated and "estimated:nvidia-t4" in why


def test_tie_tolerance_is_five_percent_from_one_ms():
    assert tie_tolerance(0.5) == 0.15 and tie_tolerance(1.0) == 0.05
    estimated = _hw(0, "nvidia-t4", 10.0)
    assert choose([estimated, _hw(1, "cpu-local", 10.4)], "latency")[0].trial == 1
    assert choose([estimated, _hw(1, "cpu-local", 11.0)], "latency")[0].trial == 0


def test_prefer_cost_without_any_cost_figure_recommends_nothing_and_says_why():
    pts = [_hw(0, "hailo-8", 0.2, energy=0.001)]
    rec = recommend("s", WORKLOAD, BASELINE, 0.01, [], pts, prefer="cost")
    assert rec["recommended"] is None
    assert "cost per million" in rec["reason"] and "closest" not in rec


def test_unknown_preference_is_a_user_error():
    with pytest.raises(UserError, match="latency, cost, energy"):
        recommend("s", WORKLOAD, BASELINE, 0.01, [], [], prefer="speed")


def test_objective_frontier_keeps_only_non_dominated_feasible_points():
    pts = [
        _hw(0, "cpu-local", 1.0, accuracy=0.90),
        _hw(1, "cpu-local", 2.0, accuracy=0.895),  # slower and worse: dominated
        _hw(2, "cpu-local", 0.5, accuracy=0.893),
        _hw(3, "cpu-local", 0.1, accuracy=0.70, feasible=False),
    ]
    assert [p.trial for p in objective_frontier(pts, "latency")] == [2, 0]


def _machine_study():
    """A study whose measured trials come from two machines, host-a (slow, baseline 10 ms)
    and host-b (fast, baseline 4 ms), each with its own baseline."""
    import optuna

    from autoaccel.frontier import baseline_key

    study = optuna.create_study(directions=["maximize", "minimize"])
    for host, base_ms in (("host-a", 10.0), ("host-b", 4.0)):
        machine = {"host": host, "cpu": f"cpu of {host}", "threads": 2}
        study.set_user_attr(
            baseline_key(host), {**BASELINE, "latency_ms": base_ms, "machine": machine}
        )
    study.set_user_attr("baseline", study.user_attrs[baseline_key("host-a")])
    dist = optuna.distributions.CategoricalDistribution(["int8_dynamic"])
    for host, ms in (("host-a", 5.0), ("host-b", 2.5)):
        trial = optuna.trial.create_trial(
            values=[0.90, ms],
            params={"quantize.mode": "int8_dynamic"},
            distributions={"quantize.mode": dist},
            user_attrs={
                "recipe": {"quantize.mode": "int8_dynamic"},
                "result": {
                    "target": "cpu-local",
                    "latency_ms": ms,
                    "latency_p90_ms": ms,
                    "latency_source": "measured",
                    "size_mb": 0.5,
                    "quality": {"accuracy": 0.90},
                    "machine": {"host": host},
                },
            },
            constraints={"accuracy_drop": -0.01},
        )
        study.add_trial(trial)
    return study


def test_measured_points_from_two_machines_are_labelled_and_use_their_own_baseline():
    from autoaccel.frontier import machine_baselines, points

    study = _machine_study()
    pts = {p.trial: p for p in points(study, study.user_attrs["baseline"])}
    assert pts[0].target == "cpu-local@host-a" and pts[1].target == "cpu-local@host-b"
    # 2x on each machine against its own baseline, not 4x for host-b against host-a's
    assert pts[0].speedup == pytest.approx(2.0) and pts[1].speedup == pytest.approx(1.6)
    rec = recommend(
        "s",
        WORKLOAD,
        study.user_attrs["baseline"],
        0.01,
        list(pts.values()),
        list(pts.values()),
        baselines=machine_baselines(study),
        host="host-a",
    )
    assert set(rec["machines"]) == {"host-a", "host-b"}
    assert rec["machines"]["host-b"]["cpu"] == "cpu of host-b"
    assert rec["recommended"]["trial"] == 1  # the fastest, labelled with its machine
    assert "cpu-local@host-b" in rec["recommended"]["summary"]
    assert "2.500 ms vs 4.000 ms" in rec["recommended"]["summary"]
    assert rec["best_measured"]["trial"] == 0  # the one this machine (host-a) can re-time


def test_one_machine_keeps_the_plain_cpu_local_label():
    from autoaccel.frontier import points

    study = _machine_study()
    study.set_user_attr("baseline", study.user_attrs["baseline@host-a"])
    one = [t for t in study.trials if t.number == 0]
    single = optuna_study_with(one, study.user_attrs)
    assert [p.target for p in points(single, single.user_attrs["baseline"])] == ["cpu-local"]


def optuna_study_with(trials, attrs):
    import optuna

    study = optuna.create_study(directions=["maximize", "minimize"])
    for k, v in attrs.items():
        study.set_user_attr(k, v)
    study.add_trials(trials)
    return study


def _timed(trial: int, accuracy: float, speedup: float, low: float, high: float) -> Point:
    """A measured point against a 20 ms baseline, with its paired interval."""
    point = replace(_point(trial, accuracy, 20 / speedup), speedup=speedup)
    return _paired(point, low, high)


def test_a_pick_that_changes_on_re_timing_is_re_timed_too():
    """The search's case: the fastest (95) re-timed slower; another (94) then tied with it only
    inside its own wide interval and was quoted on that figure. Now it is re-timed as well,
    and the faster one, both tightly timed, is quoted."""
    from autoaccel.confirmation import retime_until_stable

    timed = {95: _timed(95, 0.8835, 17.0, 16.7, 17.6), 94: _timed(94, 0.8917, 11.6, 7.5, 14.6)}
    later = {95: (14.8, 13.9, 15.1), 94: (12.0, 11.6, 12.4)}
    quoted = []

    def choose():
        pts = list(timed.values())
        rec = recommend("s", WORKLOAD, {**BASELINE, "latency_ms": 20.0}, 0.02, pts, pts)
        quoted.append(rec["recommended"]["trial"])
        return rec

    def retime(pick):
        trial = pick["trial"]
        timed[trial] = _timed(trial, timed[trial].accuracy, *later[trial])
        return _confirmed(trial, *later[trial])

    rec, done = retime_until_stable(choose, lambda r: r["recommended"], retime)
    assert quoted == [95, 94, 95]  # one re-timing alone would have quoted 94 at 11.6x
    assert list(done) == [95, 94]
    assert rec["recommended"]["trial"] == 95 and rec["recommended"]["speedup"] == 14.8


def test_re_timing_stops_after_its_limit_and_when_nothing_is_quoted():
    from autoaccel.confirmation import MAX_RETIMINGS, retime_until_stable

    picks = iter(range(100))
    calls = []
    rec, done = retime_until_stable(
        lambda: {"recommended": {"trial": next(picks)}},  # a new pick every time
        lambda r: r["recommended"],
        lambda p: calls.append(p["trial"]) or {"trial": p["trial"]},
    )
    assert len(done) == len(calls) == MAX_RETIMINGS
    rec, done = retime_until_stable(lambda: {}, lambda r: None, lambda p: 1 / 0)
    assert done == {}


def test_stored_confirmations_read_every_re_timing_and_older_studies_single_one():
    from autoaccel.confirmation import stored_confirmations

    one = _confirmed(3, 4.5, 4.3, 4.7)
    assert stored_confirmations({"confirmed": one}) == {3: one}
    both = {"confirmations": {"3": one, "5": _confirmed(5, 2.0, 1.9, 2.1)}, "confirmed": one}
    assert sorted(stored_confirmations(both)) == [3, 5]
    assert stored_confirmations({"confirmed": {"trial": 1}}) == {}  # no interval: not one
