"""Profiling web requests: ``common`` holds what every framework shares (who may see
``?profile``, report files, slow-only capture, rendering a report as a response);
``wsgi``, ``asgi`` and ``django`` adapt it to each. Upstream's import paths
(``pyinstrument.middleware``, ``pyinstrument.wsgi``, ``pyinstrument.asgi``) still work."""
