"""Vertebra label conventions (VerSe numbering is the project's on-disk convention)."""

from __future__ import annotations

from ..errors import ConfigError

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


def check_levels(levels) -> list[str]:
    levels = [str(level) for level in levels]
    if not levels:
        raise ConfigError("data.levels", levels, "at least one level, e.g. [L2,L3,L4,L5]")
    for level in levels:
        level_value(level)
    if len(set(levels)) != len(levels):
        raise ConfigError("data.levels", levels, "each level at most once")
    return levels
