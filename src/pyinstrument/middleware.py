"""Upstream pyinstrument's import path for the Django middleware (``MIDDLEWARE = [...,
"pyinstrument.middleware.ProfilerMiddleware"]``); it lives in :mod:`pyinstrument.web.django`."""

from pyinstrument.web.django import *  # noqa: F401,F403
from pyinstrument.web.django import ProfilerMiddleware  # noqa: F401
