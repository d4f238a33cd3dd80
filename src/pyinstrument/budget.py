"""Budgets: a profile checked against rules, for CI (``pyinstrument --budget FILE``).

A budget file (TOML) lists rules. Each names a branch with ``match`` and limits it::

    [[rule]]
    match = "parse_rows"          # a function or qualified name (a glob: "parse_*"),
    max_share = 0.30              #   or a glob over "file:qualname" ("*/app/render.py:*")
    [[rule]]
    match = "*/myapp/render.py:*"
    max_growth = 0.10             # against the --baseline session
    max_seconds = 1.5             # a rule may have several limits
    phase = "render"              # optional: measured in that phase of the run (Profiler.phase)

A branch's time in a run is the time of the nodes it matches in the report's call tree,
a node inside another matched node counted once. On a repeat set a rule is measured on
every run: an absolute limit fails when even the lower quartile is over it, a growth when
it is over the limit and significant (Mann–Whitney U, Holm-corrected over the growth
rules); over the limit but within the runs' noise is the verdict ``noise``, which does not
fail.
"""

from __future__ import annotations

import math
import sys
from fnmatch import fnmatchcase
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

from pyinstrument import stats
from pyinstrument.merge import MergedNode, merge
from pyinstrument.session import Session

LIMITS = {
    "max_share": "share of the run's total, from 0 to 1",
    "max_seconds": "seconds",
    "max_growth": "growth of its time against the baseline, as a fraction (0.10: 10% slower)",
}
#: a verdict fails when its adjusted p-value is under this (repeat sets on both sides)
ALPHA = 0.05


class BudgetError(ValueError):
    """A budget file that cannot be used: the message says where and why."""


class Rule(NamedTuple):
    number: int  # from 1, in the file's order
    match: str
    limit: str  # a key of LIMITS
    value: float
    phase: Optional[str] = None  # measured in this phase of the run only

    @property
    def description(self) -> str:
        where = f" in phase {self.phase}" if self.phase is not None else ""
        return f"{self.match}{where} {self.limit} {self.value:g}"


class Verdict(NamedTuple):
    rule: Rule
    status: str  # "pass", "fail" or "noise" (over the limit, within the runs' noise)
    measured: str  # what was measured, as the table shows it


def load(path: str) -> List[Rule]:
    """The rules of a budget file; BudgetError saying what is wrong with it."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except FileNotFoundError:
        raise BudgetError(f"can't open budget file {path!r}: no such file") from None
    except OSError as exc:
        raise BudgetError(f"can't read budget file {path!r}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BudgetError(f"budget file {path!r} is not valid TOML: {exc}") from None
    return parse(document, path)


def parse(document: Dict[str, Any], path: str = "budget") -> List[Rule]:
    unknown = sorted(set(document) - {"rule"})
    if unknown:
        raise BudgetError(f"{path}: unknown key {unknown[0]!r} (a budget is a list of [[rule]] tables)")
    tables = document.get("rule")
    if not isinstance(tables, list) or not tables:
        raise BudgetError(f"{path}: no rules (add [[rule]] tables with match = ... and a limit)")
    rules = []
    for number, table in enumerate(tables, 1):
        where = f"{path}: rule {number}"
        if not isinstance(table, dict):
            raise BudgetError(f"{where}: not a table")
        unknown = sorted(set(table) - {"match", "phase", *LIMITS})
        if unknown:
            raise BudgetError(f"{where}: unknown key {unknown[0]!r} (known: match, phase, {', '.join(LIMITS)})")
        phase = table.get("phase")
        if phase is not None and (not isinstance(phase, str) or not phase):
            raise BudgetError(f"{where}: phase must be the name of a phase of the run, got {phase!r}")
        match = table.get("match")
        if not isinstance(match, str) or not match:
            raise BudgetError(f'{where}: needs match = "a function, a qualified name or a glob over file:qualname"')
        limits = [key for key in LIMITS if key in table]
        if not limits:
            raise BudgetError(f"{where}: no limit (give one of {', '.join(LIMITS)})")
        for key in limits:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise BudgetError(f"{where}: {key} must be a number ({LIMITS[key]}), got {value!r}")
            low, high = {"max_share": (0, 1), "max_seconds": (0, math.inf), "max_growth": (-1, math.inf)}[key]
            if not low <= value <= high:
                raise BudgetError(f"{where}: {key} = {value!r} is out of range ({LIMITS[key]})")
            rules.append(Rule(number, match, key, float(value), phase))
    return rules


def needs_baseline(rules: Sequence[Rule]) -> bool:
    return any(rule.limit == "max_growth" for rule in rules)


def matches(pattern: str, node: MergedNode) -> bool:
    """A pattern with a colon is a glob over "file:qualname" (full or as the report shortens
    the path); otherwise a glob over the function's name or its qualified name."""
    if node.file is None:
        return ":" not in pattern and fnmatchcase(node.qualname, pattern)
    if ":" in pattern:
        return any(fnmatchcase(f"{file}:{node.qualname}", pattern) for file in (node.file, node.file_short))
    function = node.qualname.rpartition(".")[2]
    return fnmatchcase(function, pattern) or fnmatchcase(node.qualname, pattern)


