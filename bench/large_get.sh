#!/bin/bash
# A 1 GiB value: PUT through the master, GET straight from a volume, and GET
# as S3's GetObject through the master (-s3), with the master's memory growth.
#   bash bench/large_get.sh
ROOT=$(cd "$(dirname "$0")/.." && pwd)
port=5960
tmp=$(mktemp -d); chmod 755 $tmp
for i in 1 2 3; do PORT=$((port+i)) deno run -A "$ROOT/main.ts" volume $tmp/v$i >/dev/null 2>&1 & done
sleep 1.5
deno run -A --v8-flags=--max-semi-space-size=2 "$ROOT/main.ts" server -s3 -port $port -volumes 127.0.0.1:5961,127.0.0.1:5962,127.0.0.1:5963 -db $tmp/db >/dev/null 2>&1 &
sleep 2.5
pid=$(pgrep -f "main.ts server -s3 -port $port" | head -1)
head -c $((1024<<20)) /dev/urandom > $tmp/big
echo 5 > /proc/$pid/clear_refs; before=$(grep VmRSS /proc/$pid/status | awk '{print $2}')
t=$(date +%s.%N); curl -s -o /dev/null -w "PUT 1GiB %{http_code} " -T $tmp/big localhost:$port/b/big; t2=$(date +%s.%N)
peak=$(grep VmHWM /proc/$pid/status | awk '{print $2}')
echo "$(echo "$t2-$t"|bc)s growth=$(((peak-before)/1024))MiB"
loc=$(curl -s -o /dev/null -w "%{redirect_url}" localhost:$port/b/big)
t=$(date +%s.%N); curl -s -o /dev/null $loc; t2=$(date +%s.%N); echo "direct nginx GET: $(echo "$t2-$t"|bc)s"
echo 5 > /proc/$pid/clear_refs; before=$(grep VmRSS /proc/$pid/status | awk '{print $2}')
t=$(date +%s.%N); curl -s -o /dev/null -w "S3 GetObject %{http_code} " "localhost:$port/b/big?x-id=GetObject"; t2=$(date +%s.%N)
peak=$(grep VmHWM /proc/$pid/status | awk '{print $2}')
echo "$(echo "$t2-$t"|bc)s growth=$(((peak-before)/1024))MiB"
pkill -TERM -f "main.ts server -s3 -port $port"; sleep 1; pkill -f "main.ts volume $tmp"; rm -rf $tmp
