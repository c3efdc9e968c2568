#!/usr/bin/env bash
# The fault-injection suite (wildchat_dag_tests/test_faults_*.py), run ROUNDS times in a row
# (default 20) while LOAD busy-loop processes (default: one per core) compete for the CPU.
# Stops at the first failing round. A test that depends on timing or an idle machine shows here
# before it fails CI at random.
#   bash scripts/fault-soak.sh            # 20 rounds, one busy loop per core
#   ROUNDS=5 LOAD=4 bash scripts/fault-soak.sh -x
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh
rounds="${ROUNDS:-20}"
load="${LOAD:-$(nproc)}"

load_pids=()
stop_load() {
  for pid in "${load_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_load EXIT INT TERM
for _ in $(seq 1 "$load"); do
  # A plain busy loop: no I/O, so it competes for CPU only.
  python -c "while True: pass" &
  load_pids+=("$!")
done

shopt -s nullglob
suite=(wildchat_dag_tests/test_faults_*.py)
echo "fault-injection suite: ${#suite[@]} files, ${rounds} rounds, ${load} busy loops on $(nproc) cores"
printf '| round | result | wall s | CPU s (tests) |\n|---|---|---|---|\n'
failed=0
for round in $(seq 1 "$rounds"); do
  start=$(date +%s.%N)
  cpu_before=$(awk '{print $14+$15+$16+$17}' /proc/$$/stat)
  if python -m pytest -q -p no:cacheprovider "${suite[@]}" "$@" >"/tmp/fault-soak-$round.log" 2>&1; then
    result=$(tail -1 "/tmp/fault-soak-$round.log" | sed 's/=//g; s/^ *//; s/ *$//')
  else
    result="FAILED: $(tail -1 "/tmp/fault-soak-$round.log" | sed 's/=//g')"
    failed=1
  fi
  cpu_after=$(awk '{print $14+$15+$16+$17}' /proc/$$/stat)
  wall=$(python -c "print($(date +%s.%N) - $start)")
  cpu=$(python -c "print(($cpu_after - $cpu_before) / $(getconf CLK_TCK))")
  printf '| %d | %s | %.1f | %.1f |\n' "$round" "$result" "$wall" "$cpu"
  if [ "$failed" -ne 0 ]; then
    echo "round $round failed; its log: /tmp/fault-soak-$round.log" >&2
    exit 1
  fi
done
echo "all ${rounds} rounds passed"
