"""Options for renderers as the command line and the IPython magic take them: ``-p``
values, and the processor options that --hide and --show ask for."""

from __future__ import annotations

import fnmatch
import inspect
import json
from typing import Any, Dict, Optional, Sequence

from pyinstrument.renderers.registry import RendererError


def parse_render_options(items: Sequence[str]) -> Dict[str, Any]:
    """Turn ``-p`` values into renderer keyword arguments.

    ``KEY=VALUE`` reads VALUE as JSON, falling back to the plain string; a bare ``KEY``
    means ``True``; ``a.b=VALUE`` sets key ``b`` in the dict option ``a``.
    """
    result: Dict[str, Any] = {}
    for item in items:
        key, has_value, raw = item.partition("=")
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise RendererError(f"invalid render option {item!r}: expected KEY or KEY=VALUE")
        if not has_value:
            value: Any = True
        else:
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
        parts = key.split(".")
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise RendererError(f"render option {where!r} is set to a value, so {key!r} cannot set a key inside it")
            node = child
        if isinstance(node.get(parts[-1]), dict) and not isinstance(value, dict):
            raise RendererError(
                f"render option {key!r} was given keys with dotted options, so it cannot also be set to {raw!r}"
            )
        node[parts[-1]] = value
    return result


def accepted_parameters(renderer_class: type) -> Optional[set]:
    """Names the renderer's constructor accepts, or None when it takes **kwargs."""
    try:
        signature = inspect.signature(renderer_class)
    except (TypeError, ValueError):
        return None
    names = set()
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            names.add(parameter.name)
    return names


def merge(base: Dict[str, Any], extra: Dict[str, Any]) -> Dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def processor_options_from(options: Any) -> Dict[str, Any]:
    """The ``processor_options`` that --hide, --hide-regex, --show and --show-regex ask for."""
    processor_options: Dict[str, Any] = {}
    if options.hide is not None:
        processor_options["hide_regex"] = fnmatch.translate(options.hide)
    if options.hide_regex is not None:
        processor_options["hide_regex"] = options.hide_regex
    if options.show is not None:
        processor_options["show_regex"] = fnmatch.translate(options.show)
    if options.show_regex is not None:
        processor_options["show_regex"] = options.show_regex
    return processor_options
