"""The microblog Flask app: a list of posts and a form to add one, kept in SQLite."""
from flask import Flask

from config import Config

app = Flask(__name__)
app.config.from_object(Config)

from app import db, routes  # noqa: E402,F401  (they register on `app`)
