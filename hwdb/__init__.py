"""servplan hardware database: accelerators, systems (nodes) and serving-engine profiles.

One YAML per accelerator in ``hwdb/gpus/``, per system in ``hwdb/systems/`` and the engine
profiles in ``hwdb/engines.yaml``; every number cites its source in the file's ``sources:`` map.
This package imports nothing of ours (no planner / solvers / cli) and only PyYAML from outside.
"""

from .loader import *  # noqa: F401,F403  (the public API is loader.__all__)
from .loader import __all__  # noqa: F401
