"""Collapsed stacks and the SVG flame graph, checked the way their readers see them:
collapsed lines parsed back (and fed to inferno or flamegraph.pl when installed), the
SVG parsed as XML."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.parse
import xml.etree.ElementTree as ET
from typing import Dict, List, Tuple

import pytest

from sessions import (
    HOSTILE_FUNCTION,
    HOSTILE_NAMES,
    HOSTILE_PATHS,
    hostile_session,
    make_session,
    simple_session,
    threaded_session,
)

from pyinstrument.renderers import CollapsedRenderer, FlamegraphRenderer
from pyinstrument.renderers.collapsed import escape_frame_text

SVG = "{http://www.w3.org/2000/svg}"


def function_names(stack: List[str]) -> List[str]:
    """The function names of a session's frame strings (thread roots left out)."""
    names = []
    for frame in stack:
        identifier = frame.split("\x01")[0]
        rest, _, _ = identifier.rpartition("\x00")
        function, _, path = rest.rpartition("\x00")
        if path != "<thread>":
            names.append(function)
    return names


# -- collapsed stacks ------------------------------------------------------------------


def parse_collapsed(text: str) -> List[Tuple[List[str], int]]:
    """Lines as a flame graph tool reads them: the count after the last space."""
    assert text == "" or text.endswith("\n")
    parsed = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        assert stack and count.isdigit(), line
        parsed.append((stack.split(";"), int(count)))
    return parsed


def unescape(frame: str) -> str:
    return urllib.parse.unquote(frame, errors="surrogateescape")


def frame_name(frame: str) -> str:
    """``name`` of a ``name (file:line)`` frame."""
    return unescape(frame).rsplit(" (", 1)[0]


def test_collapsed_lines_match_the_session():
    session = simple_session()
    parsed = parse_collapsed(CollapsedRenderer().render(session))

    assert [stack for stack, _ in parsed] == sorted(stack for stack, _ in parsed)
    got = {tuple(frame_name(f) for f in stack): count for stack, count in parsed}
    expected = {tuple(function_names(stack)): round(t * 1e6) for stack, t in session.frame_records}
    assert got == expected
    assert sum(got.values()) == round(session.duration * 1e6)
    first = parsed[0][0][0]
    assert first == "<module> (demo.py:1)"  # short path, first line of the function


