"""Upstream pyinstrument's import path for the WSGI middleware; it lives in
:mod:`pyinstrument.web.wsgi`."""

from pyinstrument.web.wsgi import *  # noqa: F401,F403
from pyinstrument.web.wsgi import ProfilerMiddleware  # noqa: F401
