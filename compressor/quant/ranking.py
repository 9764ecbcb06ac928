"""The fallback's ranking, blocks first: the candidate layers grouped by the module
paths they sit in (about a dozen units, the largest split first), each unit scored by
the damage int8 does with only it quantized, and then only the units that hold most of
the damage split again, down to their layers. A few dozen scores instead of one per
layer, over a score callable

    score(units) -> {unit name: damage}      (1 - output cosine; missing: not scored)

that quantizes one unit at a time (on the target or simulated; compressor/flows/fallback
backs it). Layers inherit their unit's damage, shared among its members, until they are
scored themselves; the ranking is every layer, most damaging first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from compressor.layers import owner

FIRST_LEVEL = 12       # units of the first level
SPLIT_LEVEL = 8        # sub-units a large sensitive unit splits into
LEAVES_AT_MOST = 16    # a sensitive unit with at most this many layers is scored layer by layer
PICK_AT_MOST = 4       # sensitive units refined per level
COVER = 1.5            # refine the units that hold this multiple of the damage share to remove
DEPTH = 3              # levels below the first


@dataclass
class Unit:
    name: str                  # a module path, or its one member's name
    members: list[str]         # the layers and op scopes it covers, in model order

    @property
    def leaf(self) -> bool:
        return len(self.members) == 1 and self.members[0] == self.name


def _child(name: str, path: str) -> str:
    own = owner(name)
    if own == path:
        return name  # the unit's own layer or op scope
    head = (own[len(path) + 1:] if path else own).split(".")[0]
    return f"{path}.{head}" if path else head


def split(unit: Unit) -> list[Unit]:
    """A unit's children (module paths one level down; its own layer or op scope alone),
    descending through paths that hold one child only."""
    path = unit.name
    while True:
        groups: dict[str, list[str]] = {}
        for n in unit.members:
            groups.setdefault(_child(n, path), []).append(n)
        if len(groups) == 1 and len(unit.members) > 1:
            path = next(iter(groups))  # a wrapper module with one child: go down
            continue
        return [Unit(v[0] if len(v) == 1 else k, v) for k, v in groups.items()]


def split_units(names: list[str], want: int = FIRST_LEVEL, within: str = "") -> list[Unit]:
    """About `want` units covering `names` in model order, splitting the largest first."""
    units = [Unit(within, list(names))]
    while len(units) < want:
        big = max((u for u in units if len(u.members) > 1), key=lambda u: len(u.members), default=None)
        if big is None:
            break
        i = units.index(big)
        units[i:i + 1] = split(big)
    return units


@dataclass
class Ranking:
    order: list[str]                                       # every name, most damaging first
    damage: dict[str, float] = field(default_factory=dict)  # every scored unit (blocks and layers)
    units: dict[str, list[str]] = field(default_factory=dict)  # scored unit -> members
    estimate: dict[str, float] = field(default_factory=dict)  # every name: its finest score, shared
    scored: int = 0                                        # scores taken
    complete: bool = True                                  # False: the time ran out before the last level


def rank(names: list[str], score: Callable[[list[Unit]], dict[str, float]], share: float = 1.0,
         say: Callable[[str], None] | None = None) -> Ranking:
    """Blocks first, then the layers of the sensitive blocks. `share` (0..1] is the part
    of the damage the search will have to remove (how far the plain lowering misses):
    the units refined are those that hold COVER times that part of it."""
    say = say or (lambda _msg: None)
    level = split_units(names, FIRST_LEVEL)
    estimate = {n: 0.0 for n in names}
    out = Ranking(order=list(names))
    depth = 0
    while level:
        got = score(level)
        out.scored += len(got)
        for u in level:
            if u.name in got:
                out.damage[u.name], out.units[u.name] = got[u.name], u.members
                for n in u.members:
                    estimate[n] = max(got[u.name], 0.0) / len(u.members)
        if len(got) < len(level):
            out.complete = False
            break
        picked = _sensitive(level, got, share)
        if depth >= DEPTH or not picked:
            break
        say(f"refining {len(picked)} sensitive unit(s): {', '.join(u.name for u in picked)}")
        level = [sub for u in picked for sub in
                 (split_units(u.members, SPLIT_LEVEL, u.name) if len(u.members) > LEAVES_AT_MOST
                  else [Unit(m, [m]) for m in u.members])]
        depth += 1
    position = {n: i for i, n in enumerate(names)}
    out.order = sorted(names, key=lambda n: (-estimate[n], position[n]))
    out.estimate = estimate
    return out


def _sensitive(level: list[Unit], damage: dict[str, float], share: float) -> list[Unit]:
    """The most damaging non-leaf units, until they hold COVER x share of the level's damage."""
    ranked = sorted(level, key=lambda u: -damage.get(u.name, 0.0))
    total = sum(max(damage.get(u.name, 0.0), 0.0) for u in level)
    if total <= 0:
        return []
    goal, held, picked = min(1.0, COVER * share) * total, 0.0, []
    for u in ranked:
        if held >= goal or len(picked) >= PICK_AT_MOST:
            break
        held += max(damage[u.name], 0.0)
        if not u.leaf:
            picked.append(u)
    return picked


def first_guess(order: list[str], ranking: Ranking, missing: float, total: float) -> int | None:
    """How many leading layers of `order` the scores predict it takes to remove `missing`
    of the plain lowering's error `total` (both 1 - cosine), with a little to spare; None
    when the scores say nothing."""
    est = [ranking.estimate.get(n, 0.0) for n in order]
    if sum(est) <= 0 or missing <= 0 or total <= 0:
        return None
    scale, removed = total / sum(est), 0.0
    for k, e in enumerate(est, 1):
        removed += e * scale
        if removed >= 1.25 * missing:
            return k
    return None
