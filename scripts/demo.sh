#!/bin/bash
# The demo: run the busybox base image in the foreground, then a web server in the
# background, and show it answering. Usage: demo.sh BERTH PORT
set -euo pipefail
berth=$1 port=$2
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step berth images
"$berth" images
step berth run --rm base:latest echo hi
"$berth" run --rm base:latest echo hi
"$berth" rm -f web >/dev/null 2>&1 || true
step berth run --name web -d -p "$port:5000" -e GREETING=hi -w /srv -u 1000:1000 --memory 64m base:latest httpd -f -p 5000 -h /var/www
"$berth" run --name web -d -p "$port:5000" -e GREETING=hi -w /srv -u 1000:1000 --memory 64m base:latest httpd -f -p 5000 -h /var/www
step berth ps
"$berth" ps
step "curl http://127.0.0.1:$port/"
for _ in $(seq 50); do
    if out=$(curl -fsS "http://127.0.0.1:$port/" 2>/dev/null); then break; fi
    sleep 0.1
done
echo "${out:?the web server did not answer}"
step berth exec web ps
"$berth" exec web ps
step berth port web
"$berth" port web
echo
echo "The web container keeps running. Stop and remove it with: $berth rm -f web   (or: make demo-stop)"
