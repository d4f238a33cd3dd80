"""pyinstrument: a statistical call-stack profiler for Python, with a sampling engine in C."""

# the package version (pyproject.toml reads it from here); see CHANGELOG.md
__version__ = "5.2.0"

from pyinstrument.profiler import Profiler, phase, profile  # noqa: E402


def load_ipython_extension(ipython):
    """`%load_ext pyinstrument`: registers the %pyinstrument magic."""
    try:
        from pyinstrument.magic import load_ipython_extension as load
    except ImportError:
        raise ImportError(
            "the %pyinstrument IPython magic is not in this version of pyinstrument yet; "
            "use `with pyinstrument.Profiler() as p: ...` and `p.print()` in a cell meanwhile"
        ) from None
    load(ipython)


__all__ = ["Profiler", "phase", "profile", "__version__", "load_ipython_extension"]