def branch_times(root: MergedNode, pattern: str) -> Optional[List[float]]:
    """Each run's time in the nodes matching *pattern* (a node inside a matched one counted
    once); None when nothing matches."""
    total = [0.0] * len(root.times)
    found = False
    stack = list(root.children)
    while stack:
        node = stack.pop()
        if matches(pattern, node):
            found = True
            total = [a + b for a, b in zip(total, node.times)]
        else:
            stack.extend(node.children)
    return total if found else None


class _Trees:
    """The merged trees of a session's runs, of the whole run or of one phase, made once."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.made: Dict[Optional[str], MergedNode] = {}

    def of(self, phase: Optional[str]) -> MergedNode:
        """LookupError when the run had no such phase."""
        if phase not in self.made:
            session = self.session.phase(phase) if phase is not None else self.session
            self.made[phase] = merge(session.runs or [session])
        return self.made[phase]


def check(rules: Sequence[Rule], session: Session, baseline: Optional[Session] = None) -> List[Verdict]:
    """Every rule's verdict on *session* (a run or a repeat set)."""
    trees = _Trees(session)
    base_trees = _Trees(baseline) if baseline is not None else None
    verdicts: List[Verdict] = []
    growth_tests = []  # (index in verdicts, p-value) of the growths over their limits
    for rule in rules:
        try:
            root = trees.of(rule.phase)
            base_root = base_trees.of(rule.phase) if base_trees is not None else None
        except LookupError as exc:
            verdicts.append(Verdict(rule, "fail", str(exc.args[0])))
            continue
        times = branch_times(root, rule.match)
        values = times or [0.0] * len(root.times)
        nothing = "" if times is not None else " (matched nothing)"
        if rule.limit == "max_growth":
            if base_root is None:
                raise BudgetError(f"rule {rule.number} (max_growth) compares with a baseline: give --baseline FILE")
            before = branch_times(base_root, rule.match) or [0.0] * len(base_root.times)
            verdict, p_value = _growth(rule, before, values, nothing)
            if p_value is not None:  # decided below, with the other growth rules
                growth_tests.append((len(verdicts), p_value))
            verdicts.append(verdict)
            continue
        if rule.limit == "max_share":
            values = [value / total if total else 0.0 for value, total in zip(values, root.times)]
        verdicts.append(_absolute(rule, values, nothing))
    for (index, _), adjusted in zip(growth_tests, stats.holm([p for _, p in growth_tests])):
        verdict = verdicts[index]
        status = "fail" if adjusted < ALPHA else "noise"
        verdicts[index] = verdict._replace(status=status, measured=f"{verdict.measured}, p={adjusted:.2g}")
    return verdicts


def _format(rule: Rule, value: float) -> str:
    if rule.limit == "max_share":
        return f"{value * 100:.1f}%"
    if rule.limit == "max_growth":
        return f"{value * 100:+.1f}%" if math.isfinite(value) else "new"
    return f"{value:.3f}s"


