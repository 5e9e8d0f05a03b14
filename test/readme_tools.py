"""The README's shell commands, read from its code blocks (tests run them, so the README cannot drift).

Not a test module.
"""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def section(title: str, text: str | None = None) -> str:
    """The README section whose `## ` heading starts with `title` (up to the next `## `)."""
    text = README.read_text() if text is None else text
    match = re.search(rf"^## {re.escape(title)}.*?(?=^## |\Z)", text, flags=re.S | re.M)
    assert match, f"README has no section '## {title}'"
    return match.group(0)


def bash_commands(text: str) -> list[str]:
    """Commands of the ```bash blocks in `text`: continuation lines joined, comments and blank lines dropped."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            code = strip_comment(line).strip()
            if code:
                commands.append(re.sub(r"\s+", " ", code) if "\"" not in code and "'" not in code else code)
    return commands


def strip_comment(line: str) -> str:
    """`line` without a trailing `# comment` (a # inside quotes is kept)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def one(commands: list[str], prefix: str) -> str:
    """The single command starting with `prefix`; AssertionError when there is none or several."""
    found = [c for c in commands if c.startswith(prefix)]
    assert len(found) == 1, f"expected one README command starting with {prefix!r}, found {found}"
    return found[0]


def launch_arguments_table(text: str) -> dict[str, str]:
    """{argument: default} from the README's launch-argument table (| `name` | `default` | ...)."""
    rows = re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", text, flags=re.M)
    return {name: ("" if default == "''" else default) for name, default in rows}
