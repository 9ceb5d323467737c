"""The entry point: `gunicorn microblog:app`, and `flask init-db` (FLASK_APP=microblog.py)."""
from app import app, db

__all__ = ["app", "db"]
