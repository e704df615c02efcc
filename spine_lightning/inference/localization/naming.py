"""Stage 5: names counted from the anchors (S1, L5 ... L1, T12 ... bottom up), or none. Both anchors
in view must agree (T12 six bodies above S1); a rib-free body where T12 should be (a sixth lumbar
vertebra, or T12 without ribs) or ribs on a body counted as lumbar leave every body unnamed, and so
does a sacrum with a body like it just below (S1 in doubt) unless T12 confirms the count. A user's
hint (`lowest_level`, `levels_in_view`) names the bodies when no anchor contradicts it."""

from __future__ import annotations

import numpy as np

from spine_lightning.inference.localization.anchors import SACRUM_SCAN_BELOW_MM, find_sacrum, find_t12
from spine_lightning.inference.localization.bodies import GAP_RANGE

SACRAL_GAP_MAX = 1.6  # S1 to L5, measured on the tilted S1's core: up to this many times the median
SPINE_UP = ("S1", "L5", "L4", "L3", "L2", "L1") + tuple(f"T{i}" for i in range(12, 0, -1))  # bottom up
T12_ABOVE_S1 = 6  # bodies from S1 to T12 in a normal spine: five lumbar vertebrae between them


def sacrum_in_doubt(sacrum: int | None, evidence: list[dict], centres_z_mm: list[float] | None) -> int | None:
    """A body within a body spacing below the sacrum found (its index) that is between the iliac
    wings or cut by the scan's edge, or None. S1 is the last body above the pelvis's floor that the
    alae reach from; a body like it just below means the one taken for S1 may be L5 (its transverse
    processes against the iliac crests; seen on a real CT turned upright) or the body below is S2.
    A body cut there may be S1 itself: a real lumbar CT whose scan began inside S1 had its L5, wide
    and between the iliac crests, read as the sacrum, and every name was a level too low. Unless
    T12 confirms the count, not counted."""
    if sacrum is None or centres_z_mm is None:
        return None
    gaps = uncut_gaps(centres_z_mm, evidence)
    reach = GAP_RANGE[1] * float(np.median(gaps)) if gaps else 0.0
    return next((k for k in range(sacrum - 1, -1, -1) if (evidence[k]["cut"] or evidence[k]["ilia"])
                 and centres_z_mm[sacrum] - centres_z_mm[k] <= reach), None)


def _names_from(base: int, base_name: str, n: int, first: int = 0) -> dict[int, str]:
    """Body index -> name, counting along SPINE_UP from body `base` called `base_name`."""
    offset = SPINE_UP.index(base_name) - base
    return {k: SPINE_UP[k + offset] for k in range(max(first, -offset), n) if k + offset < len(SPINE_UP)}


def _hint_names(hint: dict | None, n: int) -> tuple[dict[int, str] | None, str]:
    if not hint:
        return None, ""
    lowest, in_view = hint.get("lowest_level"), hint.get("levels_in_view")
    if in_view:
        lo, hi = (str(v) for v in in_view)
        if lo not in SPINE_UP or hi not in SPINE_UP:
            return None, f"levels_in_view={list(in_view)}: levels between {SPINE_UP[-1]} and S1"
        a, b = sorted((SPINE_UP.index(lo), SPINE_UP.index(hi)))
        if b - a + 1 != n:
            return None, (f"the hint levels_in_view={list(in_view)} means {b - a + 1} vertebrae but {n} were found")
        return _names_from(0, SPINE_UP[a], n), f"levels_in_view={list(in_view)}"
    if lowest:
        if str(lowest) not in SPINE_UP:
            return None, f"lowest_level={lowest}: a level between {SPINE_UP[-1]} and S1"
        return _names_from(0, str(lowest), n), f"lowest_level={lowest}"
    return None, ""


def sideways_lean_deg(bodies_mm: list, evidence: list[dict], sacrum: int | None) -> float:
    """The column's sideways lean (degrees from the head-foot axis): the straight line fitted to the
    left-right position of the uncut bodies above the sacrum against their height; 0 with fewer
    than three. The bodies' own centroids measure it; the centre line does not (its left-right
    position is pulled by bone beside the body)."""
    above = [b for k, (b, ev) in enumerate(zip(bodies_mm, evidence, strict=True))
             if not ev["cut"] and (sacrum is None or k > sacrum)]
    if len(above) < 3:
        return 0.0
    xyz = np.array(above)
    return float(np.degrees(np.arctan(np.polyfit(xyz[:, 2], xyz[:, 0], 1)[0])))


