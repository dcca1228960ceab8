#!/usr/bin/env bash
# Writes link/hot-text.ld, the linker script that build.rs hands to the linker, or
# with --check verifies that the committed script still fits the current build.
#
# Why it exists: a short command such as `enqueue` runs some 600 functions scattered
# over 3.3 MiB of machine code. Each 64 KiB stretch of code it touches costs a page
# fault (about 2 us on the development VM) and page-table entries to tear down at
# exit. The script gathers those functions into one `.text.hot` output section in
# front of `.text`, so the same work touches a third of the stretches
# (BENCHMARKS.md has the numbers).
#
# How: run short commands under callgrind, take every function of the queuectl binary
# that ran, and turn each symbol into a section pattern without the parts that change
# from build to build (Rust's crate and symbol hashes, LLVM's `.llvm.N` suffixes), so
# that the script survives most code changes and toolchain updates. A function that
# no pattern matches just stays in `.text`: a stale script costs speed, never
# correctness.
#
# Usage: link/hot-text.sh           regenerate link/hot-text.ld from a release build
#        link/hot-text.sh --check   fail when any function an `enqueue` call runs is
#                                   outside .text.hot (one stray function costs
#                                   page faults again: regenerate when this fails)
# Needs valgrind (callgrind), binutils (nm, readelf) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-generate}
case "$mode" in
  generate | --check) ;;
  *)
    echo "usage: link/hot-text.sh [--check]" >&2
    exit 2
    ;;
esac
for tool in valgrind nm readelf python3; do
  command -v "$tool" >/dev/null || {
    echo "link/hot-text.sh needs $tool; install it (Debian: valgrind, binutils, python3)" >&2
    exit 1
  }
done

cargo build --release --quiet
bin=$(realpath target/release/queuectl)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
db="$work/queue.db"

# One profile per command, the `enqueue` forms first: patterns are written in this
# order, so the code of the call the speed target measures comes first.
profile() { # NAME ARGS...
  local name=$1
  shift
  valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/$name.cg" \
    "$bin" --db "$db" "$@" >/dev/null 2>"$work/$name.log" || {
    echo "profiling \`queuectl $*\` failed:" >&2
    cat "$work/$name.log" >&2
    exit 1
  }
}
"$bin" --db "$db" enqueue --command true >/dev/null # the store and its WAL exist
for _ in 1 2 3 4 5 6 7 8; do "$bin" --db "$db" enqueue -- echo warm >/dev/null; done
profile 01-enqueue-command enqueue --command true
if [ "$mode" = --check ]; then
  profiles=("$work/01-enqueue-command.cg")
else
  # Every ~10th call copies the WAL into the database first (see
  # start_long_wal_over in src/store/sqlite.rs): profile enough calls to see one.
  for n in 02 03 04 05 06 07 08 09 10 11 12; do
    profile "01-enqueue-command-$n" enqueue --command true
  done
  id=$("$bin" --db "$db" --json enqueue '{"command":"echo hi","max_retries":1}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
  profile 02-enqueue-json enqueue '{"command":"true"}'
  profile 03-enqueue-words enqueue -- echo words
  profile 04-status status
  profile 05-list list --limit 10
  profile 06-show show "$id"
  profile 07-json-list --json list --state pending --limit 10
  profile 08-dlq dlq list
  profile 09-config config get max-retries
  profile 10-version --version
  profiles=("$work"/*.cg)
fi

python3 - "$mode" "$bin" link/hot-text.ld "${profiles[@]}" <<'EOF'
import re, subprocess, sys

mode, binary, script, profiles = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]

def defined_functions(binary):
    """The binary's function symbols and their addresses."""
    listing = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True)
    address = {}
    for line in listing.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            address[parts[2]] = int(parts[0], 16)
    return address

def functions_run(profile, defined):
    """Functions of the binary that ran.
    Matched by name, not by callgrind's object: valgrind attributes code in
    .text.hot to no object at all."""
    seen = {}
    for line in open(profile):
        m = re.match(r"^c?fn=\((\d+)\) (.*)$", line.rstrip("\n"))
        if m:
            name = re.sub(r"'\d+$", "", m.group(2))  # callgrind's recursion marks
            if name in defined:
                seen.setdefault(name, None)
    return list(seen)

def pattern(symbol):
    """A pattern for the function's symbol, without the parts that change between builds."""
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_.$]*$", symbol):
        return None  # callgrind's placeholders: addresses, "(below main)"
    if symbol.startswith("_ZN"):  # legacy Rust mangling: 17h<hash>E ends the path
        return re.sub(r"17h[0-9a-f]{16}E.*$", "17h*", symbol)
    if symbol.startswith("_R"):  # v0 mangling: crate hashes, back-references
        symbol = re.sub(r"\.llvm\.\d+$", "", symbol)
        symbol = re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", symbol)
        return re.sub(r"B[0-9A-Za-z]*_", "B*_", symbol) + "*"
    return symbol  # C (SQLite): names are stable

address = defined_functions(binary)
if mode == "generate":
    patterns = {}
    for profile in sorted(profiles):
        for p in sorted(filter(None, map(pattern, functions_run(profile, address)))):
            patterns.setdefault(p, None)
    with open(script, "w") as out:
        out.write(
            "/* Generated by link/hot-text.sh from callgrind profiles of short commands:\n"
            " * the functions they run, gathered in front of .text so that a call touches\n"
            " * fewer pages of code. Regenerate with link/hot-text.sh; do not edit. */\n"
            "SECTIONS\n{\n  .text.hot :\n  {\n"
        )
        for p in patterns:
            # Functions LLVM deems cold (#[cold], reached only on unlikely paths) come
            # in .text.unlikely.* sections.
            out.write(f"    *(.text.{p} .text.unlikely.{p})\n")
        out.write("  }\n}\nINSERT BEFORE .text;\n")
    print(f"wrote {script}: {len(patterns)} patterns")
    sys.exit(0)

# --check: where did the functions of an `enqueue` call land?
hot = None
for line in subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True, check=True).stdout.splitlines():
    m = re.search(r"\]\s+\.text\.hot\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", line)
    if m:
        start = int(m.group(1), 16)
        hot = (start, start + int(m.group(2), 16))
if hot is None:
    sys.exit(f"{binary} has no .text.hot section: is build.rs passing link/hot-text.ld to the linker?")
ran = functions_run(profiles[0], address)
outside = [f for f in ran if not hot[0] <= address[f] < hot[1]]
print(f"{len(ran) - len(outside)} of {len(ran)} functions an `enqueue` call runs are in .text.hot", flush=True)
if outside:
    print("outside:", *outside[:10], sep="\n  ", file=sys.stderr)
    sys.exit("link/hot-text.ld no longer fits this build: run link/hot-text.sh and commit the result")
EOF
