"""Compatibility with code written against upstream pyinstrument's internals.

Upstream pyinstrument's ``pyinstrument.profile(...)`` returns a
``pyinstrument.context_manager.ProfileContext``; ours returns
``pyinstrument.profiler._ProfileContext``, which this module names the same way, so that
``from pyinstrument.context_manager import ProfileContext`` (and ``isinstance`` checks
against it) keep working.
"""

from pyinstrument.profiler import _ProfileContext as ProfileContext

__all__ = ["ProfileContext"]
