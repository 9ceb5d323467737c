"""SQLite through the standard library: one connection per request."""
import sqlite3
from contextlib import closing

import click
from flask import g

from app import app

SCHEMA = """
CREATE TABLE IF NOT EXISTS post (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    author TEXT NOT NULL,
    body TEXT NOT NULL,
    created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%S', 'now'))
);
"""


def get_db():
    if "db" not in g:
        g.db = sqlite3.connect(app.config["DATABASE"], timeout=10)
        g.db.row_factory = sqlite3.Row
    return g.db


@app.teardown_appcontext
def close_db(_exc=None):
    db = g.pop("db", None)
    if db is not None:
        db.close()


def init_db():
    """Creates the tables if they are missing (safe to run at every start)."""
    with closing(sqlite3.connect(app.config["DATABASE"], timeout=10)) as db:
        db.executescript(SCHEMA)


def add_post(author, body):
    db = get_db()
    with db:
        db.execute("INSERT INTO post (author, body) VALUES (?, ?)", (author, body))


def recent_posts(limit):
    return get_db().execute(
        "SELECT author, body, created FROM post ORDER BY id DESC LIMIT ?", (limit,)
    ).fetchall()


@app.cli.command("init-db")
def init_db_command():
    """Create the database's tables."""
    try:
        init_db()
    except sqlite3.Error as e:
        raise click.ClickException(f"database {app.config['DATABASE']}: {e}")
    click.echo(f"database ready: {app.config['DATABASE']}")
