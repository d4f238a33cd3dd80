"""What every benchmark shares: running a measurement in a fresh child interpreter,
statistics over repeated runs, and the interpreters to measure (with their virtualenvs).

Each benchmark module (overhead, memory, accuracy, sampler_cost, render_speed) has two
sides. Its child side runs inside the measured interpreter, started as
``python bench/<module>.py --child NAME JSON_ARGS``, and hands back one JSON object
through the file named by $BENCH_RESULT_FILE (stdout belongs to the program under test).
Its parent side runs in `make bench`'s own interpreter and calls ``run_child``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)

# pip picks the newest release supporting each interpreter (e.g. Django 4.2 on 3.9, 6.x on 3.12+)
WORKLOAD_MODULES = {"django": "django", "uvicorn": "uvicorn", "starlette": "starlette"}  # {import name: requirement} the workloads need everywhere
PYSPY_REQUIREMENT = "py-spy"


class ChildFailed(RuntimeError):
    pass


# -- child side ---------------------------------------------------------------------------


def child_main(handlers: Dict[str, Callable[..., Any]]) -> None:
    """Entry point of a benchmark module run as a child: --child NAME JSON_ARGS."""
    name, args = sys.argv[2], json.loads(sys.argv[3])
    result = handlers[name](**args)
    with open(os.environ["BENCH_RESULT_FILE"], "w") as f:
        json.dump(result, f)


def is_child() -> bool:
    return len(sys.argv) > 3 and sys.argv[1] == "--child"


def rss_bytes() -> int:
    """Resident set size of this process now (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- parent side ------------------------------------------------------------------------------


def child_command(python: str, script: str, name: str, **args: Any) -> List[str]:
    # -E -s: no PYTHONPATH or user site-packages, so each venv sees only what it installed
    return [python, "-E", "-s", os.path.join(HERE, script), "--child", name, json.dumps(args)]


def child_env(result_file: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["BENCH_RESULT_FILE"] = result_file
    env["PYINSTRUMENT_IGNORE_OVERHEAD_WARNING"] = "1"  # upstream's warning on a contended timer
    return env


def run_child(python: str, script: str, name: str, timeout: float = 900, prefix: Sequence[str] = (),
              **args: Any) -> Dict[str, Any]:
    """Runs one measurement in a fresh interpreter (under `prefix`, e.g. taskset) and returns its JSON result."""
    with tempfile.TemporaryDirectory(prefix="pyi-bench-") as tmp:
        result_file = os.path.join(tmp, "result.json")
        proc = subprocess.run([*prefix, *child_command(python, script, name, **args)], cwd=tmp,
                              env=child_env(result_file),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout,
                              universal_newlines=True)
        return read_result(proc.returncode, proc.stderr, result_file, f"{script} {name} {args}")


def read_result(returncode: int, stderr: str, result_file: str, what: str) -> Dict[str, Any]:
    if returncode != 0 or not os.path.exists(result_file):
        tail = "\n".join(stderr.strip().splitlines()[-8:])
        raise ChildFailed(f"{what} failed (exit code {returncode}):\n{tail}")
    with open(result_file) as f:
        return json.load(f)


def spread(values: Sequence[float]) -> Tuple[float, float, float]:
    """(median, first quartile, third quartile)"""
    values = list(values)
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return statistics.median(values), q1, q3


def log(message: str) -> None:
    print(message, flush=True)


def pyplot() -> Any:
    """matplotlib's pyplot for files (no display), with SVG ids that do not change between runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "bench"
    return plt


def save_chart(fig: Any, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})  # no date: a rerun changes only the numbers
    pyplot().close(fig)


def module_main(description: str, handlers: Dict[str, Callable[..., Any]], measure: Callable[..., Any],
                report: Callable[..., Any], chart: Callable[[Any, str], None]) -> None:
    """`python bench/<module>.py`: a measurement child (--child), or that benchmark alone."""
    if is_child():
        child_main(handlers)
        return
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--python", help="interpreter to measure (default: this one)")
    parser.add_argument("--chart", help="also write the chart to this SVG file")
    args = parser.parse_args()
    result = measure(prepare(args.python or sys.executable), args.quick)
    lines, verdicts = report(result)
    print("\n".join(lines + [""] + verdicts))
    if args.chart:
        chart(result, args.chart)


# -- the interpreters and their virtualenvs --------------------------------------------------


@dataclass
class PythonEnv:
    """One CPython to measure: a venv with this project, one with upstream, and py-spy."""

    base: str                       # the interpreter itself
    version: str                    # e.g. "3.12.1"
    ours: str = ""                  # python of .venvs/X.Y (this project + workload packages + py-spy)
    upstream: Optional[str] = None  # python of .venvs/upstream-X.Y, or None (see notes)
    upstream_version: str = ""
    pyspy: Optional[str] = None     # the py-spy executable, or None (see notes)
    notes: List[str] = field(default_factory=list)

    @property
    def short(self) -> str:
        return ".".join(self.version.split(".")[:2])


def probe(python: str, code: str) -> Optional[str]:
    """What `code` prints in that interpreter, or None when it fails (or does not run at all)."""
    try:
        proc = subprocess.run([python, "-E", "-s", "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              cwd=tempfile.gettempdir(), universal_newlines=True)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def pip_install(python: str, *requirements: str) -> bool:
    proc = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if proc.returncode != 0:
        log(f"    pip install {' '.join(requirements)} into {python} failed:\n      "
            + "\n      ".join(proc.stdout.strip().splitlines()[-3:]))
    return proc.returncode == 0


def missing_modules(python: str, names: Sequence[str]) -> List[str]:
    code = f"import importlib.util as u; print(' '.join(m for m in {list(names)!r} if not u.find_spec(m)))"
    out = probe(python, code)
    return list(names) if out is None else out.split()


def ensure_modules(python: str, modules: Dict[str, str]) -> List[str]:
    """Installs what is missing ({import name: requirement}); returns the import names still missing."""
    wanted = missing_modules(python, list(modules))
    if wanted:
        log(f"    installing {', '.join(modules[m] for m in wanted)} for {python}")
        pip_install(python, *(modules[m] for m in wanted))
    return missing_modules(python, list(modules))


def ours_python(python: str) -> str:
    """.venvs/X.Y from tools/venv.sh (this project built from this checkout)."""
    proc = subprocess.run([os.path.join(TOP, "tools", "venv.sh"), python], stdout=subprocess.PIPE,
                          universal_newlines=True)
    if proc.returncode != 0:
        raise ChildFailed(f"tools/venv.sh could not build this project for {python} (its output is above)")
    return proc.stdout.strip().splitlines()[-1]


def upstream_python(python: str) -> Tuple[Optional[str], str]:
    """.venvs/upstream-X.Y from tools/upstream-venv.sh (pyinstrument 5.x from PyPI, made
    by the same interpreter) and its version; (None, "") when it will not install."""
    proc = subprocess.run([os.path.join(TOP, "tools", "upstream-venv.sh"), python], stdout=subprocess.PIPE,
                          universal_newlines=True)
    if proc.returncode != 0:
        return None, ""
    py = proc.stdout.strip().splitlines()[-1]
    found = probe(py, "import pyinstrument; print(pyinstrument.__version__)")
    return (py, found) if found else (None, "")


def prepare(python: str) -> PythonEnv:
    """Installs what measuring `python` needs (idempotent, so a fresh machine works too)."""
    version = probe(python, "import sys; print(sys.version.split()[0])")
    if version is None:
        raise ChildFailed(f"{python} does not run: give the path of a CPython 3.9 or newer")
    env = PythonEnv(base=python, version=version)
    log(f"=== preparing Python {version} ({python})")
    env.ours = ours_python(python)
    for name in ensure_modules(env.ours, WORKLOAD_MODULES):
        env.notes.append(f"{name} would not install for Python {env.short}")
    if not os.path.exists(os.path.join(os.path.dirname(env.ours), "py-spy")):
        pip_install(env.ours, PYSPY_REQUIREMENT)
    pyspy = os.path.join(os.path.dirname(env.ours), "py-spy")
    if os.path.exists(pyspy):
        env.pyspy = pyspy
    else:
        env.notes.append(f"py-spy would not install for Python {env.short}")
    env.upstream, env.upstream_version = upstream_python(python)
    if env.upstream is None:
        env.notes.append(f"upstream pyinstrument 5.x would not install on Python {env.short}")
    else:
        for name in ensure_modules(env.upstream, WORKLOAD_MODULES):
            env.notes.append(f"{name} would not install in the upstream venv for Python {env.short}")
    return env


def pythons_present() -> List[str]:
    out = subprocess.run([os.path.join(TOP, "tools", "pythons.sh")], stdout=subprocess.PIPE,
                         universal_newlines=True).stdout
    return out.split()
