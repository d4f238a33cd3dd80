"""The engine's decoders of copied interpreter data, checked against the interpreter itself.

The line-table decoder must give the line CPython gives for every instruction of real
code; the stack-depth analysis, which finds the object a call calls on the value stack,
must find a depth for all real code, within the stack the compiler sized.
"""

from __future__ import annotations

import dis
import json
import re
import sys
import threading
import types

import pytest

from pyinstrument import _engine

pytestmark = pytest.mark.engine


def all_code(code):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from all_code(const)


def module_code():
    for module in (json.decoder, json.encoder, re, threading, dis):
        source = open(module.__file__, encoding="utf-8").read()
        yield from all_code(compile(source, module.__file__, "exec"))


def expected_lines(code):
    """{code unit index: line} as CPython reports it (-1 where an instruction has no line)."""
    lines = {}
    if sys.version_info >= (3, 10):
        for start, end, line in code.co_lines():
            for offset in range(start, end, 2):
                lines[offset // 2] = -1 if line is None else line
    else:
        starts = dict(dis.findlinestarts(code))
        line = code.co_firstlineno
        for offset in range(0, len(code.co_code), 2):
            line = starts.get(offset, line)
            lines[offset // 2] = line
    return lines


def line_table(code):
    return code.co_lnotab if sys.version_info < (3, 10) else code.co_linetable


def test_line_decoder_agrees_with_the_interpreter_on_real_code():
    checked = 0
    for code in module_code():
        table = line_table(code)
        for index, line in expected_lines(code).items():
            assert _engine._debug_line(table, code.co_firstlineno, index) == line, (code, index)
            checked += 1
    assert checked > 5000


def test_line_decoder_survives_corrupt_tables():
    code = compile("x = 1\nfor i in range(3):\n    x += i\n", "<t>", "exec")
    table = line_table(code)
    for cut in range(len(table)):
        for index in range(0, 40):
            _engine._debug_line(table[:cut], 1, index)  # must not crash or read out of bounds
    for junk in (b"\xff" * 64, b"\x80" * 64, bytes(range(256))):
        for index in range(0, 300, 7):
            _engine._debug_line(junk, 1, index)


FLOW = """
import contextlib

def target(items, lock, g, h, x, y):
    for i in items:
        if i > x:
            continue
        try:
            g(i, key=h(y))
        except (KeyError, ValueError) as e:
            g(e)
        finally:
            h(x)
    with lock, contextlib.suppress(Exception):
        g(*items, **{"k": x})
    while x:
        x = [h(v) for v in items if v] or None
    MATCH
    return (yield from g(x)) if y else {k: v for k, v in y}

async def coroutine(a, b):
    async with a as c:
        async for d in b:
            await c(d)
    return [await e for e in a]
"""
MATCH = """match y:
        case {"a": [1, *rest]}:
            g(rest)
        case str() | bytes():
            pass"""
FLOW = FLOW.replace("MATCH", MATCH if sys.version_info >= (3, 10) else "pass")


def exception_table(code):
    return getattr(code, "co_exceptiontable", b"")


def flow_code():
    namespace = {}
    exec(compile(FLOW, "<flow>", "exec"), namespace)
    yield from all_code(namespace["target"].__code__)
    yield from all_code(namespace["coroutine"].__code__)
    yield from module_code()


def test_stack_depths_agree_with_the_compiler_on_real_code():
    # the depth at every instruction is what names the callable of a call: it must be
    # found for all code, and never beyond the stack the compiler sized
    checked = calls_reached = 0
    for code in flow_code():
        depths = _engine._debug_stack_depths(code.co_code, exception_table(code))
        assert depths is not None, code
        reached = [depth for depth in depths.values() if depth >= 0]
        assert max(reached) <= code.co_stacksize, code
        # a call has at least its callable on the stack (-1: dead code the compiler left)
        calls = [depths[i.offset // 2] for i in dis.get_instructions(code) if i.opname.startswith("CALL")]
        assert all(depth >= 1 or depth == -1 for depth in calls), code
        checked += len(reached)
        calls_reached += sum(depth >= 1 for depth in calls)
    assert checked > 5000 and calls_reached > 500


@pytest.mark.skipif(sys.version_info < (3, 11), reason="no specialisation before 3.11")
def test_stack_depths_of_specialised_bytecode_are_the_same():
    namespace = {}
    exec(compile(FLOW, "<flow>", "exec"), namespace)
    target = namespace["target"]

    class Lock:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    for _ in range(200):
        target([1, 2, 3], Lock(), lambda *a, **k: None, lambda v: v, 2, "s")
    code = target.__code__
    plain = _engine._debug_stack_depths(code.co_code, exception_table(code))
    assert _engine._debug_stack_depths(code._co_code_adaptive, exception_table(code)) == plain


def test_stack_depth_analysis_survives_corrupt_bytecode():
    code = next(c for c in flow_code() if c.co_name == "target")
    for cut in range(0, len(code.co_code), 2):
        _engine._debug_stack_depths(code.co_code[:cut], exception_table(code)[: cut // 3])
    for junk in (b"\xff" * 64, b"\x90\xff" * 40, bytes(range(256))):
        _engine._debug_stack_depths(junk, junk)  # must not crash or read out of bounds


