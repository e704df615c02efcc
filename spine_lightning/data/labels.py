"""Vertebra label conventions (VerSe numbering is the project's on-disk convention)."""

from __future__ import annotations

from spine_lightning.core.errors import ConfigError

# VerSe: C1-C7 = 1-7, T1-T12 = 8-19, L1-L5 = 20-24, L6 = 25, sacrum = 26, T13 = 28.
VERSE_LABELS: dict[str, int] = {
    **{f"C{i}": i for i in range(1, 8)},
    **{f"T{i}": 7 + i for i in range(1, 13)},
    **{f"L{i}": 19 + i for i in range(1, 6)},
    "L6": 25,
    "S1": 26,
    "T13": 28,
}
VERSE_NAMES: dict[int, str] = {v: k for k, v in VERSE_LABELS.items()}

LUMBAR_LEVELS = ("L1", "L2", "L3", "L4", "L5")
DEFAULT_LEVELS = ("L2", "L3", "L4", "L5")


def level_value(name: str) -> int:
    """VerSe label value of a level name such as 'L3'."""
    try:
        return VERSE_LABELS[name]
    except KeyError:
        raise ConfigError("data.levels", name, f"one of {', '.join(VERSE_LABELS)}") from None


# Vertebrae found but not named (no anchor, anchors disagree): "vertebra1", "vertebra2", ... from
# foot to head, written as 101, 102, ... in label maps: outside VerSe's range (1-28), so that no
# VerSe tool reads them as a level.
UNNAMED_PREFIX = "vertebra"
UNNAMED_BASE = 100


def unnamed_name(k: int) -> str:
    """Name of the k-th (1 = lowest) unnamed vertebra."""
    return f"{UNNAMED_PREFIX}{k}"


def is_unnamed(name: str) -> bool:
    return name.startswith(UNNAMED_PREFIX) and name[len(UNNAMED_PREFIX) :].isdigit()


def label_value(name: str) -> int:
    """Label-map value of a level ('L3' -> 22, VerSe) or of an unnamed vertebra ('vertebra2' -> 102)."""
    if is_unnamed(name):
        return UNNAMED_BASE + int(name[len(UNNAMED_PREFIX) :])
    return level_value(name)


def check_levels(levels) -> list[str]:
    levels = [str(level) for level in levels]
    if not levels:
        raise ConfigError("data.levels", levels, "at least one level, e.g. [L2,L3,L4,L5]")
    for level in levels:
        level_value(level)
    if len(set(levels)) != len(levels):
        raise ConfigError("data.levels", levels, "each level at most once")
    return levels


# TotalSegmentator (v2) multilabel ids of the vertebrae: 26 S1, 27 L5 ... 31 L1, 32 T12 ... 43 T1,
# 44 C7 ... 50 C1 (one id per structure, counting up the spine).
TOTALSEG_IDS: dict[int, str] = {
    26: "S1",
    **{27 + i: f"L{5 - i}" for i in range(5)},
    **{32 + i: f"T{12 - i}" for i in range(12)},
    **{44 + i: f"C{7 - i}" for i in range(7)},
}
LABEL_MAP_PRESETS = ("verse", "totalseg")


def totalseg_structure_file(level: str) -> str:
    """File name of a level's mask in a TotalSegmentator subject's `segmentations/` folder."""
    return f"vertebrae_{level}.nii.gz"


def resolve_label_map(spec, key: str = "data.label_map") -> dict[int, int] | None:
    """Source label value → VerSe value, or None when the source already uses VerSe numbering.

    `spec` is a preset name (`verse`, `totalseg`) or a mapping from source value to a level name
    (`{30: L2, 29: L3}`) or to a VerSe value. Source values not in the mapping become background.
    """
    if spec is None or spec == "verse":
        return None
    if spec == "totalseg":
        return {value: VERSE_LABELS[name] for value, name in TOTALSEG_IDS.items()}
    if isinstance(spec, str) or not hasattr(spec, "items"):
        presets = ", ".join(LABEL_MAP_PRESETS)
        raise ConfigError(key, spec, f"one of {presets} or a mapping {{source value: level}}")
    mapping = {}
    for source, target in spec.items():
        try:
            source = int(source)
        except (TypeError, ValueError):
            raise ConfigError(key, dict(spec), "integer source label values as keys") from None
        if isinstance(target, str):
            mapping[source] = level_value_for(key, target)
        elif isinstance(target, int) and target in VERSE_NAMES:
            mapping[source] = target
        else:
            raise ConfigError(key, dict(spec), f"level names or VerSe values as targets, not {target!r}")
    return mapping


def level_value_for(key: str, name: str) -> int:
    if name not in VERSE_LABELS:
        raise ConfigError(key, name, f"one of {', '.join(VERSE_LABELS)}")
    return VERSE_LABELS[name]
