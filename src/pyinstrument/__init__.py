"""pyinstrument: a statistical call-stack profiler for Python, with a sampling engine in C."""

__version__ = "5.1.0.dev0+c"

from pyinstrument.profiler import Profiler, profile  # noqa: E402


def load_ipython_extension(ipython):  # pragma: no cover - the magic lands with the IPython issue
    """`%load_ext pyinstrument`: the %pyinstrument magic (see docs)."""
    from pyinstrument.magic import load_ipython_extension as load

    load(ipython)


__all__ = ["Profiler", "profile", "__version__", "load_ipython_extension"]
