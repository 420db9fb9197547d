#!/usr/bin/env python3
"""Split a callgrind profile of the overhead bench into driver / fake
controller / bench loop, by the inlining chain of every executed instruction.

usage: attribute.py BINARY CALLGRIND_OUT IOS

The profile must come from
  valgrind --tool=callgrind --toggle-collect='overhead::io_loop' \
    --dump-instr=yes --dump-line=no --compress-strings=no --compress-pos=no ...
Each instruction's self cost goes to the innermost frame of its inline chain
(addr2line -i) that is neither the Rust standard library nor a closure-less
generic helper: nvme-core/src/* -> driver, nvme-model/src/* -> model (the
measured loop should have none: its I/O queues bypass the model), the
BenchDoorbell / FastQueue / FastSq code in benches/overhead.rs -> fake
controller, other overhead.rs code -> bench loop. Standard-library code (ptr::write, Option::take, Vec::push,
...) is charged to the nearest enclosing project frame.
"""
import re
import subprocess
import sys
from collections import defaultdict

binary, profile, ios = sys.argv[1], sys.argv[2], int(sys.argv[3])

cost = defaultdict(int)
in_call = False
for line in open(profile):
    line = line.rstrip("\n")
    if line.startswith("calls="):
        in_call = True  # the next cost line is the call's inclusive cost
        continue
    m = re.match(r"^(0x[0-9a-f]+) (\d+)$", line)
    if m:
        if in_call:
            in_call = False
            continue
        cost[int(m.group(1), 16)] += int(m.group(2))

addrs = sorted(cost)
# addr2line -i prints, per address, (function, file:line) pairs for every
# inline level; a separator is needed to know where one address ends.
out = subprocess.run(
    ["addr2line", "-i", "-f", "-C", "-a", "-e", binary] + [hex(a) for a in addrs],
    capture_output=True, text=True, check=True,
).stdout.splitlines()
chains = {}
cur = None
i = 0
while i < len(out):
    if out[i].startswith("0x"):
        cur = int(out[i], 16)
        chains[cur] = []
        i += 1
        continue
    chains[cur].append((out[i], out[i + 1]))
    i += 2

FAKE = ("BenchDoorbell", "FastQueue", "FastSq")


def classify(chain):
    for fn, loc in chain:  # innermost first
        if "/nvme-core/src/" in loc:
            return "driver (nvme-core/src)"
        if "/nvme-model/src/" in loc:
            return "model (nvme-model/src)"
        if "/benches/overhead.rs" in loc:
            if any(k in fn for k in FAKE):
                return "fake controller (bench)"
            return "bench loop (bench)"
    # No line information in the project: go by the outermost function name.
    if chain and chain[-1][0].startswith("nvme_core::"):
        return "driver (nvme-core/src)"
    if chain and chain[-1][0].startswith("nvme_model::"):
        return "model (nvme-model/src)"
    if chain and any(k in chain[-1][0] for k in FAKE):
        return "fake controller (bench)"
    if chain and chain[-1][0].startswith("overhead::"):
        return "bench loop (bench)"
    return "other"


by = defaultdict(int)
by_file = defaultdict(int)
others = defaultdict(int)
by_entry = defaultdict(int)
for a, c in cost.items():
    ch = chains.get(a, [])
    k = classify(ch)
    by[k] += c
    if k.startswith("driver"):
        entry = "?"
        for fn, loc in reversed(ch):  # outermost first
            m = re.match(r"nvme_core::queue_pair::.*IoQueuePair<H>>?::(\w+)", fn)
            if m:
                entry = m.group(1)
                break
        by_entry[entry] += c
    if k == "other":
        others[ch[0] if ch else ("?", "?")] += c
    for fn, loc in ch if k.startswith("driver") else []:
        if "/nvme-core/src/" in loc:
            by_file[loc.split("/nvme-core/src/")[1].split(":")[0]] += c
            break

total = sum(cost.values())
print(f"total: {total} Ir over {ios} I/Os = {total / ios:.1f} Ir/IO")
for k, v in sorted(by.items(), key=lambda kv: -kv[1]):
    print(f"  {k:<28} {v / ios:7.1f} Ir/IO  {100 * v / total:5.1f}%")
print("driver by source file (innermost nvme-core frame):")
for k, v in sorted(by_file.items(), key=lambda kv: -kv[1]):
    print(f"  {k:<28} {v / ios:7.1f} Ir/IO")
print("driver by entry point (outermost IoQueuePair method in the inline chain):")
for k, v in sorted(by_entry.items(), key=lambda kv: -kv[1]):
    print(f"  {k:<28} {v / ios:7.1f} Ir/IO")
print("other (no project frame in the inline chain), top entries:")
for (fn, loc), v in sorted(others.items(), key=lambda kv: -kv[1])[:5]:
    print(f"  {v / ios:7.1f} Ir/IO  {fn[:70]}  {loc.split('/')[-1]}")