def uncut_gaps(centres_z_mm: list[float], evidence: list[dict]) -> list[float]:
    """Spacing (mm) of consecutive bodies neither of which is cut by the scan's edge."""
    return [b - a for a, b, ea, eb in zip(centres_z_mm, centres_z_mm[1:], evidence, evidence[1:], strict=False)
            if not (ea["cut"] or eb["cut"])]


def irregular_spacing(centres_z_mm: list[float], evidence: list[dict], sacrum: int | None = None) -> str:
    """Why the bodies found cannot be counted one per vertebra, or "" when they can: consecutive
    uncut bodies that are much closer or further apart than the column's median spacing, or than
    the bodies next to them, mean that a body was split in two or missed, and every name counted
    across that gap would be off by one. Below a recognised sacrum only the fused S2-S5 follow
    (shorter, never named): their spacing says nothing about the count upwards. The gap from S1 to
    L5 is checked on its own, against SACRAL_GAP_MAX: S1 tilts by the sacral slope, so its core's
    minimum on the head-foot profile lies lower than its centre; a missed L5 would double the gap."""
    first = sacrum or 0
    gaps = uncut_gaps(centres_z_mm[first:], evidence[first:])
    s1_l5_uncut = sacrum is not None and sacrum + 1 < len(evidence) and not (
        evidence[sacrum]["cut"] or evidence[sacrum + 1]["cut"])
    sacral = gaps.pop(0) if s1_l5_uncut else None  # uncut_gaps' first gap is then S1-L5
    if len(gaps) < 2:
        return ""
    median = float(np.median(gaps))
    steps = [b / a for a, b in zip(gaps, gaps[1:], strict=False)]  # spacing changes slowly along a column
    if (min(gaps) < GAP_RANGE[0] * median or max(gaps) > GAP_RANGE[1] * median
            or max(steps) > GAP_RANGE[1] or min(steps) < 1 / GAP_RANGE[1]
            or (sacral is not None and not GAP_RANGE[0] * median <= sacral <= SACRAL_GAP_MAX * median)):
        every = [g for g in (sacral, *gaps) if g is not None]
        return (f"the bodies found are irregularly spaced ({min(every):.0f} to {max(every):.0f} mm apart, median "
                f"{median:.0f} mm): a body was missed or split, so counting from an anchor would be wrong")
    return ""


def spaced_like_the_rest(centres_z_mm: list[float], evidence: list[dict]) -> list[bool]:
    """Per body: may it carry the name counted for it? An uncut body may. A body cut by the scan's
    edge is never an anchor, and is named only when it is as far from its neighbours as the uncut
    bodies are from each other (GAP_RANGE of their median spacing): a fragment, or a dip beyond
    the last body, breaks that rhythm and stays unnamed."""
    gaps = uncut_gaps(centres_z_mm, evidence)
    median = float(np.median(gaps)) if gaps else None
    ok = []
    for k, ev in enumerate(evidence):
        near = [abs(centres_z_mm[j] - centres_z_mm[k]) for j in (k - 1, k + 1) if 0 <= j < len(evidence)]
        ok.append(not ev["cut"] or (median is not None and bool(near)
                                    and all(GAP_RANGE[0] * median <= g <= GAP_RANGE[1] * median for g in near)))
    return ok


