"""Damaged session files: a seeded set of mutations of real sessions, each loaded and
rendered in every format.

The promise tested: ``Session.load`` either returns a session that every renderer
renders, or raises ``SessionFileError``; and on the command line a file that cannot
be used is one line on stderr and exit status 2, with no output file left behind.

The bulk runs in this process (thousands of renders); a sample of the cases goes
through ``pyinstrument --load`` and ``--load-prev`` in a subprocess. Run this file as
a script (``python tests/test_session_fuzz.py``) to print the counts.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import marshal
import math
import random
import re
import subprocess
import threading
import time
from array import array
from collections import Counter
from functools import lru_cache, reduce
from operator import getitem
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple
from xml.etree import ElementTree

import pytest
from helpers import run_pyinstrument
from sessions import hostile_session, simple_session, threaded_session

from pyinstrument import Profiler
from pyinstrument.__main__ import create_renderer, parse_command_line
from pyinstrument.frame_table import decode_array, encode_array
from pyinstrument.renderers import _RENDERER_MODULES
from pyinstrument.session import Session, SessionFileError

#: every built-in format, by its -r name, and the text report's timeline view
FORMATS = ["text", "html", "json", "speedscope", "pstats", "session", "collapsed", "flamegraph", "firefox",
           "chrometrace", "pprof"]
VIEWS = {name: [name] for name in FORMATS}
VIEWS["text --timeline"] = ["text", "--timeline"]

SEED = 12  # with a seed document, fixes the mutations made of it


# --- seeds: sessions our profiler recorded, and hand-made ones ---------------------------


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(i * i for i in range(100))


def record_threaded_session() -> Session:
    """All threads, with a timeline: the main thread and a named worker both busy."""
    worker = threading.Thread(target=_spin, args=(0.2,), name="fuzz-worker")
    with Profiler(all_threads=True) as profiler:
        worker.start()
        _spin(0.2)
        worker.join()
    return profiler.last_session


def record_async_session() -> Session:
    """A coroutine that awaits (the report shows [await]) and works."""

    async def nap() -> None:
        await asyncio.sleep(0.1)
        _spin(0.2)

    async def main() -> Session:
        with Profiler(async_mode="enabled") as profiler:
            await nap()
        return profiler.last_session

    return asyncio.run(main())


@lru_cache(maxsize=None)
def seed_documents() -> Dict[str, Dict[str, Any]]:
    """The unmutated session documents the mutations start from (recorded once)."""
    return {
        "recorded threads": record_threaded_session().to_json(),
        "recorded async": record_async_session().to_json(),
        "hand-made threads": threaded_session().to_json(),
        "hand-made hostile": hostile_session().to_json(),
    }


# --- mutations -------------------------------------------------------------------------

# a value that json.dumps cannot write is put in as a placeholder string, then swapped
# for its raw text
_RAW = "\x00raw:"


def raw(text: str) -> str:
    return _RAW + text


def dump(document: Any) -> bytes:
    text = json.dumps(document)
    return re.sub(r'"\\u0000raw:((?:[^"\\]|\\.)*)"', lambda m: json.loads(f'"{m.group(1)}"'), text).encode()


def paths_in(value: Any, path: Tuple[Any, ...] = ()) -> Iterator[Tuple[Tuple[Any, ...], Any]]:
    """Every (path, value) in a JSON document, the document itself first."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths_in(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths_in(item, path + (index,))


def replaced(document: Any, path: Tuple[Any, ...], new: Any) -> Any:
    """A copy of the document with the value at ``path`` replaced by ``new``."""
    copy = json.loads(json.dumps(document))
    reduce(getitem, path[:-1], copy)[path[-1]] = new
    return copy


def deleted(document: Any, path: Tuple[Any, ...]) -> Any:
    copy = json.loads(json.dumps(document))
    del reduce(getitem, path[:-1], copy)[path[-1]]
    return copy


#: numbers a damaged or hand-edited file may hold where a number is expected
ODD_NUMBERS = [raw("NaN"), raw("Infinity"), raw("-Infinity"), raw("1e999"), raw("-1e999"), -1, 0, -0.5, 1e308,
               2**64, -(2**63), 10**400, 1e-320, True]
