#!/usr/bin/env python3
"""Checks that Cargo.toml's rust-version is the one the locked dependency tree needs.

No older toolchain can be installed where CI runs, so the check has two halves: this script
compares rust-version with the highest `rust-version` any locked dependency declares (it must
be exactly that: lower is a false promise, higher turns away users for nothing), and clippy's
`incompatible_msrv` lint (on by default, run with -D warnings) refuses standard-library APIs
newer than rust-version in the crate's own code.
"""
import json
import subprocess
import sys

meta = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)


def version(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


root = next(p for p in meta["packages"] if p["id"] == meta["resolve"]["root"])
ours = version(root["rust_version"])
needed, who = max(
    (version(p["rust_version"]), f"{p['name']} {p['version']}")
    for p in meta["packages"]
    if p.get("rust_version") and p["id"] != root["id"]
)
show = lambda v: ".".join(map(str, v))
if ours != needed:
    sys.exit(
        f"Cargo.toml says rust-version {show(ours)}, but the locked dependencies need "
        f"{show(needed)} ({who})"
    )
print(f"rust-version {show(ours)} is what the locked dependencies need ({who})")
