"""The engine's decoders of copied interpreter data, checked against the interpreter itself.

The line-table decoder must give the line CPython gives for every instruction of real
code; the call decoder, which names the C function a thread is in, must name the callee
of each call or nothing, never a wrong one.
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


CALLS = """
def target(time, obj, g, h, x, y, a):
    time.sleep(x)
    obj.method(x, y)
    g(x)
    a.b.c(x)
    g(h(x), h(y))
    g(*x)
    g(x, key=y)
    obj.method(h(x))
"""
EXPECTED = ["sleep", "method", "g", "c", "h", "h", "g", "g", "g", "h", "method"]


class Anything:
    def __getattr__(self, name):
        return self

    def __call__(self, *args, **kwargs):
        return self

    def __iter__(self):
        return iter(())


def callee_names(code, bytecode):
    found = []
    for instr in dis.get_instructions(code):
        if not instr.opname.startswith("CALL") or instr.opname in ("CALL_INTRINSIC_1", "CALL_INTRINSIC_2"):
            continue
        ref = _engine._debug_callee(bytecode, instr.offset // 2)
        if ref is None:
            found.append(None)
            continue
        kind, index = ref
        if kind == "names":
            found.append(code.co_names[index])
        elif hasattr(code, "_varname_from_oparg"):
            found.append(code._varname_from_oparg(index))
        else:
            found.append(code.co_varnames[index])
    return found


def check_callees(found):
    assert len(found) == len(EXPECTED)
    for name, expected in zip(found, EXPECTED):
        # before 3.11 a call whose arguments are not simple values stays unnamed
        if name is None and sys.version_info < (3, 11):
            continue
        assert name == expected, (found, EXPECTED)


def test_call_decoder_names_the_callee_or_nothing():
    namespace = {}
    exec(compile(CALLS, "<calls>", "exec"), namespace)
    code = namespace["target"].__code__
    check_callees(callee_names(code, code.co_code))


@pytest.mark.skipif(sys.version_info < (3, 11), reason="no specialisation before 3.11")
def test_call_decoder_reads_specialised_bytecode():
    namespace = {}
    exec(compile(CALLS, "<calls>", "exec"), namespace)
    target = namespace["target"]
    anything = Anything()
    for _ in range(200):
        target(anything, anything, anything, anything, anything, anything, anything)
    code = target.__code__
    check_callees(callee_names(code, code._co_code_adaptive))
