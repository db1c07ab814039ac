"""Side-by-side training-step timing: this plugin against the official code.

Runs, alternately and in separate processes (so neither warms the other's
caches or allocator), ``tools/experiments/train_step.py`` (ours) and the
official-code timer ``train_step_official.py`` (``shared/tools``; it needs a
checkout of ``Peterande/D-FINE`` at 4a1f73a) with the same variant, batch,
input size, GT count and thread count, for several rounds.  Each round gives
one ratio ``official s/iter / ours s/iter`` (> 1: ours is faster); the
median and range of the rounds are reported with the load average at each
round, because on a shared machine the absolute times drift.
"""
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

_MEDIAN = re.compile(r'median ([0-9.]+) s/iter')


def parse_median(text: str) -> float:
    """The ``median X s/iter`` of a timer's output (last occurrence)."""
    found = _MEDIAN.findall(text)
    if not found:
        raise RuntimeError('no "median X s/iter" line in the timer output:\n' +
                           text[-2000:])
    return float(found[-1])


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_timer(cmd: List[str],
              env: Optional[Dict[str, str]] = None,
              timeout: float = 1800) -> Tuple[float, float]:
    """Run one timer process; returns its median s/iter (wall) and the CPU
    seconds (user + system) the whole process used -- start-up, model
    build, warm-up and timed iterations -- which a busy machine inflates far
    less than wall time."""
    cpu0 = _children_cpu_s()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=timeout)
    cpu = _children_cpu_s() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f'{" ".join(cmd)} failed ({proc.returncode}):\n'
                           f'{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}')
    return parse_median(proc.stdout), cpu


def compare(ours_cmd: List[str],
            official_cmd: List[str],
            rounds: int,
            env: Optional[Dict[str, str]] = None,
            log: Callable[[str], None] = print) -> Dict:
    """Alternate the two timers ``rounds`` times (ours first on even rounds,
    official first on odd ones).

    Returns:
        dict: ``ours`` / ``official`` lists of s/iter, ``ratios``
        (official / ours per round), ``load`` (1-min load average before each
        round), ``median_ratio``, and the whole-process CPU seconds
        ``ours_cpu`` / ``official_cpu`` with their ``cpu_ratios`` and
        ``median_cpu_ratio`` (official / ours).
    """
    ours, official, ratios, load = [], [], [], []
    cpu = dict(ours=[], official=[])
    for r in range(rounds):
        load.append(os.getloadavg()[0])
        order = [('ours', ours_cmd), ('official', official_cmd)]
        if r % 2:
            order.reverse()
        got = {}
        for name, cmd in order:
            t = time.perf_counter()
            got[name], c = run_timer(cmd, env)
            cpu[name].append(c)
            log(f'  round {r + 1} {name}: {got[name]:.3f} s/iter '
                f'({time.perf_counter() - t:.0f} s wall, {c:.0f} s CPU, '
                f'load {os.getloadavg()[0]:.1f})')
        ours.append(got['ours'])
        official.append(got['official'])
        ratios.append(got['official'] / got['ours'])
        log(f'  round {r + 1}: official/ours = {ratios[-1]:.2f}x')
    cpu_ratios = [o / u for o, u in zip(cpu['official'], cpu['ours'])]
    return dict(
        ours=ours,
        official=official,
        ratios=ratios,
        load=load,
        median_ratio=statistics.median(ratios),
        ours_cpu=cpu['ours'],
        official_cpu=cpu['official'],
        cpu_ratios=cpu_ratios,
        median_cpu_ratio=statistics.median(cpu_ratios))


def python_cmd(script: str, *args) -> List[str]:
    """``[sys.executable, script, *args]`` with str() arguments."""
    return [sys.executable, script] + [str(a) for a in args]
