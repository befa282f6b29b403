#!/bin/bash
# A/B timing of commands that write a new directory: fresh processes in rotating order (run r
# starts at command r), each into a directory that did not exist, removed and synced after.
# Wall, CPU (user+sys of the process tree) and peak RSS from /usr/bin/time; medians at the end.
#
#   bench/install/ab.sh RUNS NAME 'COMMAND with DIR' [NAME 'COMMAND' …]
#   e.g. bench/install/ab.sh 3 raw 'mkdir DIR && zstd -dc L.zst | tar -x -C DIR' \
#          cpm 'node bin/cpm.js rootfs init --from oci:LAYOUT:z --root DIR -q'
set -u
RUNS=$1
shift
names=()
cmds=()
while [ $# -ge 2 ]; do
  names+=("$1")
  cmds+=("$2")
  shift 2
done
out=$(mktemp)
dir=$(mktemp -u -d "${TMPDIR:-/tmp}/cpm-ab-XXXXXX")
n=${#names[@]}
for ((r = 0; r < RUNS; r++)); do
  for ((k = 0; k < n; k++)); do
    i=$(((k + r) % n))
    rm -rf "$dir" && sync
    /usr/bin/time -f "${names[$i]} %e %U %S %M" -a -o "$out" bash -c "${cmds[$i]//DIR/$dir}" \
      >/dev/null || echo "${names[$i]} failed" >&2
    tail -1 "$out"
  done
done
rm -rf "$dir" && sync
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    p = line.split()
    if len(p) == 5 and p[1][0].isdigit():
        runs[p[0]].append((float(p[1]), float(p[2]) + float(p[3]), int(p[4]) / 1024))
for name, v in runs.items():
    print(f"{name}: wall {statistics.median(x[0] for x in v):.2f} s, cpu "
          f"{statistics.median(x[1] for x in v):.2f} s, peak {max(x[2] for x in v):.0f} MB "
          f"(runs: {' '.join(f'{x[0]:.2f}' for x in v)})")
PY
rm -f "$out"