#: values of another type
ODD_TYPES = ["12", "", None, [], {}, [1, 2], {"a": 1}, False]
#: text where names and paths are, JSON escapes that decode to lone surrogates included
ODD_TEXTS = [raw('"\\ud800"'), raw('"\\udfff"'), raw('"\\udce9 caf"'), raw('"a\\ud83d"'), "\u202eevil", "\x00",
             "\x00\x00\x00", "\x01x\x01", "\uffff\ufffe", "", "x" * 100_000, "<thread>\x00<thread>\x00-1",
             "f\x00p\x00notaline", "f\x00p\x00" + "9" * 400, "f\x00p\x001\x01l" + "9" * 30]


def mutations(name: str, document: Dict[str, Any], rng: random.Random) -> Iterator[Tuple[str, bytes]]:
    """(label, file contents) of the damaged variants of one seed document."""
    text = dump(document)
    yield f"{name}: unmutated", text

    for position in sorted(rng.sample(range(1, len(text)), 12)):
        yield f"{name}: truncated at {position}", text[:position]
    for _ in range(12):
        position, bits = rng.randrange(len(text)), rng.randrange(1, 256)
        flipped = bytearray(text)
        flipped[position] ^= bits
        yield f"{name}: byte {position} ^ {bits:#x}", bytes(flipped)

    def variant(path: Tuple[Any, ...], new: Any) -> Tuple[str, bytes]:
        return f"{name}: {'/'.join(map(str, path))} = {new!r}"[:200], dump(replaced(document, path, new))

    for key, value in document.items():
        path = (key,)
        yield f"{name}: {key} missing", dump(deleted(document, path))
        # a number: every odd number; anything: values of other types
        odd_numbers = ODD_NUMBERS if _is_number(value) else rng.sample(ODD_NUMBERS, 2)
        for new in odd_numbers + rng.sample(ODD_TYPES, 3):
            yield variant(path, new)
        if isinstance(value, (list, dict)) and value:
            # the other container type, and what lies below: two leaves
            reshaped = dict(enumerate(value)) if isinstance(value, list) else list(value.values())
            yield f"{name}: {key} reshaped", dump(replaced(document, path, json.loads(json.dumps(reshaped))))
            leaves = [(p, v) for p, v in paths_in(value, path) if not isinstance(v, (list, dict))]
            for leaf, old in rng.sample(leaves, min(2, len(leaves))):
                choices = ODD_TEXTS if isinstance(old, str) else ODD_NUMBERS
                for new in rng.sample(choices, 2) + rng.sample(ODD_TYPES, 1):
                    yield variant(leaf, new)
    for new in ODD_TEXTS:  # where names are: a frame of the first stack
        yield variant(("frame_records", 0, 0, 0), new)
    yield variant(("target_description",), ODD_TEXTS[0])
    yield variant(("frame_records", 0, 1), -1.0)
    yield f"{name}: an extra key", dump(dict(document, extra={"x": [1, 2]}))
    timeline = document.get("timeline")
    if isinstance(timeline, dict) and isinstance(timeline.get("records"), str):
        # the base64 arrays: a record that does not exist, a time that is no time
        records = decode_array("I", timeline["records"])
        seconds = decode_array("f", timeline["seconds"])
        for index in (len(document["frame_records"]), 2**32 - 1):
            changed = array("I", records)
            changed[0] = index
            yield variant(("timeline", "records"), encode_array(changed))
        for value in (-1.0, math.nan, math.inf):
            changed_seconds = array("f", seconds)
            changed_seconds[0] = value
            yield variant(("timeline", "seconds"), encode_array(changed_seconds))
        yield variant(("timeline", "seconds"), encode_array(seconds[:-1]))
    yield variant(("frame_records",), raw("[" * 100_000 + "]" * 100_000))
    yield variant(("frame_records", 0, 0, 0), raw('{"a":' * 50_000 + "1" + "}" * 50_000))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def generic_cases() -> Iterator[Tuple[str, bytes]]:
    """Files that are not sessions at all."""
    yield "empty", b""
    yield "100k [", b"[" * 100_000
    yield "100k [ closed", b"[" * 100_000 + b"]" * 100_000
    yield "100k {", b'{"a":' * 100_000
    yield "not UTF-8", b"\xff\xfe{}"
    yield "UTF-16 JSON", '{"start_time": 1}'.encode("utf-16")
    yield "a number", b"1e999"
    yield "NaN", b"NaN"
    yield "null", b"null"
    yield "a list", b"[1, 2]"
    yield "a string", b'"\\ud800"'


