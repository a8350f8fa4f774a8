"""Name -> task family lookup.

Families are the synthetic generators of :mod:`zppo_core.tasks.synthetic`; :func:`register_family` lets
a later module (e.g. a dataset-backed task) add its own under a new name.
"""

from __future__ import annotations

from zppo_core.tasks.synthetic import FAMILIES, IN_DIST, OOD, Family
from zppo_core.tasks.visual import VISUAL_IN_DIST, VISUAL_OOD

__all__ = ["get_family", "list_families", "register_family"]


def get_family(name: str) -> Family:
    """The family called `name`; ValueError listing the valid names when there is none."""
    fam = FAMILIES.get(name) if isinstance(name, str) else None
    if fam is None:
        raise ValueError(f"unknown task family {name!r}; valid: {', '.join(sorted(FAMILIES))}")
    return fam


def list_families() -> dict[str, str]:
    """name -> one-line description (starting with "in-dist" or "ood"): text families (in-distribution first), then
    the visual ones, then any registered later."""
    known = [*IN_DIST, *OOD, *VISUAL_IN_DIST, *VISUAL_OOD]
    order = [*known, *sorted(set(FAMILIES) - set(known))]
    out: dict[str, str] = {}
    for name in order:
        fam = FAMILIES[name]
        desc = getattr(fam, "description", "") or f"levels {fam.levels}"
        if not desc.startswith(("in-dist", "ood")):
            desc = ("in-dist: " if name in IN_DIST + VISUAL_IN_DIST else "ood: ") + desc
        out[name] = f"{desc} (levels {','.join(map(str, fam.levels))})"
    return out


def register_family(family: Family, *, replace: bool = False) -> None:
    """Add `family` under `family.name` (ValueError if taken, unless replace=True)."""
    if not isinstance(family, Family):
        raise TypeError(f"{family!r} does not implement the Family protocol (name, levels, make, solution, wrong_solution)")
    if family.name in FAMILIES and not replace:
        raise ValueError(f"task family {family.name!r} already exists; pass replace=True to override it")
    FAMILIES[family.name] = family
