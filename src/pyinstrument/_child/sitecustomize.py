"""Start-up hook for Python children of a program run with ``pyinstrument --subprocesses``.

The profiled parent puts this directory first on the children's ``PYTHONPATH``; Python
imports this module at start-up. It starts the child's profiler (see
``pyinstrument._subprocesses``), takes this directory off ``sys.path`` again, and runs
the ``sitecustomize`` the child would have run without us, if any. Nothing here may
break the child: a failure of ours leaves the child unprofiled, and says nothing.
"""

import os
import sys


def _profile_this_process():
    try:
        from pyinstrument import _subprocesses

        _subprocesses.start_in_child()
    except Exception:  # e.g. another Python, without pyinstrument
        pass


def _next_sitecustomize():
    """The module and loader of the sitecustomize the child would have run without us."""
    try:
        import importlib.machinery
        import importlib.util

        here = os.path.dirname(os.path.abspath(__file__))
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
        spec = importlib.machinery.PathFinder.find_spec("sitecustomize", sys.path)
        if spec is None or spec.loader is None:
            return None
        return importlib.util.module_from_spec(spec), spec.loader
    except Exception:
        return None


_profile_this_process()
_next = _next_sitecustomize()
if _next is not None:
    sys.modules["sitecustomize"] = _next[0]
    _next[1].exec_module(_next[0])  # its own errors are reported as Python reports them
