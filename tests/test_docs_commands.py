"""Every ``labspace ...`` command the docs and the README show exists, with the
options they give it: the command names are checked against the CLI itself
(its click groups), so a renamed command cannot leave a stale line behind."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import click
import pytest

from labspace import cli

REPO = Path(__file__).resolve().parent.parent
DOCS = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])

# code: `spans` and the lines of fenced blocks
SPAN = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^(```|~~~)")
# what ends a command in a shell line (or the part of it on this line)
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "2>&1", "\\"}
# what a command may follow: the line's start, a prompt, an operator, sudo
COMMAND_STARTS = SHELL_OPERATORS | {"$", "(", "sudo", "time", "exec"}


def code_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, code)`` for every code span and fenced line of ``text``."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if fenced:
            out.append((number, line))
        else:
            out += [(number, span) for span in SPAN.findall(line)]
    return out


def invocations(code: str, program: str) -> list[list[str]]:
    """The words after each run of ``program`` (or ``.../bin/program``) in a line
    of shell: at a command's place only (not `--user labspace`, `apt install make`),
    up to an operator, a comment or the line's end."""
    tokens = code.replace("\\|", "|").split()  # a table's \| is an alternative
    found = []
    for i, token in enumerate(tokens):
        if token != program and not token.endswith(f"bin/{program}"):
            continue
        before = tokens[:i]
        while len(before) >= 3 and before[-2] in ("-u", "-g"):  # sudo -u labspace ...
            before = before[:-2]
        if before and before[-1] not in COMMAND_STARTS:
            continue
        words = []
        for word in tokens[i + 1 :]:
            if word in SHELL_OPERATORS or word.startswith("#"):
                break
            words.append(word)
        found.append(words)
    return found


def mentions() -> list[tuple[str, list[str]]]:
    """``("file:line", words after labspace)`` for every command in the docs."""
    found = []
    for path in DOCS:
        for number, code in code_lines(path.read_text()):
            for words in invocations(code, "labspace"):
                if words and words[0][0].isdigit():
                    continue  # output, not a command: `labspace 0.1.0` (labspace version)
                found.append((f"{path.relative_to(REPO)}:{number}", words))
    return found


def problem(words: list[str]) -> str | None:
    """What is wrong with ``labspace <words>``, or None."""
    command: click.Command = cli.main
    path = ["labspace"]
    rest = list(words)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        word = rest[0]
        if word.startswith(("[", "<", "...")):
            return None  # a placeholder: `labspace apps ...`, `labspace data <id>`
        if "|" in word:  # alternatives: `labspace users list|add`
            for alternative in word.split("|"):
                found = problem([*path[1:], alternative, *rest[1:]])
                if found:
                    return found
            return None
        if word not in command.commands:
            return (
                f"{' '.join(path)} has no command {word!r} (it has: {', '.join(command.commands)})"
            )
        command = command.commands[word]
        path.append(rest.pop(0))
    known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    known |= {"--help"}
    for word in rest:
        option = word.strip("[]").split("=")[0]  # `[--port N]` in a usage line
        if option.startswith("--") and option not in known:
            return f"{' '.join(path)} has no option {option} (it has: {', '.join(sorted(known))})"
    return None


MENTIONS = mentions()


def test_the_docs_show_commands():
    """The extraction finds what it should (else the test below checks nothing)."""
    shown = {" ".join(words[:2]) for _, words in MENTIONS}
    assert {"up", "config validate", "data audit"} <= shown
    assert len(MENTIONS) > 20


@pytest.mark.parametrize(("where", "words"), MENTIONS, ids=[m[0] for m in MENTIONS])
def test_every_command_in_the_docs_exists(where, words):
    assert problem(words) is None, f"{where}: `labspace {' '.join(words)}`: {problem(words)}"


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["validate"], "labspace has no command 'validate'"),
        (["config", "check"], "labspace config has no command 'check'"),
        (["up", "--prot", "8000"], "labspace up has no option --prot"),
        (["up", "[--prot", "N]"], "labspace up has no option --prot"),
        (["up", "--config", "/etc/labspace/labspace.yaml"], None),
        (["data", "show", "genomes"], None),
    ],
)
def test_a_stale_command_is_caught(words, expected):
    found = problem(words)
    if expected is None:
        assert found is None
    else:
        assert found and found.startswith(expected), found


def test_no_doc_installs_a_labspace_package_that_is_not_published():
    """Labspace is installed from its folder (`make up`, `pip install -e .`)."""
    published = re.compile(r"pip install +['\"]?labspace\b")
    found = [
        f"{path.relative_to(REPO)}:{number}: {code}"
        for path in DOCS
        for number, code in code_lines(path.read_text())
        if published.search(code)
    ]
    assert found == []


def test_every_make_target_in_the_docs_exists():
    """`make up`, `make images`...: targets of the Makefile (as make itself reads it)."""
    database = subprocess.run(
        ["make", "-pRrq", "-f", "Makefile", ":"], cwd=REPO, capture_output=True, text=True
    ).stdout
    targets = set(re.findall(r"^([^\s#:=%][^:=]*):(?!=)", database, re.MULTILINE))
    assert {"up", "test", "images"} <= targets
    shown = [
        (f"{path.relative_to(REPO)}:{number}", target)
        for path in DOCS
        for number, code in code_lines(path.read_text())
        for words in invocations(code, "make")
        for target in words[:1]
        if not target.startswith("-")
    ]
    assert len(shown) > 10
    assert [(where, t) for where, t in shown if t not in targets] == []


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("labspace up --port 8001", [["up", "--port", "8001"]]),
        ("$ .venv/bin/labspace config validate && make up", [["config", "validate"]]),
        (
            "sudo -u labspace /opt/labspace/.venv/bin/labspace backup --to /b",
            [["backup", "--to", "/b"]],
        ),
        (
            "sudo labspace install-service --user labspace --enable",
            [["install-service", "--user", "labspace", "--enable"]],
        ),
        ("labspace users list\\|add", [["users", "list|add"]]),
        ("-v /srv/labspace:/srv/labspace \\", []),
        ("apt install -y git make python3", []),
    ],
)
def test_commands_are_read_where_a_shell_runs_them(code, expected):
    assert invocations(code, "labspace") == expected
