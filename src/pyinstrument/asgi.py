"""Upstream pyinstrument's import path for the ASGI middleware; it lives in
:mod:`pyinstrument.web.asgi`."""

from pyinstrument.web.asgi import *  # noqa: F401,F403
from pyinstrument.web.asgi import ProfilerMiddleware  # noqa: F401
