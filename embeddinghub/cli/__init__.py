"""The `embeddinghub` command line. One module per concept registers its commands on `main`."""

from __future__ import annotations

# Importing a module registers its commands on `main`.
from . import acl as _acl  # noqa: F401
from . import cluster as _cluster  # noqa: F401
from . import data as _data  # noqa: F401
from . import partitions as _partitions  # noqa: F401
from . import server as _server  # noqa: F401
from . import spaces as _spaces  # noqa: F401
from . import tuning as _tuning  # noqa: F401
from . import versions as _versions  # noqa: F401
from .base import main

__all__ = ["main"]
