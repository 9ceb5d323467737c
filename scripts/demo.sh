#!/bin/bash
# The demo: build examples/microblog (a Flask app) with `berth build` on the Debian
# Python base, run it in the background with its port published, and show it answering
# a page view and a form post. Usage: demo.sh BERTH PORT
set -euo pipefail
berth=$1 port=$2
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
cd "$(dirname "$0")/.."

step berth build -t microblog:latest examples/microblog
"$berth" build -t microblog:latest examples/microblog
"$berth" rm -f microblog >/dev/null 2>&1 || true
secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
step berth run --name microblog -d -p "$port:5000" --rm -e SECRET_KEY=... microblog:latest
"$berth" run --name microblog -d -p "$port:5000" --rm -e SECRET_KEY="$secret" microblog:latest
step berth ps
"$berth" ps
url="http://127.0.0.1:$port/"
jar=$(mktemp)
trap 'rm -f "$jar"' EXIT
step "curl $url"
for _ in $(seq 150); do
    if page=$(curl -fsS -c "$jar" "$url" 2>/dev/null); then break; fi
    sleep 0.2
done
echo "${page:?the microblog did not answer; see: $berth logs microblog}" | grep -E '<title>|<h1>|No posts|class="post"' || true
step "curl -d author=berth -d body='Hello from a berth container' $url"
token=$(grep -o 'name="csrf" value="[^"]*"' <<<"$page" | sed 's/.*value="//; s/"$//')
curl -fsS -b "$jar" -c "$jar" -o /dev/null -d "csrf=$token" -d author=berth \
    --data-urlencode "body=Hello from a berth container" "$url"
curl -fsS -b "$jar" "$url" | grep -A2 'class="post"' | head -6
step berth logs --tail 3 microblog
"$berth" logs --tail 3 microblog
echo
echo "The microblog keeps running at $url."
echo "Stop it with: $berth stop microblog   (it was run with --rm, so that removes it too; or: make demo-stop)"
