import secrets

from flask import abort, flash, redirect, render_template, request, session, url_for

from app import app
from app.db import add_post, recent_posts

MAX_AUTHOR = 64
MAX_BODY = 280


def csrf_token():
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(16)
    return session["csrf"]


app.jinja_env.globals["csrf_token"] = csrf_token


@app.route("/", methods=["GET", "POST"])
def index():
    if request.method == "POST":
        token = request.form.get("csrf", "")
        if not token or not secrets.compare_digest(token, session.get("csrf", "")):
            abort(400, "missing or stale form token: reload the page")
        author = request.form.get("author", "").strip()
        body = request.form.get("body", "").strip()
        if not author or not body:
            flash("Both a name and a post are needed.")
        elif len(author) > MAX_AUTHOR or len(body) > MAX_BODY:
            flash(f"Names are at most {MAX_AUTHOR} characters, posts {MAX_BODY}.")
        else:
            add_post(author, body)
            flash("Your post is live.")
            session["author"] = author
            return redirect(url_for("index"))
    posts = recent_posts(app.config["POSTS_PER_PAGE"])
    return render_template("index.html", posts=posts, author=session.get("author", ""))
