#!/usr/bin/env python3
"""Per-instruction trace of the overhead bench's measured loop: every
instruction executed at least once per I/O, in address order, with its
count per I/O and its inline chain (innermost first).

usage: trace.py BINARY CALLGRIND_OUT IOS

The profile must come from
  valgrind --tool=callgrind --toggle-collect='overhead::io_loop' \
    --dump-instr=yes --dump-line=no --compress-strings=no --compress-pos=no ...
"""
import re
import subprocess
import sys
from collections import defaultdict
binary, profile, ios = sys.argv[1], sys.argv[2], int(sys.argv[3])
cost=defaultdict(int); in_call=False
for line in open(profile):
    line=line.rstrip("\n")
    if line.startswith("calls="): in_call=True; continue
    m=re.match(r"^(0x[0-9a-f]+) (\d+)$", line)
    if m:
        if in_call: in_call=False; continue
        cost[int(m.group(1),16)]+=int(m.group(2))
hot=sorted(a for a,c in cost.items() if c>=ios*0.5)
lo,hi=min(hot),max(hot)
dis=subprocess.run(["objdump","-d","--no-show-raw-insn","-C",f"--start-address={lo}",f"--stop-address={hi+16}",binary],capture_output=True,text=True).stdout
src=subprocess.run(["addr2line","-i","-C","-a","-e",binary]+[hex(a) for a in hot],capture_output=True,text=True).stdout.splitlines()
where={}; cur=None
for l in src:
    if l.startswith("0x"): cur=int(l,16); where[cur]=[]
    else: where[cur].append(l.split('/')[-1])
for l in dis.splitlines():
    m=re.match(r"^\s*([0-9a-f]+):\s*(.*)$",l)
    if not m: continue
    a=int(m.group(1),16)
    if a in cost and cost[a]>=ios*0.5:
        w=where.get(a,[])
        print(f"{cost[a]/ios:5.2f} {m.group(2)[:60]:60s} {' < '.join(w[:3])}")
