"""The ``.pyisession`` file: the session itself, saved as JSON.

This is not a report but the recorded data (every frame record with its time, plus
what is needed to interpret them), so any other report can be made from it later:
``pyinstrument --load file.pyisession -r html``, or ``Session.load(path)`` in Python.
The keys upstream pyinstrument reads come first and mean the same, so upstream
pyinstrument 5.x loads these files too; our additions (CPU time per record, the
timeline, thread names, dropped samples) sit under keys it ignores (see
:meth:`Session.to_json`).

Untrusted names survive exactly: the JSON is ASCII, with everything else escaped as
``\\uXXXX``, including a lone surrogate (how Python represents a file path that is not
valid UTF-8), which ``json.loads`` turns back into the same string.
"""

from __future__ import annotations

from typing import List

from pyinstrument.renderers.base import Renderer
from pyinstrument.session import Session


class SessionRenderer(Renderer):
    """Writes the session as a ``.pyisession`` file (JSON), loadable with
    :meth:`Session.load` or ``pyinstrument --load``."""

    output_file_extension = "pyisession"
    output_is_binary = False

    def __init__(self, tree_format: bool = False) -> None:
        super().__init__()
        self.tree_format = tree_format  # accepted as upstream does, which also ignores it

    def render(self, session: Session) -> str:
        return session.to_file_text()

    def render_chunks(self, session: Session) -> List[bytes]:
        """The file's bytes in pieces, for writing a long run's session (hundreds of
        MB) without holding it whole more than once."""
        return session.to_file_chunks()
