"""README's walk-through runs as written, and prints what README says it prints.

The walk-through's shell block is run by bash against a real `fnstage up`. A comment after a command
documents its output in one of two forms, and the command's output must hold it:

- `# {"message":"Hello, Ada!"}`: the command prints this JSON (compared as JSON);
- `# ... "live on 1/1 runtimes in 6 ms" ...`: each quoted text is (part of) a line the command prints,
  where only what varies from run to run may differ: durations (`6 ms`), hashes (`b92e4f084572`) and
  the runtime's port (8471 in README; a free port here).

Any other comment is prose. So a change to the CLI's output, or to a function's answer, that README
shows fails here until README says the new thing. The one package the walk-through installs from PyPI,
humanize 4.9.0, is a small stand-in wheel built here: no test reaches the internet.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fnstage.testing import UpProcess, write_wheel

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[1] / "README.md"
README_RUNTIME_PORT = "8471"  # `fnstage up`'s default, which README's URLs use

# What may differ between README and a run: a pattern that finds such a value in README's text, and
# the pattern it stands for in the output (built from the value found).
_VARYING: list[tuple[str, Callable[[str], str]]] = [
    (r"\b\d+(?:\.\d+)? ms\b", lambda _v: r"\d+(?:\.\d+)? ms"),  # a duration
    (r"\b[0-9a-f]{12,64}\b", lambda v: rf"[0-9a-f]{{{len(v)}}}"),  # a hash (lock, file, bundle)
]
_VARYING_RE = re.compile("|".join(f"({pattern})" for pattern, _ in _VARYING))

# humanize 4.9.0's naturaltime for the walk-through's whole seconds, minutes and hours (a stand-in)
HUMANIZE = '''"""A stand-in for humanize 4.9.0 (tests/test_readme_walkthrough.py): naturaltime only."""


def naturaltime(delta):
    seconds = int(delta.total_seconds())
    for size, one, many in ((3600, "an hour", "hours"), (60, "a minute", "minutes")):
        if seconds >= size:
            n = seconds // size
            return f"{one} ago" if n == 1 else f"{n} {many} ago"
    return f"{seconds} seconds ago"
'''


@dataclass(frozen=True)
class Documented:
    """A command of the walk-through and the output README documents for it."""

    line: int  # in README.md, 1-based
    command: str
    json: object | None  # the JSON it prints, or None
    texts: tuple[str, ...]  # quoted texts found in lines of its output

    def patterns(self, port: str) -> list[str]:
        return [expected_pattern(text.replace(README_RUNTIME_PORT, port)) for text in self.texts]


def expected_pattern(text: str) -> str:
    """A documented text as a regular expression: literal, but for the values that vary."""
    parts, at = [], 0
    for match in _VARYING_RE.finditer(text):
        parts.append(re.escape(text[at : match.start()]))
        kind = next(i for i, group in enumerate(match.groups()) if group is not None)
        parts.append(_VARYING[kind][1](match.group()))
        at = match.end()
    parts.append(re.escape(text[at:]))
    return "".join(parts)


def walkthrough(readme: str) -> tuple[int, list[str]]:
    """The first `sh` block under "## A walk-through": (the README line it starts after, its lines)."""
    lines = readme.splitlines()
    start = lines.index("## A walk-through")
    opening = next(i for i in range(start, len(lines)) if lines[i] == "```sh")
    closing = next(i for i in range(opening + 1, len(lines)) if lines[i] == "```")
    return opening + 1, lines[opening + 1 : closing]


_COMMENT = re.compile(r"^(?P<command>[^#]*?\S)\s+# (?P<comment>.*)$")
_HEREDOC = re.compile(r"<<'?(\w+)'?")


def documented(first_line: int, lines: list[str]) -> dict[int, Documented]:
    """The block's commands that document their output, by their index in `lines`. Here-documents
    (a function's files) are skipped: their `#` is Python's."""
    found: dict[int, Documented] = {}
    heredoc = None
    for i, line in enumerate(lines):
        if heredoc:
            heredoc = None if line == heredoc else heredoc
            continue
        if opened := _HEREDOC.search(line):
            heredoc = opened.group(1)
        match = _COMMENT.match(line)
        if not match:
            continue
        comment = match.group("comment")
        value = None
        if comment.startswith("{"):
            value, _end = json.JSONDecoder().raw_decode(comment)
        texts = tuple(re.findall(r'"([^"]+)"', comment)) if value is None else ()
        if value is not None or texts:
            found[i] = Documented(first_line + i + 1, match.group("command"), value, texts)
    return found


def script(lines: list[str], checks: dict[int, Documented], port: str, outputs: Path) -> str:
    """The block as a bash script that stops at the first failing command and keeps the output of each
    documented one in `outputs/<index>`. curl reaches `*.localhost` on loopback, as README says."""
    body = [
        "set -euo pipefail",
        'curl() { command curl --silent --show-error --connect-to ::127.0.0.1: "$@"; }',
    ]
    for i, line in enumerate(lines):
        line = line.replace(f":{README_RUNTIME_PORT}/", f":{port}/")
        if i in checks:
            command = checks[i].command.replace(f":{README_RUNTIME_PORT}/", f":{port}/")
            body.append(f'echo "+ {i}" >&2; {command} > "{outputs}/{i}"; cat "{outputs}/{i}"')
        else:
            body.append(line)
    return "\n".join(body) + "\n"


README_LINES = walkthrough(README.read_text())
CHECKS = documented(*README_LINES)


def test_the_walkthrough_documents_outputs_to_check() -> None:
    """The parsing finds what it should: the curl answers and the CLI's quoted lines."""
    assert sum(c.json is not None for c in CHECKS.values()) >= 4
    assert sum(bool(c.texts) for c in CHECKS.values()) >= 4
    assert all(c.command.split()[0] in {"fnstage", "curl"} for c in CHECKS.values())


def test_documented_texts_allow_only_what_varies() -> None:
    pattern = expected_pattern("live on 1/1 runtimes in 6 ms")
    assert re.search(pattern, "live on 1/1 runtimes in 12 ms")
    assert not re.search(pattern, "live on 1/2 runtimes in 6 ms")
    pattern = expected_pattern("lock b92e4f084572: humanize 4.9.0")
    assert re.search(pattern, "lock 0123456789ab: humanize 4.9.0")
    assert not re.search(pattern, "lock 0123456789ab: humanize 4.9.1")
    assert not re.search(pattern, "lock 0123456789: humanize 4.9.0")


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    wheels = tmp_path_factory.mktemp("readme-wheels")
    write_wheel(wheels, "humanize", "4.9.0", {"humanize/__init__.py": HUMANIZE})
    root = tmp_path_factory.mktemp("readme-up")
    with UpProcess(root, extra_env={"FNSTAGE_FIND_LINKS": str(wheels), "FNSTAGE_NO_INDEX": "1"}) as process:
        yield process


def test_the_walkthrough_runs_and_prints_what_readme_says(up: UpProcess, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    home = tmp_path / "home"  # the walk-through's ~/fnstage-demo goes here
    home.mkdir()
    port = str(up.runtime_port)
    env = {
        **up.cli_env(),
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # as after `activate`
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    env.pop("FNSTAGE_GATEWAY", None)
    ran = subprocess.run(
        ["bash", "-c", script(README_LINES[1], CHECKS, port, outputs)],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert ran.returncode == 0, f"the walk-through stopped:\n{ran.stdout}\n{ran.stderr}\n{up.log()[-3000:]}"

    wrong = []
    for i, check in CHECKS.items():
        printed = (outputs / str(i)).read_text()
        where = f"README.md:{check.line}: {check.command}"
        if check.json is not None:
            try:
                answer = json.loads(printed)
            except ValueError:
                answer = printed
            if answer != check.json:
                wrong.append(f"{where}\n  README: {json.dumps(check.json)}\n  prints: {printed.strip()}")
        for text, pattern in zip(check.texts, check.patterns(port), strict=True):
            if not re.search(pattern, printed):
                wrong.append(f"{where}\n  README: {text!r}\n  prints: {printed.strip()!r}")
    assert not wrong, "README's documented output no longer holds:\n" + "\n".join(wrong)