def test_collapsed_units_time_and_paths():
    session = threaded_session()
    micro = parse_collapsed(CollapsedRenderer().render(session))
    samples = parse_collapsed(CollapsedRenderer(unit="samples").render(session))
    millis = parse_collapsed(CollapsedRenderer(unit="ms").render(session))
    assert [c for _, c in samples] == [c // 1000 for _, c in micro]  # 1 ms interval
    assert [c for _, c in millis] == [c // 1000 for _, c in micro]

    cpu = parse_collapsed(CollapsedRenderer(time="cpu").render(session))
    assert sum(c for _, c in cpu) == round(sum(session.frame_records_cpu) * 1e6)
    assert not any("Thread.join" in frame_name(f) for stack, _ in cpu for f in stack)  # no CPU

    full = parse_collapsed(CollapsedRenderer(full_paths=True).render(session))
    assert any(f == "work (/home/user/app/threads.py:5)" for stack, _ in full for f in stack)


def test_collapsed_threads_are_first_frames():
    session = threaded_session()
    parsed = parse_collapsed(CollapsedRenderer().render(session))
    by_thread: Dict[str, int] = {}
    for stack, count in parsed:
        assert stack[0].startswith("[thread ")
        by_thread[stack[0]] = by_thread.get(stack[0], 0) + count
    assert by_thread == {"[thread MainThread]": 700000, "[thread worker]": 600000}

    merged = parse_collapsed(CollapsedRenderer(threads=False).render(session))
    assert not any(f.startswith("[thread") for stack, _ in merged for f in stack)
    assert sum(c for _, c in merged) == 1300000
    # one thread: no thread frame
    assert not CollapsedRenderer().render(simple_session()).startswith("[thread")


def test_collapsed_hostile_names_stay_on_their_line_and_round_trip():
    session = hostile_session()
    text = CollapsedRenderer().render(session)
    text.encode("utf-8")  # no lone surrogates: valid UTF-8 for any tool
    parsed = parse_collapsed(text)
    assert len(parsed) == len(session.frame_records)
    records = sorted(session.frame_records, key=lambda r: len(r[0]))
    for (stack, count), (frames, seconds) in zip(sorted(parsed, key=lambda p: len(p[0])), records):
        assert len(stack) == len(frames)  # no name split a frame or a line
        assert count == round(seconds * 1e6)
        for frame, frame_string in zip(stack, frames):
            function, path, line = frame_string.split("\x01")[0].rsplit("\x00", 2)
            assert unescape(frame) == f"{function} ({path}:{line})"  # exact, reversible
    names = {frame_name(f) for stack, _ in parsed for f in stack}
    assert set(HOSTILE_NAMES) <= names
    assert "/tmp/caf%E9/bytes.py" in text  # the undecodable byte, as bytes


def test_collapsed_empty_session_and_bad_options():
    assert CollapsedRenderer().render(make_session([])) == ""
    with pytest.raises(ValueError):
        CollapsedRenderer(time="user")
    with pytest.raises(ValueError):
        CollapsedRenderer(unit="ns")
    session = make_session([(simple_session().frame_records[0][0], 0.1)])
    with pytest.raises(ValueError, match="CPU"):
        CollapsedRenderer(time="cpu").render(session)


def flame_graph_tools() -> List[List[str]]:
    tools = []
    if shutil.which("inferno-flamegraph"):
        tools.append(["inferno-flamegraph", "--countname", "us"])
    if shutil.which("flamegraph.pl"):
        tools.append(["flamegraph.pl", "--countname", "us"])
    return tools


@pytest.mark.skipif(
    not flame_graph_tools(),
    reason="neither inferno-flamegraph nor flamegraph.pl is installed (tools/test-tools.sh installs inferno where cargo is)",
)
@pytest.mark.parametrize("make", [threaded_session, hostile_session])
def test_collapsed_is_read_by_flame_graph_tools(tmp_path, make):
    session = make()
    collapsed = tmp_path / "profile.collapsed"
    collapsed.write_text(CollapsedRenderer().render(session), encoding="utf-8")
    for command in flame_graph_tools():
        result = subprocess.run(command + [str(collapsed)], capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr
        svg = ET.fromstring(result.stdout)
        titles = [t.text or "" for t in svg.iter(SVG + "title")]
        for name in {n for stack, _ in session.frame_records for n in function_names(stack)}:
            escaped = escape_frame_text(name)
            assert any(t.startswith(escaped + " (") for t in titles), (command[0], name)
        if make is threaded_session:
            assert any(t.startswith("[thread worker]") for t in titles)


# -- SVG flame graph -------------------------------------------------------------------


def render_svg(session, **options) -> ET.Element:
    text = FlamegraphRenderer(**options).render(session)
    return ET.fromstring(text.encode("utf-8"))  # strict UTF-8: no lone surrogates


def svg_frames(svg: ET.Element) -> List[Dict]:
    frames = []
    for g in svg.iter(SVG + "g"):
        if "f" not in (g.get("class") or "").split():
            continue
        rect = g.find(SVG + "rect")
        assert rect is not None
        label = g.find(SVG + "text")
        title = g.find(SVG + "title")
        assert label is not None and title is not None
        frames.append(
            {
                "name": g.get("data-name"),
                "kind": g.get("class").split()[1],
                "title": title.text or "",
                "label": label.text or "",
                "x": float(rect.get("x")),
                "y": float(rect.get("y")),
                "width": float(rect.get("width")),
            }
        )
    return frames


def by_name(frames: List[Dict]) -> Dict[str, Dict]:
    result = {}
    for frame in frames:
        assert frame["name"] not in result, frame["name"]
        result[frame["name"]] = frame
    return result


def test_svg_widths_follow_time_and_titles_name_frames():
    svg = render_svg(simple_session(), width=1000)
    frames = by_name(svg_frames(svg))
    full = frames["all"]["width"]
    assert full == pytest.approx(980)
    seconds = {
        "all": 1.0, "<module>": 1.0, "main": 1.0, "slow": 0.7, "sleep": 0.4,
        "Worker.fast": 0.1, "compile": 0.15,
    }
    assert set(frames) == set(seconds)
    for name, frame in frames.items():
        assert frame["width"] == pytest.approx(seconds[name] * full, abs=0.01), name
        assert frame["title"].split("\n")[0] == name
    # callees sit inside their caller, one row lower
    assert frames["sleep"]["y"] == frames["slow"]["y"] + (frames["slow"]["y"] - frames["main"]["y"])
    assert frames["slow"]["x"] <= frames["sleep"]["x"] <= frames["slow"]["x"] + frames["slow"]["width"]
    slow_title = frames["slow"]["title"]
    assert "/home/user/app/demo.py:10" in slow_title
    assert "wall 700.000 ms (70.00%)" in slow_title and "CPU 300.000 ms (50.00%)" in slow_title
    # kinds of code have their own class (and colour)
    assert frames["slow"]["kind"] == "app"
    assert frames["compile"]["kind"] == "lib"
    assert frames["sleep"]["kind"] == "builtin"
    assert frames["slow"]["label"] == "slow"


def test_svg_cpu_time_widths():
    frames = by_name(svg_frames(render_svg(simple_session(), time="cpu")))
    full = frames["all"]["width"]
    assert "sleep" not in frames  # no CPU time
    assert frames["slow"]["width"] == pytest.approx(0.3 / 0.6 * full, abs=0.01)
    with pytest.raises(ValueError, match="CPU"):
        FlamegraphRenderer(time="cpu").render(make_session([(simple_session().frame_records[0][0], 0.1)]))


def test_svg_shows_every_thread():
    svg = render_svg(threaded_session())
    frames = svg_frames(svg)
    threads = {f["name"]: f for f in frames if f["kind"] == "thread"}
    assert set(threads) == {"MainThread", "worker"}
    full = by_name([f for f in frames if f["name"] == "all"])["all"]["width"]
    assert threads["MainThread"]["width"] == pytest.approx(0.7 / 1.3 * full, abs=0.01)
    assert threads["worker"]["width"] == pytest.approx(0.6 / 1.3 * full, abs=0.01)
    works = [f for f in frames if f["name"] == "work"]
    assert len(works) == 2  # one per thread
    links = [t.text for t in svg.iter(SVG + "tspan") if "thread-link" in (t.get("class") or "")]
    assert links == ["MainThread", "worker"]


def test_svg_hostile_names_are_text():
    svg_text = FlamegraphRenderer(title=HOSTILE_FUNCTION).render(hostile_session())
    svg = ET.fromstring(svg_text.encode("utf-8"))
    assert [s.tag for s in svg.iter() if s.tag.endswith("script")] == [SVG + "script"]
    allowed = {SVG + t for t in ("svg", "style", "rect", "text", "tspan", "g", "title", "script")}
    assert {e.tag for e in svg.iter()} <= allowed
    assert not [a for e in svg.iter() for a in e.attrib if a.lower().startswith("on")]
    assert svg.find(SVG + "text").text == HOSTILE_FUNCTION  # the heading

    frames = svg_frames(svg)
    names = {f["name"] for f in frames}
    visible = {n.replace("\x00", "\u2400") for n in HOSTILE_NAMES}  # NUL shown as ␀
    assert visible <= names
    for frame in frames:
        if frame["name"] in visible:
            assert frame["title"].startswith(frame["name"] + "\n")
            label = frame["label"]
            assert frame["name"].startswith(label[:-2] if label.endswith("..") else label)
    titles = "\n".join(f["title"] for f in frames)
    assert "/tmp/caf\ufffd/bytes.py" in titles  # the undecodable byte, shown as U+FFFD
    assert '/tmp/we ird/"quoted" <dir>/mod.py' in titles
    assert HOSTILE_PATHS[2] in titles


def test_svg_script_and_style_are_safe():
    svg_text = FlamegraphRenderer().render(hostile_session())
    assert svg_text.count("<![CDATA[") == 2  # style and script
    assert svg_text.count("]]>") == 2
    svg = ET.fromstring(svg_text.encode("utf-8"))
    script = svg.find(SVG + "script").text
    # names reach the page only through getAttribute/textContent, never as markup
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script
    assert "textContent" in script and 'getAttribute("data-name")' in script


def test_svg_min_width_omits_narrow_frames_and_says_so():
    session = simple_session()
    narrow = svg_frames(render_svg(session, width=220, min_width=25))  # 200 px for 1 s
    assert "Worker.fast" not in {f["name"] for f in narrow}  # 20 px
    assert "compile" in {f["name"] for f in narrow}  # 30 px
    texts = render_svg(session, width=220, min_width=25).iter(SVG + "text")
    # the note is wrapped into lines (tspans) that fit the image
    note = [" ".join(line.text for line in t) for t in texts if t.get("id") == "note"]
    assert note and note[0].startswith("Note: 1 frame narrower than 25 px is not drawn (10% of the time)")
    every = {f["name"] for f in svg_frames(render_svg(session, width=220, min_width=0))}
    assert {"Worker.fast", "compile", "sleep"} <= every


def test_svg_empty_session():
    svg = render_svg(make_session([]))
    assert svg_frames(svg) == []
    assert any(t.text == "No samples were recorded." for t in svg.iter(SVG + "text"))


def test_svg_bad_options():
    with pytest.raises(ValueError):
        FlamegraphRenderer(time="user")
    with pytest.raises(ValueError):
        FlamegraphRenderer(width=10)
    with pytest.raises(ValueError):
        FlamegraphRenderer(min_width=-1)


def test_file_extensions():
    assert CollapsedRenderer.output_file_extension == "collapsed"
    assert FlamegraphRenderer.output_file_extension == "svg"
    assert not CollapsedRenderer.output_is_binary and not FlamegraphRenderer.output_is_binary


def test_collapsed_escaping_is_reversible():
    for text in ["100% done;\r\n\x00\x7f", "caf\udce9", "tab\there", "plain (a b) <c> \"d\" \U0001f525"]:
        escaped = escape_frame_text(text)
        assert not re.search(r"[;\x00-\x1f\x7f\ud800-\udfff]", escaped)
        assert unescape(escaped) == text
    assert escape_frame_text("a;b") == "a%3Bb"
