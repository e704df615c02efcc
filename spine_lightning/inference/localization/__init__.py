"""Weight-free localisation and naming of the vertebrae in a whole CT, stage by stage:

1. `grid`: the CT on a coarse canonical grid (2 mm, z foot to head) and its bone;
2. `column`: the spine column's centre line, its core profile, extent and lean;
3. `bodies`: the vertebral bodies along it (core profile minima, or half way between the discs);
4. `anchors`: what each body shows beside it (alae and ilia: the sacrum; ribs: T12);
5. `naming`: names counted from the anchors, or none, with the reason;
`pipeline` puts them together (`localize`), turning a column lying obliquely upright first; given
the vertebrae found another way (`bodies_mm`: the segmentation network's, `inference.vertebra_votes`),
it reads the anchors at those and counts them instead of its own bodies.
A vertebra is named right or not named: see the README, "Automatic localisation and naming".
"""

from spine_lightning.inference.localization.grid import GRID_MM, canonical_grid
from spine_lightning.inference.localization.pipeline import Localisation, localize

__all__ = ["GRID_MM", "Localisation", "canonical_grid", "localize"]
