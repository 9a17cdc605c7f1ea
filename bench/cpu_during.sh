#!/usr/bin/env bash
# CPU seconds each thread of a process (and all nginx workers together) used
# while a command ran: steadier than rates on a shared machine, whose speed
# drifts by up to 2x within minutes. Divide by the requests or cycles the
# command reports to get CPU per request.
#
#   bash bench/cpu_during.sh "$(pgrep -f 'main.ts server')" deno task thrash -seconds 4
#   bash bench/cpu_during.sh "$(pgrep -f 'main.ts server')" wrk -t2 -c64 -d4s http://127.0.0.1:3000/x
set -euo pipefail
pid=$1
shift
hz=$(getconf CLK_TCK)

threads() {
  for t in /proc/"$pid"/task/*; do
    # comm may hold spaces ("V8 DefaultWorker"): fields after the ")" are fixed.
    printf '%s %s %s\n' "$(basename "$t")" "$(sed 's/.*) //' "$t/stat" | awk '{print $12 + $13}')" \
      "$(tr ' ' _ < "$t/comm")"
  done | sort
}

nginx_ticks() {
  local sum=0
  for p in $(pgrep -f "nginx: worker" || true); do
    sum=$((sum + $(sed 's/.*) //' /proc/"$p"/stat | awk '{print $12 + $13}')))
  done
  echo "$sum"
}

before=$(threads)
n0=$(nginx_ticks)
"$@"
n1=$(nginx_ticks)
after=$(threads)

echo "CPU seconds during the command:"
join <(echo "$before") <(echo "$after") |
  awk -v hz="$hz" '{ d = ($4 - $2) / hz; if (d > 0) printf "  %-20s %.2f\n", $3, d }'
awk -v hz="$hz" -v d="$((n1 - n0))" 'BEGIN { printf "  %-20s %.2f\n", "nginx workers", d / hz }'
