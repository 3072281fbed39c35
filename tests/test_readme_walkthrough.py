"""README's shell blocks run as written, and print what README says they print.

The walk-through's block, then the version URLs' and the logs' (which go on from where it ends), are
run by bash, one script, against a real `fnstage up`. A comment after a command documents its output
in one of two forms, and the command's output must hold it:

- `# {"message":"Hello, Ada!"}`: the command prints this JSON (compared as JSON; prose may follow it);
- `# ... "live on 1/1 runtimes in 6 ms" ...`: each quoted text is (part of) a line the command prints,
  where only what varies from run to run may differ: durations (`6 ms`), hashes (`b92e4f084572`),
  column padding (two spaces or more) and the runtime's port (8471 in README; a free port here).

Any other comment is prose. So a change to the CLI's output, or to a function's answer, that README
shows fails here until README says the new thing. A `fnstage logs ... --follow` runs until stopped:
here it must print at once, then show a request made meanwhile, and is then stopped. Every other shell
block of README is named in `NOT_RUN` with the reason it cannot run here (`tests/test_cli_reference.py`
still checks that its commands exist and parse); a new block fails until it is run or given a reason.
The one package the walk-through installs from PyPI, humanize 4.9.0, is a small stand-in wheel built
here: no test reaches the internet.
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
    (r" {2,}", lambda _v: r" {2,}"),  # a table's column padding
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


@dataclass(frozen=True)
class Block:
    """A fenced shell block of README: the section it is in, its place there, its lines."""

    section: str  # the `## ` heading above it
    index: int  # 0 for the section's first shell block, ...
    first_line: int  # in README.md, 1-based, of its first line
    lines: tuple[str, ...]


def shell_blocks(readme: str) -> list[Block]:
    """Every ```sh and ```bash block, in README's order."""
    blocks: list[Block] = []
    lines = readme.splitlines()
    section, i = "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:]
        if line.startswith("```"):
            closing = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            if line in ("```sh", "```bash"):
                index = sum(b.section == section for b in blocks)
                blocks.append(Block(section, index, i + 2, tuple(lines[i + 1 : closing])))
            i = closing
        i += 1
    return blocks


# The blocks run, in this order, one script: (section, index)
RUN = [
    ("A walk-through", 0),
    ("Every version has a URL; canary releases roll themselves back", 0),
    ("Logs", 0),
]
# Every other shell block, and why it cannot run here
NOT_RUN = {
    ("Two commands", 0): "`./scripts/up` serves until stopped and `./scripts/test` is this test suite",
    ("Every version has a URL; canary releases roll themselves back", 1): (
        "`rollout promote` and `rollout abort` are alternatives: after the first, no canary is left to "
        "abort (tests/test_e2e_canary.py runs each)"
    ),
    ("Deploy webhooks", 0): "its receivers are on the internet (hooks.slack.com), which no test reaches",
    ("Configuration and secrets", 0): (
        "`secret set prod STRIPE_KEY` prompts for a hidden value on a terminal; $STRIPE_DEV_KEY is the "
        "reader's (tests/test_e2e_configuration.py runs these commands)"
    ),
    ("Scheduled functions", 0): (
        "its trigger fires at 03:00 in Berlin: its runs need an injected clock "
        "(tests/test_e2e_triggers.py runs these commands with one)"
    ),
    ("Metrics, runtime events and silent runtimes", 0): (
        "`fnstage runtime` and `fnstage up` serve until stopped, on README's fixed ports "
        "(tests/test_e2e_metrics.py runs both)"
    ),
    ("Security", 0): "`token revoke 7` names a token of the reader's; `user create bob` needs a fresh name",
}
_COMMENT = re.compile(r"^(?P<command>[^#]*?\S)\s+# (?P<comment>.*)$")
_HEREDOC = re.compile(r"<<'?(\w+)'?")
_FOLLOW = re.compile(r"^fnstage logs (?P<env>[a-z]+)/(?P<path>\S+) .*--follow\b")


def script_lines(readme: str) -> list[tuple[int, str]]:
    """The lines of the blocks in `RUN`, in that order, each with its line number in README.md."""
    blocks = {(b.section, b.index): b for b in shell_blocks(readme)}
    return [(blocks[key].first_line + i, line) for key in RUN for i, line in enumerate(blocks[key].lines)]


def documented(lines: list[tuple[int, str]]) -> dict[int, Documented]:
    """The commands that document their output, by their index in `lines`. Here-documents (a
    function's files) are skipped: their `#` is Python's."""
    found: dict[int, Documented] = {}
    heredoc = None
    for i, (number, line) in enumerate(lines):
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
            found[i] = Documented(number, match.group("command"), value, texts)
    return found


