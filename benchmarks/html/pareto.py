"""The Pareto front, drawn only through differences the run can tell apart.

A point beats another when it is at least as good on both axes and better on one by
more than the noise: latency by the report's own rule for "slower than fp32" (a 3%
margin and a one-sided Mann-Whitney test on the timed runs, benchmarks.stats);
accuracy and size are exact counts on the same data, so any difference counts. Points
on the front that no difference separates are one step of the front: the line runs
through the fastest of them, and the others are marked as tied."""

from __future__ import annotations

from dataclasses import dataclass, field

MARGIN = 0.97  # the report's margin (benchmarks.report._against_fp32)


@dataclass
class Point:
    x: float                       # cost: p50 ms or bytes (lower is better)
    y: float                       # accuracy (higher is better)
    samples: list[float] | None = field(default=None, repr=False)  # the timed runs behind x


def faster(a: Point, b: Point) -> bool:
    """Whether a's cost is lower than b's beyond the noise."""
    if a.samples is None or b.samples is None:
        return a.x < b.x if a.samples is None and b.samples is None else a.x < MARGIN * b.x
    if not a.x < MARGIN * b.x:
        return False
    from benchmarks.stats import significantly_slower

    return significantly_slower(b.samples, a.samples)


def beats(a: Point, b: Point) -> bool:
    return not faster(b, a) and a.y >= b.y and (faster(a, b) or a.y > b.y)


@dataclass
class Front:
    steps: list[int]               # the line, by cost: one point per distinguishable step
    tied: dict[int, int]           # a front point no difference separates from a step -> that step
    dominated: list[int]
    any_difference: bool           # two steps, or a point beaten: else every point ties and no front is drawn


def noise_front(points: list[Point]) -> Front:
    n = len(points)
    beaten = [any(beats(points[j], points[i]) for j in range(n) if j != i) for i in range(n)]
    front = sorted((i for i in range(n) if not beaten[i]), key=lambda i: points[i].x)
    steps: list[int] = []
    tied: dict[int, int] = {}
    for i in front:  # cheapest first: a later point tied to a step joins it
        step = next((s for s in steps if points[s].y == points[i].y and not faster(points[s], points[i])), None)
        if step is None:
            steps.append(i)
        else:
            tied[i] = step
    return Front(steps=steps, tied=tied, dominated=[i for i in range(n) if beaten[i]], any_difference=len(steps) > 1 or any(beaten))


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the exact (noise-free) front, by cost: lower x, higher y."""
    pts = [Point(x, y) for x, y in points]
    return sorted((i for i, p in enumerate(pts) if not any(beats(q, p) for j, q in enumerate(pts) if j != i)),
                  key=lambda i: points[i][0])
