#!/usr/bin/env python3
"""Prints the README's set-up commands, one per line: the indented lines of the first code
block under "## Set up". CI runs exactly these, so the README cannot promise a command that
CI does not run. Fails if there are not exactly two (the README's promise to newcomers)."""
import sys

lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
try:
    start = lines.index("## Set up")
except ValueError:
    sys.exit("README has no '## Set up' section")
commands, seen_block = [], False
for line in lines[start + 1:]:
    if line.startswith("## "):
        break
    if line.startswith("    ") and line.strip():
        commands.append(line.strip())
        seen_block = True
    elif seen_block and line.strip():
        break
if len(commands) != 2:
    sys.exit(f"README '## Set up' must open with exactly two commands, found {commands}")
print("\n".join(commands))