def fuzz_cases() -> List[Tuple[str, bytes]]:
    """The whole set; a seed's mutations depend only on its document (the hand-made
    seeds give the same cases on every run, the recorded ones vary with what the
    profiler caught)."""
    cases = list(generic_cases())
    for name, document in seed_documents().items():
        cases.extend(mutations(name, document, random.Random(f"{SEED}:{name}")))
    return cases


# --- running a case --------------------------------------------------------------------


def renderers() -> Dict[str, Any]:
    """Each view's renderer, built as ``pyinstrument --load FILE -r NAME -o FILE`` builds it."""
    built = {}
    for view, args in VIEWS.items():
        cli = parse_command_line(["--load", "x.pyisession", "-r", *args, "-o", "out"])
        built[view] = create_renderer(cli, io.StringIO())
    return built


def file_contents(report: Any) -> bytes:
    """What -o writes: the report as UTF-8, a lone surrogate that stands for a file
    name's undecodable byte written as that byte."""
    return report if isinstance(report, bytes) else report.encode("utf-8", "surrogateescape")


def _strict_json(data: bytes) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(data, parse_constant=refuse)


#: what reads each format back, for the formats that a cheap reader can check
READERS: Dict[str, Callable[[bytes], Any]] = {
    "json": _strict_json,
    "speedscope": _strict_json,
    "chrometrace": _strict_json,
    "firefox": _strict_json,
    "session": lambda data: Session.from_json(_strict_json(data)),
    "pstats": marshal.loads,
    "pprof": gzip.decompress,
    "flamegraph": ElementTree.fromstring,
}


def run_case(path: Path, built: Dict[str, Any], outcomes: Counter) -> List[str]:
    """Loads ``path`` and renders it in every view; counts what happened and returns
    the failures (anything but a rendered report or SessionFileError at load)."""
    try:
        session = Session.load(path)
    except SessionFileError as exc:
        outcomes["rejected (SessionFileError)"] += 1
        message = str(exc)
        if "\n" in message or not message:
            return [f"load: SessionFileError is not one line: {message!r}"]
        return []
    except Exception as exc:  # noqa: BLE001 -- the failure this test exists to find
        return [f"load: {type(exc).__name__}: {str(exc)[:200]}"]
    outcomes["loaded"] += 1
    failures = []
    for view, renderer in built.items():
        try:
            contents = file_contents(renderer.render(session))
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{view}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        try:
            READERS.get(view, bytes)(contents)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{view}: the output does not read back: {type(exc).__name__}: {str(exc)[:200]}")
        else:
            outcomes[f"rendered {view}"] += 1
    return failures


@pytest.fixture(scope="module")
def cases() -> List[Tuple[str, bytes]]:
    return fuzz_cases()


def run_all(cases: List[Tuple[str, bytes]], directory: Path) -> Tuple[Counter, List[str]]:
    built = renderers()
    outcomes: Counter = Counter()
    failures = []
    path = directory / "case.pyisession"
    for label, data in cases:
        path.write_bytes(data)
        outcomes["cases"] += 1
        case_failures = run_case(path, built, outcomes)
        outcomes["cases that failed"] += bool(case_failures)
        failures.extend(f"{label}: {failure}" for failure in case_failures)
    outcomes["failures"] = len(failures)
    return outcomes, failures


def format_counts(outcomes: Counter) -> str:
    lines = [f"{outcomes['cases']} cases: {outcomes['loaded']} loaded, "
             f"{outcomes['rejected (SessionFileError)']} rejected with SessionFileError, "
             f"{outcomes['cases that failed']} failed ({outcomes['failures']} failures)"]
    for view in VIEWS:
        rendered = outcomes[f"rendered {view}"]
        lines.append(f"  {view:<16} rendered {rendered}, failed {outcomes['loaded'] - rendered}")
    return "\n".join(lines)


def test_every_built_in_format_is_fuzzed():
    assert {type(renderer).__name__ for renderer in renderers().values()} == set(_RENDERER_MODULES)


def test_unmutated_seeds_load_and_render_in_every_format(tmp_path):
    built = renderers()
    for name, document in seed_documents().items():
        path = tmp_path / "seed.pyisession"
        path.write_bytes(dump(document))
        outcomes: Counter = Counter()
        assert run_case(path, built, outcomes) == [], name
        assert outcomes["loaded"] == 1, name


def test_every_damaged_file_is_rendered_or_refused(cases, tmp_path):
    outcomes, failures = run_all(cases, tmp_path)
    print("\n" + format_counts(outcomes))
    assert failures == [], "\n".join(failures[:40])
    assert outcomes["rejected (SessionFileError)"] > 0 and outcomes["loaded"] > 0


