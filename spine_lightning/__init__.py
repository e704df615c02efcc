"""spine_lightning: single lumbar vertebra segmentation in CT (Lightning + Hydra)."""

__version__ = "0.1.0"

# Config resolvers (${launch_cwd:}, ${sweep_group:}, ${hydra_choice:...}) must exist wherever a
# saved or composed config is resolved, so importing the package registers them.
from spine_lightning.core import resolvers  # noqa: F401
from spine_lightning.training.resume import register_resolvers as _register_run_dir  # noqa: E402

_register_run_dir()  # ${spine_run_dir:} in conf/hydra/default.yaml, used by every entry point
