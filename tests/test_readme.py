"""The README's and docs/'s commands cannot drift from the code.

Every command line they show (in ```bash blocks and in `inline code`) is read:
  * `python -m minivit.X ...` and `python benchmarks/x.py ...`: each flag it uses is one that
    the command's --help lists; a `minivit.train` or `minivit.finetune` line without placeholders
    is also parsed into its TrainConfig and validated (preset names, numbers, combinations);
  * `pip install -r FILE`: the file exists;
  * the Quick start's test command is what `.ci/run` runs.
Every relative link points at a file that exists, and every #anchor at a heading of its page.
"""

import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]+(/|$)|^/path/|\.\.\.")  # DIR, RUN_DIR/..., SOURCE, /path/to/...


def command_lines(text: str) -> list[str]:
    """The commands a page shows: lines of ```bash blocks (continuations joined) and inline code spans
    that run python, each split at &&, comments dropped."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            found.append(line)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    found += [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", prose)
              if re.match(r"(python3? |mpiexec )", span)]
    commands = []
    for line in found:
        line = re.sub(r"\s#\s.*$", "", line).strip()
        commands += [part.strip() for part in line.split("&&") if part.strip()]
    return commands


def target_of(command: str):
    """("module", "minivit.train" | "benchmarks/x.py", [arguments]) or None for other commands."""
    tokens = shlex.split(command)
    while tokens and (re.fullmatch(r"[A-Z_]+=\S*", tokens[0]) or tokens[0] == "mpiexec"):
        tokens = tokens[3:] if tokens[0] == "mpiexec" else tokens[1:]  # mpiexec -n N
    if not tokens or tokens[0] not in ("python", "python3"):
        return None
    if tokens[1] == "-m" and tokens[2] != "pip":
        return tokens[2], tokens[3:]
    if tokens[1].endswith(".py"):
        return tokens[1], tokens[2:]
    return ("pip", tokens[4:]) if tokens[1:4] == ["-m", "pip", "install"] else None


def all_commands():
    return [(page.relative_to(ROOT).as_posix(), command) for page in PAGES
            for command in command_lines(page.read_text())]


@functools.cache
def help_text(target: str) -> str:
    argv = [sys.executable, "-m", target] if not target.endswith(".py") else [sys.executable, str(ROOT / target)]
    run = subprocess.run([*argv, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, f"{target} --help failed: {run.stderr[-500:]}"
    return run.stdout


def flags_of(arguments: list[str]) -> list[str]:
    return [token.strip("[]|").split("=")[0] for token in arguments if token.strip("[]|").startswith("--")]


def test_the_pages_show_commands():
    commands = [command for _, command in all_commands()]
    assert any(command.startswith("python3 -m minivit.train --preset cifar-cpu --download") for command in commands)
    assert sum(1 for command in commands if target_of(command) and target_of(command)[0] != "pip") >= 20


@pytest.mark.parametrize("page,command", [item for item in all_commands() if target_of(item[1]) is not None],
                         ids=lambda value: value if len(value) < 60 else value[:57] + "...")
def test_every_flag_a_command_shows_exists(page, command):
    target, arguments = target_of(command)
    if target == "pip":
        for index, token in enumerate(arguments):
            if token == "-r":
                assert (ROOT / arguments[index + 1]).is_file(), f"{page}: {arguments[index + 1]} does not exist"
        return
    if target.startswith("minivit.") or target.startswith("benchmarks/") or target.startswith("lessons/"):
        if not target.startswith("minivit."):
            assert (ROOT / target).is_file(), f"{page}: {target} does not exist"
        usage = help_text(target)
        for flag in flags_of(arguments):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", usage), \
                f"{page}: `{command}` uses {flag}, which `{target} --help` does not list"


@pytest.mark.parametrize("page,command", [item for item in all_commands()
                                          if (target_of(item[1]) or ("",))[0] in ("minivit.train", "minivit.finetune")],
                         ids=lambda value: value if len(value) < 60 else value[:57] + "...")
def test_training_commands_parse_into_a_valid_config(page, command, tmp_path, monkeypatch):
    from minivit.training.arguments import config_from_args

    target, arguments = target_of(command)
    if not arguments or "--help" in arguments:
        pytest.skip("the command's name alone")
    if "--resume" in arguments or any(re.search(r"[\[\]|]", token) for token in arguments):
        pytest.skip("a resumption or a synopsis with optional parts: its flags are checked above")
    arguments = [str(tmp_path) if token in ("DIR", "RUN_DIR") else token for token in arguments]
    if any(PLACEHOLDER.search(token) for token in arguments):
        pytest.skip("a placeholder stands for the value: its flags are checked above")
    monkeypatch.chdir(tmp_path)
    if target == "minivit.finetune":
        arguments = ["--recipe", "finetune", *arguments]
    config, resume = config_from_args(arguments)
    config.validate()
    assert not resume


def test_the_quick_start_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("### Test", 1)[1].split("\n### ", 1)[0]
    shown = re.findall(r"```bash\n(.*?)\n```", quick_start, flags=re.S)
    assert shown == ["python3 -m pip install -r requirements-dev.txt -e . && python3 -m pytest -q"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert shown[0].replace("python3 ", "python ") in ci.splitlines()


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_links_point_at_files_and_headings_that_exist(page):
    text = page.read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"https?://", target):
            continue
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name} links to {target}, which does not exist"
        if fragment:
            headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", linked.read_text(), flags=re.S), flags=re.M)
            assert fragment in {anchor(heading) for heading in headings}, \
                f"{page.name} links to #{fragment}, no heading of {linked.name}"
