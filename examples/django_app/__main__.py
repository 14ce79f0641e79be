"""``python -m examples.django_app``: serve the example under WSGI on 127.0.0.1:8000."""

from __future__ import annotations

from werkzeug.serving import run_simple

from .wsgi import application

if __name__ == "__main__":
    run_simple("127.0.0.1", 8000, application, threaded=True)
