#!/bin/sh
# Starts the microblog: creates the database's tables (retrying while the database
# cannot be opened, e.g. its volume is not there yet), then serves on port 5000.
# shellcheck disable=SC1091
. venv/bin/activate
export FLASK_APP="${FLASK_APP:-microblog.py}"
while true; do
    flask init-db && break
    echo "init-db failed, retrying in 5 secs..."
    sleep 5
done
exec gunicorn -b :5000 --access-logfile - --error-logfile - microblog:app
