"""Start-up hook for Python children of a program run with ``pyinstrument --subprocesses``.

The profiled parent puts this directory first on the children's ``PYTHONPATH``; Python
imports this module at start-up. It starts the child's profiler (see
``pyinstrument._subprocesses``), then runs the ``sitecustomize`` the child would have
run without us, if any. Nothing here may break the child: any failure leaves the child
unprofiled.
"""

import os
import sys


def _profile_this_process():
    try:
        from pyinstrument import _subprocesses
    except Exception:  # e.g. another Python, without pyinstrument
        return
    try:
        _subprocesses.start_in_child()
    except Exception:
        pass


def _run_next_sitecustomize():
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


_profile_this_process()
_run_next_sitecustomize()