def _absolute(rule: Rule, values: Sequence[float], nothing: str) -> Verdict:
    q = stats.quartiles(values)
    what = "share" if rule.limit == "max_share" else "time"
    measured = f"{what} {_format(rule, q.median)}"
    if len(values) > 1:
        measured += f" (IQR {_format(rule, q.low)}–{_format(rule, q.high)})"
    limit = f"{measured}{nothing}, max {_format(rule, rule.value)}"
    if q.median <= rule.value:
        return Verdict(rule, "pass", limit)
    if len(values) == 1 or q.low > rule.value:
        return Verdict(rule, "fail", limit)
    return Verdict(rule, "noise", limit)


def _growth(
    rule: Rule, before: Sequence[float], after: Sequence[float], nothing: str
) -> "tuple[Verdict, Optional[float]]":
    """The verdict, and the p-value when it is over the limit and both sides are sets (the
    verdict then waits for the correction over all growth rules)."""
    old, new = stats.quantile(before, 0.5), stats.quantile(after, 0.5)
    growth = new / old - 1 if old else (math.inf if new else 0.0)
    measured = f"growth {_format(rule, growth)} ({old:.3f}s → {new:.3f}s){nothing}, max {_format(rule, rule.value)}"
    if growth <= rule.value:
        return Verdict(rule, "pass", measured), None
    if min(len(before), len(after)) < 2:
        return Verdict(rule, "fail", measured), None
    _, p_value = stats.mann_whitney_u(before, after)
    return Verdict(rule, "fail", measured), p_value


# -- output ---------------------------------------------------------------------------------


def failed(verdicts: Sequence[Verdict]) -> bool:
    return any(verdict.status == "fail" for verdict in verdicts)


def table(verdicts: Sequence[Verdict], path: str) -> str:
    failures = sum(verdict.status == "fail" for verdict in verdicts)
    head = f"budget {path}: " + (f"{failures} of {len(verdicts)} checks failed" if failures else "every check passed")
    width = max(len(verdict.rule.description) for verdict in verdicts)
    lines = [head]
    for verdict in verdicts:
        label = {"fail": "FAIL", "pass": "pass", "noise": "noise"}[verdict.status]
        lines.append(f"  {label:<5}  {verdict.rule.description:<{width}}  {verdict.measured}")
    if any(verdict.status == "noise" for verdict in verdicts):
        lines.append("  noise: over the limit, but within the runs' noise (not a failure)")
    return "\n".join(lines) + "\n"


def junit(verdicts: Sequence[Verdict], path: str) -> str:
    """JUnit XML: one test case per check, for CI systems' test summaries."""
    from xml.etree import ElementTree

    failures = sum(verdict.status == "fail" for verdict in verdicts)
    suite = ElementTree.Element(
        "testsuite", name=f"pyinstrument budget {path}", tests=str(len(verdicts)), failures=str(failures), errors="0"
    )
    for verdict in verdicts:
        case = ElementTree.SubElement(
            suite,
            "testcase",
            classname="pyinstrument.budget",
            name=f"rule {verdict.rule.number}: {verdict.rule.description}",
        )
        if verdict.status == "fail":
            ElementTree.SubElement(case, "failure", message=verdict.measured).text = verdict.measured
        else:
            ElementTree.SubElement(case, "system-out").text = f"{verdict.status}: {verdict.measured}"
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(suite, encoding="unicode") + "\n"


def markdown(verdicts: Sequence[Verdict], path: str) -> str:
    """A Markdown table, for a CI job's summary page."""

    def cell(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")

    failures = sum(verdict.status == "fail" for verdict in verdicts)
    lines = [
        f"### pyinstrument budget `{cell(path)}`: "
        + (f"{failures} of {len(verdicts)} checks failed" if failures else "every check passed"),
        "",
        "| verdict | rule | measured |",
        "|---|---|---|",
    ]
    icons = {"fail": "❌ fail", "pass": "✅ pass", "noise": "〰️ noise"}
    for verdict in verdicts:
        lines.append(f"| {icons[verdict.status]} | `{cell(verdict.rule.description)}` | {cell(verdict.measured)} |")
    return "\n".join(lines) + "\n"
