"""Settings from the environment.

SECRET_KEY signs the session cookie (flash messages and the form's CSRF token).
DATABASE_URL names the SQLite file, either as a URL -- sqlite:////abs/path/app.db
(four slashes: absolute), sqlite:///rel/app.db (three: relative to this directory) --
or as a plain path. The default is app.db next to this file.
"""
import os

basedir = os.path.abspath(os.path.dirname(__file__))


def sqlite_path(url):
    """The file a DATABASE_URL names."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
    elif "://" in url:
        raise ValueError(f"DATABASE_URL: only sqlite:/// URLs or plain paths, not {url!r}")
    else:
        path = url
    return path if os.path.isabs(path) else os.path.join(basedir, path)


class Config:
    SECRET_KEY = os.environ.get("SECRET_KEY") or "you-will-never-guess"
    DATABASE = sqlite_path(
        os.environ.get("DATABASE_URL") or "sqlite:///" + os.path.join(basedir, "app.db")
    )
    POSTS_PER_PAGE = int(os.environ.get("POSTS_PER_PAGE") or 50)
