"""The %pyinstrument / %%pyinstrument magic, run through a real IPython shell.

What the magic displays is captured at the shell's display publisher, where a
notebook frontend would receive it: a mimebundle with the HTML report in an iframe
and the text report as its plain-text alternative.
"""

from __future__ import annotations

import asyncio
import html
import re
import signal
import subprocess
import sys
from typing import Any, Dict, Iterator, List

import pytest

pytest.importorskip("IPython")

from IPython.core.error import UsageError  # noqa: E402
from IPython.testing.globalipapp import start_ipython  # noqa: E402

CELL_HELPERS = '''
import json, signal, threading, time

def send_ctrl_c_to_the_main_thread():
    # what Ctrl-C does: SIGINT, handled in the main thread (interrupting a blocking wait)
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

def distinctive_cell_busy_function(seconds=0.1):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return 42

def encode_a_lot():
    # about 0.2 s: enough ticks to see it even when the machine is busy
    data = [{"k": i, "v": [str(i)] * 5} for i in range(3000)]
    end = time.perf_counter() + 0.2
    while time.perf_counter() < end:
        json.dumps(data)
'''


@pytest.fixture(scope="module")
def shell() -> Any:
    ip = start_ipython()
    ip.run_line_magic("load_ext", "pyinstrument")
    result = ip.run_cell(CELL_HELPERS)
    assert result.success
    return ip


