"""A deterministic simulator of both source systems (MOOC Open edX export API + H5P plugin).

```python
from moocassets.simulator import (World, WorldConfig, create_app, h5p_base, mooc_base,
                                  serve_in_thread)
world = World(WorldConfig(courses=3, learners=200, seed=7))
app = create_app(world, mooc_email="ops@example.edu", mooc_password="secret")
with serve_in_thread(app) as root:          # "http://127.0.0.1:PORT"
    mooc = mooc_base(root)                    # root + "/api/custom/v1"
    h5p = h5p_base(root)                      # root + "/wp-json/mooc/v1"
```
CLI: ``python -m moocassets.simulator --port 8765 --courses 3 --learners 200 --seed 7``.
"""

from .app import H5P_PREFIX, MOOC_PREFIX, SESSION_TTL_S, SIM_PREFIX, create_app
from .faults import FaultConfig, Faults, parse_envelopes
from .server import h5p_base, mooc_base, serve_in_thread
from .world import VARIANTS, World, WorldConfig

__all__ = [
    "H5P_PREFIX",
    "MOOC_PREFIX",
    "SESSION_TTL_S",
    "SIM_PREFIX",
    "VARIANTS",
    "FaultConfig",
    "Faults",
    "World",
    "WorldConfig",
    "create_app",
    "h5p_base",
    "mooc_base",
    "parse_envelopes",
    "serve_in_thread",
]
