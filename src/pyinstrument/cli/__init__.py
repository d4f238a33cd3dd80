"""The ``pyinstrument`` command, by concern: ``arguments`` (parsing), ``target`` (running
the program), ``output`` (renderers, the report, kept sessions); ``pyinstrument.__main__``
is its entry point."""
