#!/usr/bin/env python3
"""Writes docs/configuration.md from each binary's own `--help`: every flag, its environment variable, its
default and what it does, so the reference cannot drift from the code. `--check` compares instead of writing
(what `./natter test` runs) and exits 1 with a diff when the file is stale.

    python3 scripts/configuration.py [--check] [BIN_DIR]      # BIN_DIR: target/debug by default
"""

import difflib
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs/configuration.md"
BINARIES = [
    ("natter-auth-api", [], "The auth API: accounts, tokens, rooms, history, the web client."),
    ("natter-gateway", [], "The WebSocket gateway."),
    ("natter-persister", [], "The persister: the chat stream's messages into PostgreSQL."),
    ("natter-loadtest", ["run"], "The load-test harness (`natter-loadtest run`, or `./natter loadtest`)."),
]
OPTION = re.compile(r"^ {2,6}(?:-(\w), )?(--[\w-]+)(?: <([^>]+)>)?(?:\.\.\.)?\s*$")


def options(help_text):
    """The options of clap's long help, each as (flag, value name, env, default, description)."""
    found, current = [], None
    for line in help_text.splitlines():
        match = OPTION.match(line)
        if match:
            short, flag, value = match.group(1), match.group(2), match.group(3)
            current = {"flag": (f"-{short}, " if short else "") + flag, "value": value, "env": None,
                       "default": None, "values": None, "text": []}
            found.append(current)
            continue
        if line and not line.startswith(" "):
            # A heading of a group of options ("Faults (...):"), not part of the option above it.
            current = None
            continue
        if current is None:
            continue
        text = line.strip()
        if text.startswith("[env: "):
            current["env"] = text[len("[env: "):].split("=", 1)[0].rstrip("]")
        elif text.startswith("[default: "):
            current["default"] = text[len("[default: "):-1]
        elif text.startswith("[possible values: "):
            current["values"] = text[len("[possible values: "):-1]
        elif text == "Possible values:":
            current["values"] = []
        elif text.startswith("- ") and isinstance(current["values"], list):
            name, _, what = text[2:].partition(":")
            current["values"].append(f"`{name.strip()}`: {what.strip()}")
        elif text and not text.startswith("["):
            current["text"].append(text)
    for o in found:
        # Long lines carry the brackets at the end of the description itself.
        text = " ".join(o["text"])
        for key, label in (("values", "possible values"), ("default", "default"), ("env", "env")):
            match = re.search(r"\s*\[" + label + r": ([^\]]*)\]\s*$", text)
            if match:
                o[key] = match.group(1).split("=", 1)[0] if key == "env" else match.group(1)
                text = text[:match.start()]
        o["text"] = [text.strip()]
    return [o for o in found if o["flag"] not in ("-h, --help", "-V, --version", "--help", "--version")]


def cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def render(bin_dir):
    out = ["# Configuration reference", "",
           "Every setting of every Natter binary, as its own `--help` states it (this page is written from the",
           "binaries by `scripts/configuration.py` and `./natter test` checks that it still matches them). Each flag",
           "can also be given as the environment variable beside it; a flag wins over its variable. Durations take",
           "`ms`, `s`, `m`, `h` or `d`; log verbosity follows `RUST_LOG`.", "",
           "Every service also takes `--check-config`: it validates its flags and environment exactly as at start-up",
           "and exits, 0 when valid and 64 with one line naming the problem, connecting to nothing and binding",
           "nothing. `./natter test` runs it on the environment docker-compose.yml and deploy/k8s give each service.",
           "Secrets (`DATABASE_URL`, `NATS_PASSWORD`) are never printed.", ""]
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "100000"}
    for binary, args, about in BINARIES:
        help_text = subprocess.run([str(bin_dir / binary), *args, "--help"], capture_output=True, text=True,
                                   check=True, env=env).stdout
        command = " ".join([binary, *args])
        out += [f"## {command}", "", about, "", "| flag | environment | default | what it does |", "|---|---|---|---|"]
        for o in options(help_text):
            flag = f"`{o['flag']}{' <' + o['value'] + '>' if o['value'] else ''}`"
            env_name = f"`{o['env']}`" if o["env"] else ""
            default = f"`{o['default']}`" if o["default"] is not None else ""
            text = " ".join(o["text"])
            if isinstance(o["values"], list):
                text += ". One of: " + "; ".join(o["values"])
            elif o["values"]:
                text += f". One of: {o['values']}"
            out.append(f"| {cell(flag)} | {env_name} | {cell(default)} | {cell(text)} |")
        out.append("")
    natter = subprocess.run([str(ROOT / "natter"), "help"], capture_output=True, text=True, check=True).stdout
    out += ["## ./natter", "", "The front door: `./natter help` prints it.", "", "```", natter.rstrip(), "```", ""]
    return "\n".join(out)


def main():
    args = sys.argv[1:]
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    bin_dir = pathlib.Path(args[0]) if args else ROOT / "target/debug"
    text = render(bin_dir)
    if not check:
        DOC.write_text(text)
        print(f"wrote {DOC.relative_to(ROOT)}")
        return 0
    have = DOC.read_text() if DOC.exists() else ""
    if have == text:
        print(f"{DOC.relative_to(ROOT)} matches every binary's --help")
        return 0
    sys.stdout.writelines(difflib.unified_diff(have.splitlines(True), text.splitlines(True),
                                               "docs/configuration.md", "from the binaries' --help"))
    print("docs/configuration.md is stale: run python3 scripts/configuration.py", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
