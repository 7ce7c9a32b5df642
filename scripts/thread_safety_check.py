#!/usr/bin/env python3
"""Compiles, with clang's thread-safety analysis, every translation unit of a
build that uses common/mutex.h's annotations, itself or through a header that
does (to any depth); warnings are errors.

GCC builds Loom and ignores the annotations, so this is where GUARDED_BY,
REQUIRES and EXCLUDES are enforced (a ctest, `thread_safety_analysis`). Only
syntax is checked (-fsyntax-only), with each file's own flags from the build's
compile_commands.json, its warning flags replaced by the analysis.

  scripts/thread_safety_check.py BUILD_DIR [--clang clang++-14] [-j N] [FILE...]

FILEs (sources outside the build, e.g. the test's deliberate violation) are
compiled with -std=c++20 and the source root on the include path.
"""
import argparse
import concurrent.futures
import json
import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USES_ANNOTATIONS = re.compile(r'#include "common/mutex\.h"|\bGUARDED_BY\(|\bREQUIRES\(')
ANALYSIS = ["-fsyntax-only", "-Wthread-safety", "-Werror=thread-safety",
            "-Wno-unknown-warning-option"]


INCLUDE = re.compile(r'^#include "([^"]+)"', re.M)


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def annotated_headers():
    """The tree's headers that use the annotations, or include one that does
    (to any depth): a file that includes one uses a class whose locking rules
    the analysis checks at every call."""
    headers = {}
    for top in os.listdir(ROOT):
        if top.startswith(".") or top.startswith("build") or not os.path.isdir(os.path.join(ROOT, top)):
            continue
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if name.endswith(".h"):
                    path = os.path.join(dirpath, name)
                    headers[os.path.relpath(path, ROOT)] = read(path)
    marked = {h for h, text in headers.items() if USES_ANNOTATIONS.search(text)}
    changed = True
    while changed:
        changed = False
        for h, text in headers.items():
            if h not in marked and any(inc in marked for inc in INCLUDE.findall(text)):
                marked.add(h)
                changed = True
    return marked


def uses_annotations(source, marked):
    """The file uses the annotations or includes a header that does."""
    text = read(source)
    return bool(USES_ANNOTATIONS.search(text)) or any(inc in marked for inc in INCLUDE.findall(text))


def clang_args(entry, clang):
    """The entry's compile flags for clang: no launcher, output or warnings."""
    args = entry.get("arguments") or shlex.split(entry["command"])
    while args and not re.search(r"(c\+\+|g\+\+|clang\+\+)(-[0-9.]+)?$", os.path.basename(args[0])):
        args = args[1:]  # a launcher such as ccache
    out, skip = [clang], False
    for a in args[1:]:
        if skip:
            skip = False
        elif a in ("-o", "-MF", "-MT", "-MQ"):
            skip = True
        elif a in ("-c", "-MD", "-MMD") or a.startswith("-W") or a == entry["file"]:
            pass
        else:
            out.append(a)
    return out + ANALYSIS + [entry["file"]], entry["directory"]


def check(job):
    args, cwd, name = job
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    return name, r.returncode, r.stderr


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("build_dir")
    p.add_argument("files", nargs="*")
    p.add_argument("--clang", default="clang++")
    p.add_argument("-j", type=int, default=os.cpu_count() or 1)
    opts = p.parse_intermixed_args()

    jobs = []
    if opts.files:
        for f in opts.files:
            jobs.append(([opts.clang, "-std=c++20", "-I" + ROOT] + ANALYSIS + [os.path.abspath(f)],
                         ROOT, f))
    else:
        db = os.path.join(opts.build_dir, "compile_commands.json")
        try:
            with open(db) as f:
                entries = json.load(f)
        except OSError as e:
            sys.exit(f"thread_safety_check: cannot read {db} ({e.strerror}); configure with "
                     "CMAKE_EXPORT_COMPILE_COMMANDS=ON (Loom's CMakeLists sets it)")
        seen = set()
        marked = annotated_headers()
        for e in entries:
            src = os.path.normpath(os.path.join(e["directory"], e["file"]))
            if not src.endswith(".cc") or src in seen or not src.startswith(ROOT + os.sep):
                continue
            seen.add(src)
            if uses_annotations(src, marked):
                args, cwd = clang_args(e, opts.clang)
                jobs.append((args, cwd, os.path.relpath(src, ROOT)))
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, opts.j)) as pool:
        for name, rc, err in pool.map(check, jobs):
            if rc != 0:
                failed += 1
                print(f"FAILED {name}\n{err}", flush=True)
    print(f"thread-safety analysis: {len(jobs) - failed} of {len(jobs)} translation units clean")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
