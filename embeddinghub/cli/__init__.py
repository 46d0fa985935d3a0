"""The `embeddinghub` command line. One module per concept registers its commands on `main`."""

from __future__ import annotations

from .base import main

# Importing a module registers its commands on `main`.
from . import server as _server  # noqa: E402,F401
from . import spaces as _spaces  # noqa: E402,F401
from . import data as _data  # noqa: E402,F401
from . import partitions as _partitions  # noqa: E402,F401
from . import versions as _versions  # noqa: E402,F401
from . import acl as _acl  # noqa: E402,F401

__all__ = ["main"]