@pytest.fixture
def shown(shell: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[List[Dict[str, str]]]:
    """The mimebundles the magic displays."""
    bundles: List[Dict[str, str]] = []
    monkeypatch.setattr(shell.display_pub, "publish", lambda data, metadata=None, **kw: bundles.append(data))
    yield bundles


def run(shell: Any, source: str) -> Any:
    return shell.run_cell(source, store_history=False)


def the_report(shown: List[Dict[str, str]]) -> Dict[str, str]:
    bundles = [b for b in shown if "text/html" in b and "<iframe" in b["text/html"]]
    assert len(bundles) == 1, shown
    return bundles[0]


def text_of(bundle: Dict[str, str]) -> str:
    """The text report as a terminal shows it: without its colour codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", bundle["text/plain"])


def iframe_document(bundle: Dict[str, str]) -> str:
    match = re.search(r'<iframe srcdoc="([^"]*)"', bundle["text/html"])
    assert match, bundle["text/html"][:200]
    return html.unescape(match.group(1))


def _run_in_new_loop(coroutine: Any) -> Any:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def samples_in(text: str) -> int:
    return int(re.search(r"Samples:\s+(\d+)", text).group(1))  # type: ignore[union-attr]


def test_cell_magic_shows_html_and_text_reports(shell: Any, shown: List[Dict[str, str]]) -> None:
    result = run(shell, "%%pyinstrument\nvalue = distinctive_cell_busy_function()\n")
    assert result.success
    assert shell.user_ns["value"] == 42
    report = the_report(shown)
    assert "distinctive_cell_busy_function" in text_of(report)
    # as upstream's: the cell by its In [N], a tree in Unicode and colour for terminals
    assert f"Cell [{shell.execution_count}]: value = distinctive_cell_busy_function()" in text_of(report)
    assert "└─" in report["text/plain"] and "\x1b[" in report["text/plain"]
    document = iframe_document(report)
    assert document.lstrip().lower().startswith("<!doctype html")
    assert "distinctive_cell_busy_function" in document
    assert 'height="400"' in report["text/html"]


def test_line_magic_returns_the_value(shell: Any, shown: List[Dict[str, str]]) -> None:
    result = run(shell, "%pyinstrument distinctive_cell_busy_function(0.05)")
    assert f"Line in cell [{shell.execution_count}]: distinctive" in text_of(the_report(shown))
    assert result.success and result.result == 42
    assert "distinctive_cell_busy_function" in text_of(the_report(shown))


def test_ipython_frames_are_cut_from_the_report(shell: Any, shown: List[Dict[str, str]]) -> None:
    run(shell, "%%pyinstrument --show-all\ndistinctive_cell_busy_function(0.05)\n")
    text = text_of(the_report(shown))
    assert "distinctive_cell_busy_function" in text
    assert "interactiveshell" not in text and "run_cell" not in text and "magic.py" not in text
    first_tree_line = next(line for line in text.splitlines() if re.match(r"\s*[0-9.]+ ", line))
    assert "<module>" in first_tree_line


def test_show_all_shows_library_frames(shell: Any, shown: List[Dict[str, str]]) -> None:
    run(shell, "%pyinstrument encode_a_lot()")
    run(shell, "%pyinstrument --show-all encode_a_lot()")
    folded, everything = (text_of(bundle) for bundle in shown)
    assert "JSONEncoder.encode " not in folded
    assert "JSONEncoder.encode " in everything


def test_render_option_reaches_the_text_report(shell: Any, shown: List[Dict[str, str]]) -> None:
    run(shell, "%pyinstrument -p time=percent_of_total distinctive_cell_busy_function(0.05)")
    text = text_of(the_report(shown))
    assert re.search(r"\d+\.\d% distinctive_cell_busy_function", text)


def test_colour_can_be_left_out_of_the_text_report(shell: Any, shown: List[Dict[str, str]]) -> None:
    run(shell, "%pyinstrument -p color=false distinctive_cell_busy_function(0.05)")
    text = the_report(shown)["text/plain"]
    assert "distinctive_cell_busy_function" in text and "\x1b[" not in text


def test_interval_option(shell: Any, shown: List[Dict[str, str]]) -> None:
    run(shell, "%pyinstrument distinctive_cell_busy_function(0.2)")
    run(shell, "%pyinstrument --interval 0.02 distinctive_cell_busy_function(0.2)")
    fine, coarse = (samples_in(bundle["text/plain"]) for bundle in shown)
    assert coarse <= 15 < fine


def test_height_and_timeline_options(shell: Any, shown: List[Dict[str, str]]) -> None:
    result = run(shell, "%%pyinstrument --height 250 --timeline true\ndistinctive_cell_busy_function(0.02)\n")
    assert result.success
    assert 'height="250"' in the_report(shown)["text/html"]


def test_show_and_hide_options_are_accepted(shell: Any, shown: List[Dict[str, str]]) -> None:
    result = run(shell, "%pyinstrument --show '*/json/*' --hide-regex 'nothing here' encode_a_lot()")
    assert result.success
    assert "JSONEncoder.iterencode" in text_of(the_report(shown))


@pytest.mark.parametrize(
    "line",
    [
        "--bogus distinctive_cell_busy_function()",
        "--interval -1 distinctive_cell_busy_function()",
        "--async_mode sometimes distinctive_cell_busy_function()",
        "-p no_such_option=1 distinctive_cell_busy_function()",
        "-p time=bogus distinctive_cell_busy_function()",
        "--show-all --show x distinctive_cell_busy_function()",
    ],
)
def test_bad_options_are_a_usage_error(shell: Any, shown: List[Dict[str, str]], line: str) -> None:
    shell.user_ns.pop("ran", None)
    with pytest.raises(UsageError) as caught:
        shell.run_line_magic("pyinstrument", line)
    message = str(caught.value)
    assert message.startswith("%pyinstrument") and "\n" not in message
    assert shown == []


def test_an_empty_line_does_nothing_as_upstream(
    shell: Any, shown: List[Dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert shell.run_line_magic("pyinstrument", "") is None
    assert shown == []
    assert "nothing to profile" in capsys.readouterr().err


# Ctrl-C is SIGINT: where it is ignored (a background job), the cells below run to the end
needs_sigint = pytest.mark.skipif(
    signal.getsignal(signal.SIGINT) is signal.SIG_IGN,
    reason="SIGINT is ignored here (a background job), so Ctrl-C cannot be simulated",
)


@needs_sigint
def test_ctrl_c_stops_quietly_with_the_report(
    shell: Any, shown: List[Dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    cell = (
        "%%pyinstrument\n"
        "distinctive_cell_busy_function(0.05)\n"
        "send_ctrl_c_to_the_main_thread()\n"
        "distinctive_cell_busy_function(30)\n"
    )
    result = run(shell, cell)
    text = text_of(the_report(shown))
    assert "distinctive_cell_busy_function" in text
    assert float(re.search(r"Duration:\s+([0-9.]+)", text).group(1)) < 30  # type: ignore[union-attr]
    # as upstream: the run stops (a notebook's "Run All" does not go on), with no traceback
    from pyinstrument.magic.magic import InterruptSilently

    assert isinstance(result.error_in_exec, InterruptSilently)
    out, err = capsys.readouterr()
    assert "interrupted" in out and "Traceback" not in out + err and "InterruptSilently" not in out + err
    # and only once: the next cell's errors are shown as usual
    assert isinstance(run(shell, "1 / 0").error_in_exec, ZeroDivisionError)
    assert "ZeroDivisionError" in "".join(capsys.readouterr())


@needs_sigint
def test_ctrl_c_stops_an_async_cell_in_a_running_loop(shell: Any, shown: List[Dict[str, str]]) -> None:
    cell = (
        "%%pyinstrument\n"
        "import asyncio\n"
        "distinctive_cell_busy_function(0.02)\n"
        "send_ctrl_c_to_the_main_thread()\n"
        "for _ in range(10000):\n"
        "    await asyncio.sleep(0.001)\n"
        "finished_waiting = True\n"
    )

    async def kernel_like() -> Any:
        return run(shell, cell)

    # not asyncio.run(): its own Ctrl-C handling would take the signal, as Jupyter's does not
    result = _run_in_new_loop(kernel_like())
    from pyinstrument.magic.magic import InterruptSilently

    assert isinstance(result.error_in_exec, InterruptSilently)  # the run stops, silently
    assert "finished_waiting" not in shell.user_ns
    assert "distinctive_cell_busy_function" in text_of(the_report(shown))


def test_an_error_shows_the_report_and_then_the_error(shell: Any, shown: List[Dict[str, str]]) -> None:
    result = run(shell, "%%pyinstrument\ndistinctive_cell_busy_function(0.05)\n1 / 0\n")
    assert isinstance(result.error_in_exec, ZeroDivisionError)
    assert "distinctive_cell_busy_function" in text_of(the_report(shown))


FAILING_BODY = "def failing_helper():\n    raise ValueError('from the cell')\n\nvalue = 1\nfailing_helper()\n"
AWAITING_FAILING_BODY = "import asyncio\nawait asyncio.sleep(0.01)\n" + FAILING_BODY


def traceback_shown(shell: Any, capsys: pytest.CaptureFixture, source: str) -> str:
    """What IPython prints for the error of a cell (cell numbers left out)."""
    capsys.readouterr()
    result = run(shell, source)
    assert isinstance(result.error_in_exec, ValueError)
    out = capsys.readouterr()
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.out + out.err)
    return re.sub(r"Cell In\[\d+\]", "Cell In[N]", text)


@pytest.mark.parametrize(
    "magic, body",
    [
        ("%%pyinstrument\n", FAILING_BODY),
        ("%%pyinstrument --async_mode enabled\n", AWAITING_FAILING_BODY),
        ("%%pyinstrument --async_mode disabled\n", AWAITING_FAILING_BODY),
    ],
    ids=["cell", "async cell", "async cell, disabled"],
)
def test_an_error_shows_the_users_traceback_only(
    shell: Any, shown: List[Dict[str, str]], capsys: pytest.CaptureFixture, magic: str, body: str
) -> None:
    plain = traceback_shown(shell, capsys, body)
    profiled = traceback_shown(shell, capsys, magic + body)
    assert "failing_helper()" in plain and "from the cell" in plain
    assert profiled == plain
    assert "magic.py" not in profiled and "run_cell_magic" not in profiled
    the_report(shown)


def test_an_error_in_a_cell_in_a_running_loop_shows_the_users_traceback_only(
    shell: Any, shown: List[Dict[str, str]], capsys: pytest.CaptureFixture
) -> None:
    async def kernel_like(source: str) -> Any:
        return traceback_shown(shell, capsys, source)

    plain = traceback_shown(shell, capsys, AWAITING_FAILING_BODY)  # IPython's own loop: none runs here
    profiled = _run_in_new_loop(kernel_like("%%pyinstrument\n" + AWAITING_FAILING_BODY))
    assert "failing_helper()" in plain
    assert profiled == plain


def test_async_cell_runs(shell: Any, shown: List[Dict[str, str]]) -> None:
    cell = (
        "%%pyinstrument --async_mode enabled\n"
        "import asyncio\n"
        "await asyncio.sleep(0.2)\n"
        "async_value = distinctive_cell_busy_function(0.05)\n"
        "async_value + 1\n"
    )
    result = run(shell, cell)
    assert result.success and result.result == 43
    assert shell.user_ns["async_value"] == 42
    text = text_of(the_report(shown))
    assert "distinctive_cell_busy_function" in text
    # the profiler follows the cell's task: the 0.2 s asleep is [await] under sleep
    waited = re.search(r"(\d+\.\d+) sleep .*\n.*?(\d+\.\d+) \[await\]", text)
    assert waited and float(waited.group(2)) >= 0.15, text


def test_async_cell_runs_when_an_event_loop_is_running(shell: Any, shown: List[Dict[str, str]]) -> None:
    """As in Jupyter, whose kernel runs cells inside its own event loop."""
    cell = (
        "%%pyinstrument\n"
        "import asyncio\n"
        "await asyncio.sleep(0.01)\n"
        "loop_value = distinctive_cell_busy_function(0.05)\n"
    )

    async def kernel_like() -> Any:
        return run(shell, cell)

    result = _run_in_new_loop(kernel_like())
    assert result.success
    assert shell.user_ns["loop_value"] == 42
    assert "distinctive_cell_busy_function" in text_of(the_report(shown))


def test_importing_pyinstrument_does_not_import_ipython() -> None:
    code = (
        "import sys, pyinstrument; from pyinstrument import load_ipython_extension; "
        "print('IPython' in sys.modules)"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"
