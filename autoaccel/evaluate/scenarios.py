"""MLPerf-Inference-style scenarios from measured batch latencies: Offline and Server.

Follows the MLPerf Inference Rules (github.com/mlcommons/inference_policies,
inference_rules.adoc, "Scenarios" and "LoadGen Operation"):

- Offline: all samples are available at the start; the figure is measured throughput. Here:
  the best of ``b / median batch latency`` over the measured batch sizes.
- Server: queries arrive by a Poisson process; the figure is the largest Poisson rate whose tail
  latency (p99) stays within a latency bound, found by binary search, as LoadGen does. Latency
  runs from a query's scheduled arrival to its completion. Here the server is *simulated* from
  the measured batch latencies rather than run for 60 s per tested rate.

Queueing model (what `simulate` assumes):

- One model instance per server; a server runs one batch at a time. `server` models one
  instance, because the latencies were measured with one instance on this CPU; instances
  sharing cores and memory bandwidth run slower, so their latencies must be measured, not
  assumed.
- FIFO: a batch is the ``min(queue, max_batch)`` oldest waiting requests.
- Dynamic batching: a free server takes a batch as soon as ``max_batch`` requests wait, or the
  oldest has waited ``window_ms`` (with ``window_ms == 0``: as soon as anything waits).
- Poisson arrivals (exponential gaps, seeded numpy Generator); the system starts empty.
- Service time is the measured *median* for the batch size: no variance. The simulated tail
  comes from queueing alone, so a real p99 is higher by about the service-time spread (see the
  measured p90 versus median). No pre-/post-processing or network time.
- A finite trace (`n_requests`, 20k by default; MLPerf asks 270,336 queries for a p99): near
  saturation a slowly growing queue can still pass the bound, so rates are capped at the
  offline throughput.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from autoaccel.evaluate.measure import Latency, MeasureConfig, measure_interleaved

BATCH_SIZES = (1, 2, 4, 8, 16, 32)
_SEARCH_TOL = 0.005  # binary search stops within this fraction of the offline throughput


def measure_batches(
    run: Callable[[int], Callable[[], object]], batch_sizes: Sequence[int], cfg: MeasureConfig
) -> dict[int, Latency]:
    """Latency of one batch per batch size; `run(b)` returns a function running one batch of b.

    Timed interleaved, so drift on a shared machine hits every batch size alike."""
    fns = {str(b): run(b) for b in batch_sizes}
    timed = measure_interleaved(fns, cfg)
    return {b: timed[str(b)] for b in batch_sizes}


@dataclass(frozen=True)
class OfflineResult:
    batch_size: int
    streams: int
    throughput_qps: float
    latency_ms: float  # median batch latency at `batch_size`
    per_batch: dict[int, float]  # throughput (samples/s) per batch size


def offline(latencies: dict[int, Latency], streams: int = 1) -> OfflineResult:
    """Best throughput over batch sizes: ``streams * b / median latency(b)``.

    `streams` states how the latencies were measured: with that many streams running batches
    concurrently, each stream's batch taking the given latency. It is never a multiplier for
    single-stream numbers: two streams on two cores share caches and memory bandwidth, so pass
    ``streams=1`` unless the latencies were measured under that concurrency. Ties go to the
    smaller batch (lower latency)."""
    if streams < 1:
        raise ValueError(f"streams must be >= 1, got {streams}")
    if not latencies:
        raise ValueError("offline needs at least one measured batch size")
    per_batch = {b: streams * b * 1000.0 / lat.median_ms for b, lat in sorted(latencies.items())}
    best = max(per_batch, key=per_batch.__getitem__)
    return OfflineResult(best, streams, per_batch[best], latencies[best].median_ms, per_batch)


@dataclass(frozen=True)
class ServerPolicy:
    """Dynamic batching: dispatch when `max_batch` requests wait or the oldest waited
    `window_ms`."""

    max_batch: int
    window_ms: float

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.window_ms < 0:
            raise ValueError(f"need max_batch >= 1 and window_ms >= 0, got {self}")


@dataclass(frozen=True)
class ServerResult:
    policy: ServerPolicy
    sustained_qps: float  # largest Poisson rate found whose tail latency meets the bound
    p99_ms: float  # tail latency (at `percentile`) at the sustained rate
    latency_bound_ms: float
    at_rate: dict | None = None  # rate_qps, p50_ms, p99_ms, utilisation, meets_bound
    percentile: float = 99.0
    reason: str | None = None  # why sustained_qps is 0, when it is


def service_time(latencies: dict[int, Latency]) -> Callable[[int], float]:
    """Batch service time (ms) from measured medians, linear between measured batch sizes.

    Above the largest size: linear from the last two points (slope clipped at 0; with one point,
    proportional to b, i.e. no batching gain). Below the smallest: the smallest size's latency,
    which overstates it (conservative)."""
    sizes = np.array(sorted(latencies), dtype=np.float64)
    ms = np.array([latencies[int(b)].median_ms for b in sizes])
    if len(sizes) == 0:
        raise ValueError("service_time needs at least one measured batch size")
    if len(sizes) > 1:
        slope = max(0.0, (ms[-1] - ms[-2]) / (sizes[-1] - sizes[-2]))
    else:
        slope = ms[0] / sizes[0]

    def service_ms(batch: int) -> float:
        if batch > sizes[-1]:
            return float(ms[-1] + slope * (batch - sizes[-1]))
        return float(np.interp(batch, sizes, ms))

    return service_ms


def _run(
    arrivals_ms: np.ndarray,
    service_ms: Callable[[int], float],
    policy: ServerPolicy,
    servers: int,
    give_up: tuple[float, int] | None = None,
) -> tuple[np.ndarray, float] | None:
    """Each request's latency, and the total busy time of all servers.

    One step per batch: the head request i is dispatched at max(earliest free server, trigger),
    trigger = min(arrival[i] + window, arrival of the max_batch-th waiting request). Dispatch
    times never decrease, so batches can be formed one after another: O(n log servers).

    `give_up` = (bound_ms, most): return None as soon as more than `most` requests have a
    latency above `bound_ms` (the tail cannot meet the bound any more: a rate past saturation
    is known to fail after a fraction of its trace)."""
    arr = arrivals_ms.tolist()
    n, size, window = len(arr), policy.max_batch, policy.window_ms
    cost = [0.0] + [float(service_ms(b)) for b in range(1, size + 1)]
    free = [float("-inf")] * servers  # heap of the times servers become free
    ends: list[float] = []
    sizes: list[int] = []
    busy, i, late = 0.0, 0, 0
    bound, most = give_up if give_up is not None else (float("inf"), n)
    while i < n:
        trigger = arr[i] + window
        if i + size - 1 < n and arr[i + size - 1] < trigger:
            trigger = arr[i + size - 1]
        first = free[0]
        start = first if first > trigger else trigger
        j = bisect_right(arr, start, i, min(i + size, n))  # waiting at start, at most max_batch
        end = start + cost[j - i]
        if servers == 1:
            free[0] = end
        else:
            heapq.heapreplace(free, end)
        if end - arr[i] > bound:  # the batch's late requests: those that arrived early enough
            late += bisect_left(arr, end - bound, i, j) - i
            if late > most:
                return None
        ends.append(end)
        sizes.append(j - i)
        busy += cost[j - i]
        i = j
    return np.repeat(np.array(ends), sizes) - arrivals_ms, busy


def simulate(
    arrivals_ms: np.ndarray,
    service_ms: Callable[[int], float],
    policy: ServerPolicy,
    servers: int = 1,
) -> np.ndarray:
    """Latency (completion - arrival, ms) of each request under dynamic batching.

    Discrete-event and exact for the given inputs; `arrivals_ms` must be sorted. See the module
    docstring for the queueing model."""
    arrivals_ms = np.asarray(arrivals_ms, dtype=np.float64)
    if servers < 1:
        raise ValueError(f"servers must be >= 1, got {servers}")
    if np.any(np.diff(arrivals_ms) < 0):
        raise ValueError("arrivals_ms must be sorted")
    return _run(arrivals_ms, service_ms, policy, servers)[0]


def _search(
    tail: Callable[[float], float], bound_ms: float, lo: float, hi: float, tol: float
) -> tuple[float, float | None]:
    """Bisect rates in [lo, hi] once `lo` passes (0 passes by convention); return the highest
    passing rate tried and its tail latency, or (0, None) when none passed."""
    lo_tail = tail(lo) if lo > 0 else None
    if lo_tail is not None and lo_tail > bound_ms:
        return 0.0, None
    while hi - lo > tol:
        mid = (lo + hi) / 2
        mid_tail = tail(mid)
        if mid_tail <= bound_ms:
            lo, lo_tail = mid, mid_tail
        else:
            hi = mid
    return lo, lo_tail


def server(
    latencies: dict[int, Latency],
    latency_bound_ms: float,
    arrival_rate_qps: float | None = None,
    percentile: float = 99.0,
    n_requests: int = 20000,
    seed: int = 0,
    windows_ms: Sequence[float] = (0, 1, 2, 5, 10, 20),
) -> ServerResult:
    """Best batching policy for the Server scenario: the highest sustained Poisson rate whose
    simulated `percentile` latency stays within `latency_bound_ms`.

    Policies: max_batch in the measured sizes x window in `windows_ms` (max_batch 1 needs no
    window). All rates share one seeded draw of exponential gaps (scaled by 1/rate), so results
    are reproducible and rates compare on the same trace. A policy is searched only if it meets
    the bound a search step above the best rate so far; the search bisects from there up to the
    offline throughput, which no policy can exceed. The tail need not be monotone in the rate
    (a long window hurts at low rates), so the result is a rate verified to meet the bound,
    below one that failed. Ties go to the earlier (smaller) policy."""
    if latency_bound_ms <= 0 or n_requests < 1:
        raise ValueError("need latency_bound_ms > 0 and n_requests >= 1")
    if arrival_rate_qps is not None and arrival_rate_qps <= 0:
        raise ValueError(f"arrival_rate_qps must be > 0, got {arrival_rate_qps}")
    service = service_time(latencies)
    cap = offline(latencies).throughput_qps  # above it the queue grows without end
    step = _SEARCH_TOL * cap
    gaps = np.random.default_rng(seed).exponential(1.0, n_requests)
    unit = np.cumsum(gaps) - gaps[0]  # arrivals at 1 request/ms, the first at 0

    def run_at(policy: ServerPolicy, rate_qps: float) -> tuple[np.ndarray, np.ndarray, float]:
        arrivals = unit * (1000.0 / rate_qps)
        return (arrivals, *_run(arrivals, service, policy, 1))

    # np.percentile's linear rule puts the tail at sorted index k (and k + 1): with more
    # than n - k - 1 latencies above the bound, the tail is above it whatever the rest is
    most_late = n_requests - int(np.floor(percentile / 100 * (n_requests - 1))) - 1

    def tail(policy: ServerPolicy, rate_qps: float) -> float:
        """The tail latency at this rate, or inf once the trace shows it misses the bound."""
        ran = _run(unit * (1000.0 / rate_qps), service, policy, 1, (latency_bound_ms, most_late))
        return math.inf if ran is None else float(np.percentile(ran[0], percentile))

    sizes = sorted(latencies)
    best, best_rate, best_tail = ServerPolicy(sizes[0], 0.0), 0.0, service(1)
    reason = None
    if service(1) > latency_bound_ms:
        reason = (
            f"batch-1 latency {service(1):.3g} ms exceeds the {latency_bound_ms:g} ms bound: "
            "no arrival rate meets it"
        )
    else:
        for b in sizes:
            for w in windows_ms if b > 1 else [0]:
                policy = ServerPolicy(b, float(w))
                lo = best_rate + step if best_rate else 0.0
                if lo > cap:
                    break
                rate, rate_tail = _search(
                    lambda r, p=policy: tail(p, r), latency_bound_ms, lo, cap, step
                )
                if rate > best_rate and rate_tail is not None:
                    best, best_rate, best_tail = policy, rate, rate_tail
        if best_rate == 0:
            reason = (
                f"no policy met the p{percentile:g} bound of {latency_bound_ms:g} ms at any "
                f"tested rate, down to under {step:.3g} qps"
            )

    at_rate = None
    if arrival_rate_qps is not None:
        arrivals, lat, busy = run_at(best, arrival_rate_qps)
        p99 = float(np.percentile(lat, percentile))
        at_rate = {
            "rate_qps": arrival_rate_qps,
            "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": p99,
            "utilisation": busy / float(np.max(arrivals + lat) - arrivals[0]),
            "meets_bound": p99 <= latency_bound_ms,
        }
    return ServerResult(best, best_rate, best_tail, latency_bound_ms, at_rate, percentile, reason)


SCENARIOS = ("single-stream", "offline", "server")


def scenario_figures(
    scenario: str,
    latencies: dict[int, Latency],
    latency_bound_ms: float,
    arrival_rate_qps: float | None = None,
) -> dict:
    """The scenario's figures and `objective_ms`, the value the study minimises:
    single-stream: batch-1 median latency; offline and server: milliseconds per query at the
    best batch size (offline) or at the largest rate meeting the latency bound (server).
    A server that meets the bound at no rate raises ValueError with the reason."""
    if scenario == "single-stream":
        return {"scenario": scenario, "objective_ms": latencies[1].median_ms}
    if scenario == "offline":
        best = offline(latencies)
        return {
            "scenario": scenario,
            "objective_ms": 1000.0 / best.throughput_qps,
            "throughput_qps": best.throughput_qps,
            "batch_size": best.batch_size,
            "batch_latency_ms": best.latency_ms,
            "per_batch_qps": {str(b): q for b, q in best.per_batch.items()},
        }
    result = server(latencies, latency_bound_ms, arrival_rate_qps)
    if result.sustained_qps <= 0:
        raise ValueError(result.reason or "no arrival rate meets the latency bound")
    return {
        "scenario": scenario,
        "objective_ms": 1000.0 / result.sustained_qps,
        "throughput_qps": result.sustained_qps,
        "max_batch": result.policy.max_batch,
        "window_ms": result.policy.window_ms,
        "p99_ms": result.p99_ms,
        "latency_bound_ms": latency_bound_ms,
        "at_rate": result.at_rate,
    }
