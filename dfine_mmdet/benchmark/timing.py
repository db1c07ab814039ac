"""Timing and its statistics: one definition of each, used by every tool.

* :func:`time_calls`: seconds of ``runs`` calls after ``warmup`` untimed
  ones;
* :func:`time_interleaved`: several callables timed in alternating rounds,
  so that a change of machine load during the run affects all of them
  alike (ratios measured this way are what the benchmark tools print);
* :func:`summarize`: median, p10 and p90 in milliseconds. Percentiles are
  ``statistics.quantiles(..., method='inclusive')``: linear interpolation
  between order statistics (NumPy's default ``'linear'`` percentile), so
  p10 <= median <= p90 for any sample.
"""
import statistics
import time
from typing import Callable, Dict, List, Mapping, Sequence


def time_calls(fn: Callable[[], object], warmup: int,
               runs: int) -> List[float]:
    """Seconds of each of ``runs`` calls of ``fn`` after ``warmup`` untimed
    calls (``time.perf_counter``)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def time_interleaved(fns: Mapping[str, Callable[[], object]], rounds: int,
                     warmup: int, runs: int) -> Dict[str, List[float]]:
    """``{name: seconds}``: ``rounds`` rounds, each timing every callable in
    turn with :func:`time_calls` (``warmup`` + ``runs`` calls)."""
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name] += time_calls(fn, warmup, runs)
    return times


def percentile(values: Sequence[float], q: int) -> float:
    """The ``q``-th percentile (``q`` in 10, 20, ..., 90) of ``values``
    (linear interpolation, see the module docstring)."""
    if q % 10 or not 10 <= q <= 90:
        raise ValueError(f'q must be one of 10, 20, ..., 90, got {q}')
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=10, method='inclusive')[q // 10 - 1]


def summarize(times_s: Sequence[float]) -> Dict[str, object]:
    """``median_ms``, ``p10_ms``, ``p90_ms``, ``n`` and every time
    (``times_ms``) of a list of seconds."""
    if not times_s:
        raise ValueError('summarize() needs at least one time')
    ms = [1000.0 * t for t in times_s]
    return dict(
        median_ms=statistics.median(ms),
        p10_ms=percentile(ms, 10),
        p90_ms=percentile(ms, 90),
        n=len(ms),
        times_ms=ms)
