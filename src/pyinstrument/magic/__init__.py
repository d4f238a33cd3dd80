"""The ``%pyinstrument`` / ``%%pyinstrument`` IPython magic (``%load_ext pyinstrument``)."""

from pyinstrument.magic.magic import PyinstrumentMagic, load_ipython_extension

__all__ = ["PyinstrumentMagic", "load_ipython_extension"]
