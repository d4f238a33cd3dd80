"""``pyinstrument --diff BEFORE AFTER``: two real runs of a program, before and after a change."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers import run_pyinstrument, write
from sessions import simple_session

from pyinstrument.diff import DiffReport, compare, metadata_changes

BEFORE = """
import time

def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def parse():
    spin(0.15)

def render():
    spin(0.15)

def legacy():
    spin(0.1)

def main():
    parse()
    render()
    legacy()

main()
"""

# parse() twice as slow, legacy() gone, cache() new, and everything moved down two lines
AFTER = """
import time
# a comment
# and another: the functions' first lines move

def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def parse():
    spin(0.3)

def render():
    spin(0.15)

def cache():
    spin(0.1)

def main():
    parse()
    render()
    cache()

main()
"""


def profile(tmp_path: Path, source: str, name: str) -> Path:
    (tmp_path / "app.py").write_text(source)
    run_pyinstrument("-r", "session", "-o", name, "app.py", cwd=tmp_path)
    return tmp_path / name


def test_a_diff_finds_the_slower_function_the_gone_one_and_the_new_one(tmp_path: Path):
    before = profile(tmp_path, BEFORE, "before.pyisession")
    after = profile(tmp_path, AFTER, "after.pyisession")
    result = run_pyinstrument("--diff", str(before), str(after), cwd=tmp_path)
    lines = result.stdout.splitlines()
    rows = {name: line for line in lines for name in ("parse", "render", "legacy", "cache") if f" {name}" in line
            and "app.py" in line}
    assert set(rows) == {"parse", "render", "legacy", "cache"}, result.stdout
    assert "[gone]" in rows["legacy"] and "[new]" in rows["cache"]
    delta = {name: float(re.search(r"([+-]\d+\.\d+)s", row).group(1)) for name, row in rows.items()}
    assert delta["parse"] >= 0.1  # 0.15 s more, less what a busy machine takes off
    assert delta["legacy"] < -0.05 and delta["cache"] > 0.05
    assert abs(delta["render"]) < delta["parse"]
    # biggest change first, under main()
    under_main = [name for line in lines for name in ("parse", "render", "legacy", "cache") if f" {name} " in line
                  or line.rstrip().endswith(f" {name}") or f" {name}  " in line]
    assert under_main[0] == "parse", result.stdout
    assert "\033[" not in result.stdout  # not a terminal: no colour


def test_the_json_diff_has_every_node_with_both_sides(tmp_path: Path):
    before = profile(tmp_path, BEFORE, "before.pyisession")
    after = profile(tmp_path, AFTER, "after.pyisession")
    run_pyinstrument("--diff", str(before), str(after), "-o", "diff.json", cwd=tmp_path)
    document = json.loads((tmp_path / "diff.json").read_text())
    assert document["before"]["run_metadata"]["python"] == document["after"]["run_metadata"]["python"]
    assert document["metadata_changes"] == []  # the same interpreter and packages
    nodes = {}
    stack = [document["root"]]
    while stack:
        node = stack.pop()
        nodes[node["function"]] = node
        stack.extend(node["children"])
    assert nodes["parse"]["after"] > nodes["parse"]["before"] > 0
    assert nodes["legacy"]["status"] == "gone" and nodes["legacy"]["after"] == 0
    assert nodes["cache"]["status"] == "new" and nodes["cache"]["before"] == 0
    root = document["root"]
    assert root["before_share"] == root["after_share"] == 1.0


def test_what_the_runs_were_made_with_is_compared():
    before = {"python": "3.11.4", "cpu_count": 2, "git": {"commit": "a" * 40},
              "distributions": {"Django": "4.2.7", "six": "1.16.0"}}
    after = {"python": "3.12.1", "cpu_count": 2, "git": {"commit": "b" * 40},
             "distributions": {"Django": "5.0.1", "requests": "2.31.0"}}
    assert metadata_changes(before, after) == [
        "Python 3.11.4 → 3.12.1",
        f"git {'a' * 8} → {'b' * 8}",
        "Django 4.2.7 → 5.0.1",
        "+requests 2.31.0",
        "-six 1.16.0",
    ]
    first, second = simple_session(), simple_session()
    first.run_metadata, second.run_metadata = before, after
    text = DiffReport(first, second).render()
    assert "changed: Python 3.11.4 → 3.12.1; git aaaaaaaa → bbbbbbbb; Django 4.2.7 → 5.0.1" in text


def test_a_session_compared_with_itself_has_no_change():
    session = simple_session()
    root = compare(session, session)
    stack = list(root.children)
    while stack:
        node = stack.pop()
        assert node.delta == 0 and node.status == "", node.name
        stack.extend(node.children)


def test_bad_input_gets_one_line_and_a_nonzero_status(tmp_path: Path):
    saved = tmp_path / "one.pyisession"
    simple_session().save(saved)
    missing = run_pyinstrument("--diff", str(saved), "nope.pyisession", cwd=tmp_path, check=False)
    assert missing.returncode != 0 and "nope.pyisession" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and "Traceback" not in missing.stderr
    flame = run_pyinstrument("--diff", str(saved), str(saved), "-r", "speedscope", cwd=tmp_path, check=False)
    assert flame.returncode == 2 and "--diff writes text, json or html, not speedscope" in flame.stderr
    over = run_pyinstrument("--diff", str(saved), str(saved), "-o", str(saved), cwd=tmp_path, check=False)
    assert over.returncode == 2 and "will not write the report over" in over.stderr
    three = run_pyinstrument("--diff", str(saved), str(saved), "app.py", cwd=tmp_path, check=False)
    assert three.returncode == 2 and "a script and --diff cannot be used together" in three.stderr
    one = run_pyinstrument("--diff", str(saved), cwd=tmp_path, check=False)
    assert one.returncode == 2 and "--diff compares two sessions" in one.stderr


def parse_set(parse_seconds, render_seconds=0.1):
    """A repeat set whose runs spent these seconds in parse() and render()."""
    from sessions import APP, frame_string, make_session

    from pyinstrument.repeat import repeat_set

    main = frame_string("main", f"{APP}/demo.py", 30)
    parse = frame_string("parse", f"{APP}/demo.py", 10)
    render = frame_string("render", f"{APP}/demo.py", 20)
    return repeat_set(
        [make_session([([main, parse], t), ([main, render], render_seconds)]) for t in parse_seconds]
    )


def verdicts(root):
    out = {}
    stack = list(root.children)
    while stack:
        node = stack.pop()
        out[node.name] = node.verdict
        stack.extend(node.children)
    return out


def test_repeat_sets_call_a_change_only_beyond_their_noise():
    before = parse_set([0.10, 0.09, 0.11, 0.10, 0.12, 0.08, 0.10, 0.11, 0.09, 0.10])
    noise = parse_set([0.11, 0.09, 0.10, 0.10, 0.11, 0.09, 0.12, 0.10, 0.08, 0.10])
    slower = parse_set([0.20, 0.19, 0.21, 0.20, 0.22, 0.18, 0.20, 0.21, 0.19, 0.20])
    assert verdicts(compare(before, noise)) == {"main": "", "parse": "", "render": ""}
    # parse() slower; main() with it (it is the whole run); render()'s share fell, its time did not
    assert verdicts(compare(before, slower)) == {"main": "slower", "parse": "slower", "render": ""}
    assert verdicts(compare(slower, before))["parse"] == "faster"
    # the whole machine 30% slower: every time up, no share moved: only the whole run is slower
    loaded = parse_set([t * 1.3 for t in [0.10, 0.09, 0.11, 0.10, 0.12, 0.08, 0.10, 0.11, 0.09, 0.10]], 0.13)
    assert verdicts(compare(before, loaded)) == {"main": "slower", "parse": "", "render": ""}
    # single runs: no verdict at all
    assert set(verdicts(compare(before.runs[0], slower.runs[0])).values()) == {None}


def test_a_diff_of_repeat_runs_finds_a_function_made_twice_as_slow(tmp_path: Path):
    write(tmp_path / "app.py", AFTER.replace("spin(0.3)", "spin(0.03 * SCALE)").replace("0.15", "0.015").replace(
        "spin(0.1)", "spin(0.01)").replace("import time", "import sys, time\nSCALE = float(sys.argv[1])"))
    for name, scale in (("before", "1"), ("after", "2")):
        run_pyinstrument("--repeat", "8", "-o", f"{name}.pyisession", "app.py", scale, cwd=tmp_path)
    result = run_pyinstrument("--diff", "before.pyisession", "after.pyisession", "-r", "json", cwd=tmp_path)
    document = json.loads(result.stdout)
    assert document["before"]["runs"] == document["after"]["runs"] == 8
    assert "Mann-Whitney" in document["verdict_test"]
    found = {}  # each function's largest node (a sample read mid-call can put a sliver elsewhere)
    stack = [document["root"]]
    while stack:
        node = stack.pop()
        if node["after"] > found.get(node["function"], {"after": -1.0})["after"]:
            found[node["function"]] = node
        stack.extend(node["children"])
    parse = {key: value for key, value in found["parse"].items() if key != "children"}
    assert parse["verdict"] == "slower" and parse["p_value"] < 0.05, json.dumps(parse)
    assert found["render"]["verdict"] != "slower" and found["cache"]["verdict"] != "slower"


def test_a_run_whose_stacks_start_in_two_places_still_lines_up():
    # one run with a stray second root (its tree a [root] over both) must not move the
    # program under another node than in the other runs
    from sessions import APP, frame_string, make_session

    from pyinstrument.merge import merge

    module = frame_string("<module>", f"{APP}/demo.py", 1)
    work = frame_string("work", f"{APP}/demo.py", 5)
    stray = frame_string("_run_code", "/usr/lib/python3.9/runpy.py", 64)
    plain = make_session([([module, work], 0.1)])
    split = make_session([([module, work], 0.1), ([stray], 0.001)])
    root = merge([plain, split])
    names = {child.name: child.times for child in root.children}
    assert names["<module>"] == [pytest.approx(0.1), pytest.approx(0.1)]
    assert names["_run_code"] == [0.0, pytest.approx(0.001)]