# `fnstage logs ... --follow` in the background: it must print at once (what is recorded), then show
# a request made meanwhile within 15 s; then it is stopped, as a user stops it (it never ends itself).
FOLLOW = r"""
follow() {
  local out=$1 url=$2; shift 2
  "$@" > "$out" &
  local pid=$! id=""
  for _ in $(seq 300); do [ -s "$out" ] && break; sleep 0.1; done
  if [ ! -s "$out" ]; then echo "$*: printed nothing in 30 s" >&2; kill $pid; return 1; fi
  id=$(curl --dump-header - --output /dev/null "$url" | tr -d '\r' | sed -n 's/^x-request-id: //Ip')
  if [ -z "$id" ]; then echo "$url: no x-request-id" >&2; kill $pid; return 1; fi
  for _ in $(seq 150); do grep -q "$id" "$out" && break; sleep 0.1; done
  kill $pid; wait $pid || true
  if ! grep -q "$id" "$out"; then echo "$*: no line for request $id after 15 s" >&2; return 1; fi
}
"""


def script(lines: list[tuple[int, str]], checks: dict[int, Documented], port: str, outputs: Path) -> str:
    """The lines as a bash script that stops at the first failing command and keeps the output of each
    documented one in `outputs/<index>`. curl reaches `*.localhost` on loopback, as README says."""
    body = [
        "set -euo pipefail",
        'curl() { command curl --silent --show-error --connect-to ::127.0.0.1: "$@"; }',
        FOLLOW,
    ]
    for i, (_number, line) in enumerate(lines):
        line = line.replace(f":{README_RUNTIME_PORT}/", f":{port}/")
        command = checks[i].command.replace(f":{README_RUNTIME_PORT}/", f":{port}/") if i in checks else None
        if following := _FOLLOW.match(line):
            url = f"http://127.0.0.1:{port}/demo/{following['env']}/{following['path']}"
            command = _COMMENT.sub(r"\g<command>", line)
            body.append(f'echo "+ {i}" >&2; follow "{outputs}/{i}" {url} {command}')
        elif command is not None:
            body.append(f'echo "+ {i}" >&2; {command} > "{outputs}/{i}"; cat "{outputs}/{i}"')
        else:
            body.append(line)
    return "\n".join(body) + "\n"


README_TEXT = README.read_text()
README_LINES = script_lines(README_TEXT)
CHECKS = documented(README_LINES)


def test_every_shell_block_runs_or_says_why_not() -> None:
    found = {(b.section, b.index) for b in shell_blocks(README_TEXT)}
    assert set(RUN) <= found, f"RUN names blocks README does not have: {set(RUN) - found}"
    assert set(NOT_RUN) <= found, f"NOT_RUN names blocks README does not have: {set(NOT_RUN) - found}"
    assert not set(RUN) & set(NOT_RUN)
    unaccounted = found - set(RUN) - set(NOT_RUN)
    assert not unaccounted, (
        f"README shell blocks neither run here nor given a reason in NOT_RUN: {unaccounted}"
    )
    assert all(NOT_RUN.values())


def test_the_walkthrough_documents_outputs_to_check() -> None:
    """The parsing finds what it should: the curl answers and the CLI's quoted lines, in every block run."""
    assert sum(c.json is not None for c in CHECKS.values()) >= 7
    assert sum(bool(c.texts) for c in CHECKS.values()) >= 6
    assert all(c.command.split()[0] in {"fnstage", "curl"} for c in CHECKS.values())
    for block in (b for b in shell_blocks(README_TEXT) if (b.section, b.index) in RUN):
        lines = range(block.first_line, block.first_line + len(block.lines))
        assert any(c.line in lines for c in CHECKS.values()), f"{block.section}: no documented output"
    assert sum(bool(_FOLLOW.match(line)) for _, line in README_LINES) == 2


def test_documented_texts_allow_only_what_varies() -> None:
    pattern = expected_pattern("live on 1/1 runtimes in 6 ms")
    assert re.search(pattern, "live on 1/1 runtimes in 12 ms")
    assert not re.search(pattern, "live on 1/2 runtimes in 6 ms")
    pattern = expected_pattern("lock b92e4f084572: humanize 4.9.0")
    assert re.search(pattern, "lock 0123456789ab: humanize 4.9.0")
    assert not re.search(pattern, "lock 0123456789ab: humanize 4.9.1")
    assert not re.search(pattern, "lock 0123456789: humanize 4.9.0")
    pattern = expected_pattern("200  0 ms  v2")
    assert re.search(pattern, "just now     200     0.1 ms      v2       -")
    assert not re.search(pattern, "just now     200 0.1 ms      v2")
    assert not re.search(pattern, "just now     500     0.1 ms      v2")


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
        ["bash", "-c", script(README_LINES, CHECKS, port, outputs)],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, f"README's blocks stopped:\n{ran.stdout}\n{ran.stderr}\n{up.log()[-3000:]}"

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
    followed = [i for i, (_, line) in enumerate(README_LINES) if _FOLLOW.match(line)]
    as_json = [json.loads(line) for line in (outputs / str(followed[1])).read_text().splitlines()]
    assert as_json and all(isinstance(entry["request_id"], str) for entry in as_json)  # one object a line