def name_bodies(evidence: list[dict], widths: list[float], hint: dict | None = None,
                centres_z_mm: list[float] | None = None) -> dict:
    """Names of the bodies (index -> name) and what they rest on; no names unless the evidence holds.
    `centres_z_mm`: the bodies' heights (foot to head), for the spacing check."""
    n = len(evidence)
    sacrum, t12 = find_sacrum(evidence, widths), find_t12(evidence)
    out = dict(names={}, sacrum=sacrum, t12=t12, anchor=None, counting="", confidence="none", reason="")
    spacing = irregular_spacing(centres_z_mm, evidence, sacrum) if centres_z_mm is not None else ""
    if spacing:
        out.update(reason=spacing, irregular=True)
        return out
    below = sacrum_in_doubt(sacrum, evidence, centres_z_mm)
    if below is not None and (t12 is None or t12 - sacrum != T12_ABOVE_S1):  # T12 in its place settles it
        how = "is cut by the scan's edge" if evidence[below]["cut"] else "also lies between the iliac wings"
        out["reason"] = (f"body {below + 1}, a body spacing below the one taken for the sacrum (body {sacrum + 1}), "
                         f"{how}: which of them is S1 is not clear")
        return out
    if sacrum is None and any(ev["ilia"] and not ev["cut"] and ev["scan_below_mm"] >= SACRUM_SCAN_BELOW_MM
                              for ev in evidence):
        # the pelvis and the scan below it are in view, so the sacrum should be too: unrecognised,
        # the lowest body in view may be S1 or L5
        out["reason"] = ("the pelvis is in view but no body in it is recognised as the sacrum: the lowest "
                         "bodies cannot be counted")
        return out
    rib_bodies = [k for k, ev in enumerate(evidence) if ev["ribs"]]
    by_anchor = None
    if sacrum is not None and t12 is not None:
        if t12 - sacrum != T12_ABOVE_S1:
            out["reason"] = (
                f"the anchors disagree: T12 (lowest ribs) is {t12 - sacrum} bodies above the sacrum, "
                f"a normal spine has {T12_ABOVE_S1} (a sixth lumbar vertebra, a rib on L1, or a missed body)"
            )
            return out
        by_anchor = _names_from(sacrum, "S1", n, first=sacrum)
        out.update(
            anchor="sacrum and T12 (lowest rib-bearing vertebra)",
            confidence="high",
            counting=f"S1 at body {sacrum + 1} and T12 at body {t12 + 1} (from the foot) agree: five lumbar "
            "vertebrae between them",
        )
    elif sacrum is not None:
        lumbar_ribs = [k for k in rib_bodies if sacrum < k < sacrum + T12_ABOVE_S1]
        if lumbar_ribs:
            out["reason"] = (
                f"ribs on body {lumbar_ribs[0] + 1}, which counting from the sacrum would be "
                f"{SPINE_UP[lumbar_ribs[0] - sacrum]}: a transitional spine, the count does not fit"
            )
            return out
        t12_pos = sacrum + T12_ABOVE_S1
        if (
            t12_pos < n
            and evidence[t12_pos]["lateral_view"]
            and not evidence[t12_pos]["cut"]
            and not evidence[t12_pos]["ribs"]
        ):
            out["reason"] = (
                "six rib-free vertebrae above the sacrum (a sixth lumbar vertebra, or T12 without "
                "ribs): the count does not fit"
            )
            return out
        by_anchor = _names_from(sacrum, "S1", n, first=sacrum)
        out.update(
            anchor="sacrum",
            confidence="moderate",
            counting=f"S1 at body {sacrum + 1} from the foot; L5, L4, ... counted upwards, one per body",
        )
    elif t12 is not None:
        s1_pos = t12 - T12_ABOVE_S1
        if s1_pos >= 0 and evidence[s1_pos]["lateral_view"] and not evidence[s1_pos]["cut"]:
            out["reason"] = (
                "the body six below T12 (lowest ribs), where S1 should be, is not a sacrum "
                "(a sixth lumbar vertebra, or a rib on L1): the count does not fit"
            )
            return out
        by_anchor = _names_from(t12, "T12", n, first=max(t12 - T12_ABOVE_S1 + 1, 0))
        out.update(
            anchor="T12 (lowest rib-bearing vertebra)",
            confidence="moderate",
            counting=f"T12 at body {t12 + 1} from the foot; L1 ... L5 counted downwards, T11 ... upwards",
        )
    hinted, hint_text = _hint_names(hint, n)
    if by_anchor is not None:
        if hinted is not None and any(hinted.get(k, v) != v for k, v in by_anchor.items()):
            out.update(
                names={},
                anchor=None,
                confidence="none",
                counting="",
                reason=f"the hint {hint_text} contradicts the {out['anchor']} anchor",
            )
            return out
        out["names"] = by_anchor
        if hinted is not None:
            out["counting"] += f"; the hint {hint_text} agrees"
        return out
    if hinted is not None:
        wrong = [k for k in rib_bodies if hinted.get(k, "T").startswith(("L", "S"))]
        if wrong:
            out["reason"] = (
                f"the hint {hint_text} contradicts the ribs on body {wrong[0] + 1} (named {hinted[wrong[0]]})"
            )
            return out
        out.update(
            names=hinted,
            anchor="hint",
            confidence="user",
            counting=f"from the user's hint {hint_text}, one name per body found, bottom up",
        )
        return out
    out["reason"] = hint_text or (
        "no anchor: no sacrum (alae and iliac wings) and no lowest rib-bearing vertebra fully in view"
        if n
        else "no vertebral body found"
    )
    return out