# --- the command line: a sample in a subprocess ----------------------------------------


def simple_document(path: Tuple[Any, ...] = (), new: Any = None) -> bytes:
    document = simple_session().to_json()
    return dump(replaced(document, path, new) if path else document)


#: the damaged files of the issue, and what the command line renders them to
NAMED_CASES = {
    "NaN start time, text": (lambda: simple_document(("start_time",), raw("NaN")), "text"),
    "NaN start time, pprof": (lambda: simple_document(("start_time",), raw("NaN")), "pprof"),
    "a record time of 1e999, html": (lambda: simple_document(("frame_records", 0, 1), raw("1e999")), "html"),
    "100k nested [": (lambda: b"[" * 100_000, "speedscope"),
    "a truncated file": (lambda: simple_document()[:-20], "firefox"),
}


def pyinstrument(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_pyinstrument(*args, cwd=cwd, check=False)


def assert_refused(result: subprocess.CompletedProcess, start: str) -> None:
    """One line on stderr saying why, exit status 2, nothing on stdout."""
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(start), result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("existing", [False, True], ids=["new output", "existing output"])
@pytest.mark.parametrize("case", NAMED_CASES)
def test_command_line_refuses_a_damaged_file_in_one_line(tmp_path, case, existing):
    make, renderer = NAMED_CASES[case]
    damaged = tmp_path / "damaged.pyisession"
    damaged.write_bytes(make())
    out = tmp_path / "report.out"
    if existing:
        out.write_bytes(b"a report the user had")
    result = pyinstrument("--load", str(damaged), "-r", renderer, "-o", str(out), cwd=tmp_path)
    assert_refused(result, f"pyinstrument: error: can't load session file {str(damaged)!r}: ")
    if existing:
        assert out.read_bytes() == b"a report the user had"
    else:
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["damaged.pyisession"] + ["report.out"] * existing)


def test_command_line_refuses_a_sample_of_the_fuzz_set(cases, tmp_path):
    """Four files the loader refuses (mutations of the hand-made seeds), each through one format."""
    refused = []
    for label, data in cases:
        if label.startswith("hand-made"):
            try:
                Session.from_json(json.loads(data))
            except (ValueError, RecursionError):
                refused.append((label, data))
    sample = random.Random(SEED).sample(refused, 4)
    for (label, data), renderer in zip(sample, ["collapsed", "chrometrace", "pstats", "json"]):
        damaged = tmp_path / "damaged.pyisession"
        damaged.write_bytes(data)
        result = pyinstrument("--load", str(damaged), "-r", renderer, "-o", "out", cwd=tmp_path)
        assert_refused(result, "pyinstrument: error: can't load session file ")
        assert not (tmp_path / "out").exists(), label


def test_load_prev_refuses_a_damaged_kept_session_in_one_line(tmp_path, private_data_directory):
    from pyinstrument import session_history

    identifier = session_history.save(simple_session())
    (kept,) = [p for p in private_data_directory.rglob("*") if identifier in p.name]
    kept.write_bytes(simple_document(("frame_records", 0, 1), raw("NaN")))
    result = pyinstrument("--load-prev", identifier, "-r", "html", "-o", "out.html", cwd=tmp_path)
    assert_refused(result, f"pyinstrument: error: can't load previous session {identifier!r}: ")
    assert not (tmp_path / "out.html").exists()


def test_a_lone_surrogate_in_a_name_is_rendered_escaped(tmp_path):
    """A name with a lone surrogate that stands for no byte (a JSON escape such as
    \\ud800, which Python can hold but UTF-8 cannot) renders, shown as that escape."""
    damaged = tmp_path / "odd.pyisession"
    frame = "slow\\ud800er\\u0000/home/user/app/demo.py\\u000010"
    damaged.write_bytes(simple_document(("frame_records", 0, 0, 2), raw(f'"{frame}"')))
    text = pyinstrument("--load", str(damaged), "--show-all", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "slow\\ud800er" in text.stdout
    html = pyinstrument("--load", str(damaged), "-o", "odd.html", cwd=tmp_path)
    assert html.returncode == 0, html.stderr
    assert "slow\\ud800er" in (tmp_path / "odd.html").read_text("utf-8")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        outcomes, failures = run_all(fuzz_cases(), Path(directory))
        for failure in failures:
            print(failure)
        print(format_counts(outcomes))
        print(f"({time.perf_counter() - started:.1f} s)")
