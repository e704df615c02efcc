"""The stages put together: `localize` turns a column lying obliquely upright, finds the bodies
(core profile minima, else between the discs), reads their evidence, names them from the anchors
and withdraws the names when the count cannot be trusted (bodies irregularly spaced or leaving part
of the column without a body, a column leaning sideways, a body cut by the scan's edge out of the
column's rhythm). Unnamed bodies are still returned (bottom up) so that they can be segmented."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from spine_lightning.data.scan import Scan
from spine_lightning.inference.localization.anchors import (
    attached_half_width,
    body_evidence,
    find_sacrum,
    ilia_below_the_sacrum,
    lateral_parts,
)
from spine_lightning.inference.localization.bodies import (
    DISC_SMOOTH_MM,
    GAP_RANGE,
    bodies_between_discs,
    body_minima,
    disc_candidates,
    disc_chain,
    minima_clear_of_discs,
    profile_period,
    skipping_none,
    uncovered_column,
    with_partial_ends,
)
from spine_lightning.inference.localization.column import (
    Column,
    body_profile,
    column_extent,
    column_lean,
    column_on_grid,
    on_the_column,
    vertebra_centroid,
)
from spine_lightning.inference.localization.grid import GRID_MM
from spine_lightning.inference.localization.naming import name_bodies, sideways_lean_deg, spaced_like_the_rest

CANCELLOUS_HU = 110.0
SIDEWAYS_LEAN_MAX_DEG = 5.0  # bodies leaning more than this sideways: turned once more, then not named
COLUMN_TILT_DEG = 10.0  # a column leaning forwards/backwards more than this (lying obliquely) is turned upright first


BY_THE_NETWORK = "vertebrae the segmentation network finds along the column"


@dataclass
class Localisation:
    centres: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # named only
    bodies_mm: list[tuple[float, float, float]] = field(default_factory=list)  # all found, bottom up
    sacrum_index: int | None = None
    t12_index: int | None = None
    widths_mm: list[float] = field(default_factory=list)  # lateral reach of each body's bone
    evidence: list[dict] = field(default_factory=list)  # per body, bottom up
    named: bool = False
    anchor: str | None = None  # "sacrum", "T12 (lowest rib-bearing vertebra)", "sacrum and T12", "hint"
    counting: str = ""
    confidence: str = "none"  # "high" (two anchors agree), "moderate" (one anchor), "user" (hint)
    note: str = ""
    # how the bodies were placed: "core profile minima", "between discs" or "between discs, S1 below them"
    body_detector: str = ""
    turned_upright_deg: float = 0.0  # the column's lean in the sagittal plane, turned out first (0: upright)
    turned_sideways_deg: float = 0.0  # ... and sideways (measured on the bodies of a first look)
    sideways_lean_deg: float = 0.0  # the bodies' sideways lean as analysed (after any turn)

    def report(self) -> dict:
        return dict(
            method=("the segmentation network's vertebrae along the column, counted from the weight-free "
                    "anchors (sacrum and rib (T12))" if self.body_detector == BY_THE_NETWORK else
                    "weight-free (bone column, discs and core profile; sacrum and rib (T12) anchors)"),
            bodies_placed=self.body_detector,
            column_turned_upright_deg=round(self.turned_upright_deg, 1),
            column_turned_sideways_deg=round(self.turned_sideways_deg, 1),
            bodies_sideways_lean_deg=round(self.sideways_lean_deg, 1),
            named=self.named,
            note=self.note,
            anchor=self.anchor,
            counting=self.counting,
            confidence=self.confidence,
            bodies_found=len(self.bodies_mm),
            sacrum_found=self.sacrum_index is not None,
            t12_found=self.t12_index is not None,
            bodies_mm=[list(b) for b in self.bodies_mm],
            evidence=self.evidence,
            lateral_reach_mm=self.widths_mm,
            centres_mm={k: list(v) for k, v in self.centres.items()},
            anchor_mm=self.anchors_mm(),
        )

    def anchors_mm(self) -> dict[str, list[float]]:
        """The anchors found (used for the names, or disagreeing): 'sacrum' and/or 'T12' -> centre."""
        found = {"sacrum": self.sacrum_index, "T12 (lowest ribs)": self.t12_index}
        return {k: list(self.bodies_mm[i]) for k, i in found.items() if i is not None}


def localize(image: sitk.Image | Scan, hint: dict | None = None, bodies_mm: list | None = None) -> Localisation:
    """Vertebra centroids (mm) of a whole CT, named from the anchors in view (or the user's `hint`:
    `lowest_level` or `levels_in_view`), or left unnamed with the reason why.
    `bodies_mm`: the vertebrae, found another way (foot to head; `inference.vertebra_votes`), to
    read the anchors at and count instead of the bodies found here.

    Bodies are first the minima of the smoothed core profile, unless those sit on discs; when they
    cannot be counted (irregular, or leaving part of the column without a body), or sit on discs,
    the bodies are placed between the discs found along the column instead. The column's lean
    (turned upright beyond COLUMN_TILT_DEG) is measured on the column followed slice by slice."""
    grid, view, hu, bone, line = column_on_grid(image)
    if line is None:
        return Localisation(note="no spine column found: no vertebra is named")
    followed, _ = on_the_column(bone, line, GRID_MM)  # the centre line may run into the pelvis below S1
    centre, forward = column_lean(followed, column_extent(bone, followed, GRID_MM), grid)
    forward = forward if abs(forward) >= COLUMN_TILT_DEG else 0.0
    loc = (localize_on_grid(grid, hu, bone, line, view, hint, bodies_mm) if forward == 0.0
           else localize_turned(image, centre, forward, 0.0, hint, bodies_mm))
    if abs(loc.sideways_lean_deg) > SIDEWAYS_LEAN_MAX_DEG:  # measured on the bodies found: turn that too
        loc = localize_turned(image, centre, forward, loc.sideways_lean_deg, hint, bodies_mm)
    return loc


def localize_turned(image: sitk.Image | Scan, centre, forward_deg: float, sideways_deg: float,
                    hint: dict | None, bodies_mm: list | None = None) -> Localisation:
    """A patient lying obliquely: `localize` on the CT turned about `centre` so that a column leaning
    `forward_deg` and `sideways_deg` stands upright (the anchors are read on axial slices), resampled
    once from the CT; the points found are turned back."""
    turn = sitk.Euler3DTransform()
    turn.SetCenter([float(c) for c in centre])
    turn.SetRotation(-np.radians(forward_deg), np.radians(sideways_deg), 0.0)
    grid, view, hu, bone, line = column_on_grid(image, turn)
    if line is None:
        return Localisation(note="no spine column found: no vertebra is named")
    back = turn.GetInverse()  # the CT's points onto the turned grid
    turned = None if bodies_mm is None else [back.TransformPoint(tuple(map(float, p))) for p in bodies_mm]
    loc = localize_on_grid(grid, hu, bone, line, view, hint, turned)
    loc.bodies_mm = [turn.TransformPoint(p) for p in loc.bodies_mm]
    loc.centres = {k: turn.TransformPoint(p) for k, p in loc.centres.items()}
    loc.turned_upright_deg, loc.turned_sideways_deg = forward_deg, sideways_deg
    return loc


def localize_on_grid(grid: sitk.Image, hu: np.ndarray, bone: np.ndarray, line: np.ndarray, view: np.ndarray,
                     hint: dict | None, bodies_mm: list | None = None) -> Localisation:
    """`localize` on the canonical grid, the column's centre line found. Bodies and discs are sought
    only where the centre line is on the column followed slice by slice: below S1 it may run into
    the pelvis, where a minimum of its profile is no body (a body placed there hid an S1 not found,
    and L5 was called S1). The column's extent stays the centre line's: bone going on below a
    sacrum, pelvis or not, keeps the probe for an S1 not found (`ilia_below_the_sacrum`) running."""
    _, on = on_the_column(bone, line, GRID_MM)  # neither bodies nor discs where the line left the column
    extent = column_extent(bone, line, GRID_MM)
    minima = body_minima(body_profile(hu, line, GRID_MM), GRID_MM)
    minima = minima[on[minima]]
    fine = body_profile(hu, line, GRID_MM, DISC_SMOOTH_MM)
    candidates = disc_candidates(fine, GRID_MM)[0]
    candidates = candidates[on[candidates]]
    column = Column(grid, hu, bone, view, line, lateral_parts(bone, line, GRID_MM), candidates, extent)
    if bodies_mm is not None:  # found another way: counted and named here, never replaced
        heights = [grid.TransformPhysicalPointToContinuousIndex(tuple(map(float, p)))[2] for p in bodies_mm]
        return network_vertebrae_counted(column, sorted(int(round(z)) for z in heights if 0 <= round(z) < hu.shape[0]),
                                         hint)
    gaps = np.diff(minima) * GRID_MM
    relative = gaps / np.median(gaps) if len(gaps) else np.zeros(1)
    regular = GAP_RANGE[0] <= relative.min() and relative.max() <= GAP_RANGE[1]
    # the column's period: from the minima when they are regular, else from the profile's rhythm
    # when it is clear, else (a noisy profile) from the minima still, if most of their gaps agree
    period = None if regular else profile_period(fine, extent, GRID_MM)
    period = period or minima_period(gaps)
    discs = skipping_none(disc_chain(fine, GRID_MM, period), candidates)
    discs = discs[on[discs]]
    on_discs = not minima_clear_of_discs(minima, discs if len(discs) else candidates, GRID_MM)
    loc = None
    if len(minima) and not on_discs:
        loc, counted = locate_bodies(column, minima, "core profile minima", hint)
        if counted:
            return loc
    if len(discs):
        alt, alt_counted = between_discs_down_to_sacrum(column, discs, hint)
        if alt_counted or loc is None:
            loc = alt
    if loc is None:  # the minima may be discs, half a vertebra off: segmented, never named
        loc, _ = locate_bodies(column, minima, "core profile minima", hint, not_named=(
            "the core profile's minima sit on discs and the discs do not form a regular chain, so the "
            "bodies cannot be counted"))
    return loc


def network_vertebrae_counted(column: Column, heights: list[int], hint: dict | None) -> Localisation:
    """`locate_bodies` on the vertebrae the segmentation network found (slices `heights`, foot to
    head), with one body more a spacing below the lowest where the column goes on there: the
    network segments lumbar and thoracic vertebrae, not the sacrum of a real CT, so without that
    body its L5, between the iliac crests, could be the lowest body and taken for S1. Two bodies in
    a row that each read as the sacrum leave S1 in doubt, and nothing is named."""
    z = np.array(heights, dtype=int)
    if len(z) >= 2 and z[0] - int(np.median(np.diff(z))) >= column.extent[0]:
        z = np.r_[z[0] - int(np.median(np.diff(z))), z]
    loc, _ = locate_bodies(column, z, BY_THE_NETWORK, hint)
    if loc.named and loc.sacrum_index == 0 and find_sacrum(loc.evidence[1:], loc.widths_mm[1:]) == 0:
        reason = ("the two lowest bodies both read as the sacrum (alae and iliac wings beside each): "
                  "which of them is S1 is not clear")
        loc = replace(loc, centres={}, named=False, anchor=None, counting="", confidence="none",
                      note=f"{len(loc.bodies_mm)} vertebral bodies found, not named: {reason}")
        for ev in loc.evidence:
            ev["name"] = None
    return loc


def minima_period(gaps_mm: np.ndarray) -> float | None:
    """The median spacing (mm) of the core profile's minima when most of their gaps lie within
    GAP_RANGE of it; else None, and no disc chain is sought. The median of gaps that mostly
    disagree is no period: from gaps of 16 and 50 mm it was 33 mm against a true 26, a disc chain
    fitted it by skipping a disc, and the vertebrae above were named a level too low."""
    if not len(gaps_mm):
        return None
    median = float(np.median(gaps_mm))
    agree = (gaps_mm >= GAP_RANGE[0] * median) & (gaps_mm <= GAP_RANGE[1] * median)
    return median if agree.mean() > 0.5 else None


def between_discs_down_to_sacrum(column: Column, discs: np.ndarray, hint: dict | None) -> tuple[Localisation, bool]:
    """`locate_bodies` on the bodies between the discs. When they cannot be counted because more
    than GAP_RANGE[1] body spacings of column below the lowest of them hold no body, the disc under
    that body was missed (a thin L5/S1 disc tilted by the sacral slope leaves no narrow dip) and the
    body below it is S1 or L5: one more body is tried a spacing below. It is kept when the bodies
    can then be counted and it is recognised as the sacrum; or, with no hint given, when T12 names
    the bodies and this one stays unnamed (S1 is not counted from T12, and the body six below T12
    must be out of lateral view or cut: `name_bodies`). A body placed without its disc is never named."""
    extent = column.extent
    centres = bodies_between_discs(discs, extent)
    loc, counted = locate_bodies(column, centres, "between discs", hint)
    if counted or len(centres) < 2:
        return loc, counted
    step = float(np.median(np.diff(centres)))  # slices; the period `locate_bodies` measures the column by
    if centres[0] - extent[0] <= GAP_RANGE[1] * step:  # the bodies cover the column below
        return loc, counted
    tried = np.r_[centres[0] - round(step), centres]
    alt, alt_counted = locate_bodies(column, tried, "between discs, S1 below them", hint)
    # no cut body put below it by `with_partial_ends`
    added_is_lowest = with_partial_ends(tried, extent, column.disc_candidates)[0] == tried[0]
    if not (alt_counted and added_is_lowest):
        return loc, counted
    under_t12 = hint is None and alt.sacrum_index is None and alt.named and alt.evidence[0]["name"] is None
    return (alt, alt_counted) if alt.sacrum_index == 0 or under_t12 else (loc, counted)


def locate_bodies(column: Column, centres_z: np.ndarray, detector: str, hint: dict | None,
                  not_named: str = "") -> tuple[Localisation, bool]:
    """Centroids, anchors and names of the bodies centred at slices `centres_z` of the column, and
    whether those bodies could be counted (regularly spaced, covering the column in view).
    `not_named`: the reason why these bodies must not be named, whatever the anchors say."""
    grid, hu, bone, view, line = column.grid, column.hu, column.bone, column.view, column.line
    discs, extent = column.disc_candidates, column.extent
    if len(centres_z) == 0:
        return Localisation(note="no vertebral body found: no vertebra is named"), False
    found = centres_z
    nominal = with_partial_ends(found, extent, discs)  # may lie past the scan's ends
    centres_z = np.clip(nominal, 0, hu.shape[0] - 1)
    bounds = np.clip(np.concatenate([[0], (nominal[1:] + nominal[:-1]) // 2, [hu.shape[0]]]), 0, hu.shape[0])
    # Cancellous bone of osteoporotic bodies is as dark as 110 HU: count it towards the centroid,
    # or the dense posterior elements pull the centroid backwards.
    dense = bone | (ndimage.gaussian_filter(hu, 0.7) > CANCELLOUS_HU)
    bodies = [
        grid.TransformContinuousIndexToPhysicalPoint(vertebra_centroid(dense, line, z, lo, hi, GRID_MM))
        for z, lo, hi in zip(centres_z, bounds[:-1], bounds[1:], strict=True)
    ]
    widths = [attached_half_width(bone, (z, line[z, 0], line[z, 1]), GRID_MM) for z in centres_z]
    gaps = np.diff(found) * GRID_MM
    period = float(np.median(gaps)) if len(gaps) else 28.0
    evidence = [body_evidence(bone, view, line, int(z), period, GRID_MM, column.lateral) for z in centres_z]
    named = name_bodies(evidence, widths, hint, centres_z_mm=[float(z) * GRID_MM for z in centres_z])
    sacrum = named["sacrum"]
    # no body in rhythm below the sacrum (the lowest, or only cut bodies or the pelvis's far below it)
    nothing_below = sacrum is not None and (
        sacrum == 0 or (centres_z[sacrum] - centres_z[sacrum - 1]) * GRID_MM > GAP_RANGE[1] * period)
    uncovered = uncovered_column(found, extent, period, GRID_MM, sacrum is not None) or (
        ilia_below_the_sacrum(column, int(centres_z[sacrum]), period) if nothing_below else "")
    lean = sideways_lean_deg(bodies, evidence, named["sacrum"])
    if abs(lean) > SIDEWAYS_LEAN_MAX_DEG and named["names"]:
        named.update(names={}, anchor=None, counting="", confidence="none", reason=(
            f"the column leans {abs(lean):.0f}° sideways in the scan: the anchors and the discs are read on "
            "axial slices, which cut such a column obliquely, so the count is not trusted"))
    counted = not (uncovered or named.get("irregular"))
    if (uncovered or not_named) and named["names"]:
        named.update(names={}, anchor=None, counting="", confidence="none", reason=not_named or uncovered)
    counted = counted and not not_named
    in_rhythm = spaced_like_the_rest([float(z) * GRID_MM for z in nominal], evidence)
    named["names"] = {k: v for k, v in named["names"].items() if in_rhythm[k]}
    for k, ev in enumerate(evidence):
        ev.update(lateral_reach_mm=widths[k], name=named["names"].get(k))
    loc = Localisation(
        bodies_mm=bodies,
        sacrum_index=named["sacrum"],
        t12_index=named["t12"],
        widths_mm=widths,
        evidence=evidence,
        named=bool(named["names"]),
        anchor=named["anchor"],
        counting=named["counting"],
        confidence=named["confidence"],
        body_detector=detector,
    )
    loc.centres = {name: bodies[k] for k, name in sorted(named["names"].items())}
    loc.sideways_lean_deg = lean
    if loc.named:
        loc.note = f"named {', '.join(loc.centres)} from {loc.anchor}: {loc.counting}"
    else:
        loc.note = f"{len(bodies)} vertebral bodies found, not named: {not_named or named['reason'] or uncovered}"
    return loc, counted
