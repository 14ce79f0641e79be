"""``python -m examples.django_app [--port 8000]``: serve the example under WSGI."""

from __future__ import annotations

import argparse

from werkzeug.serving import run_simple

from .wsgi import application

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m examples.django_app")
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (8000)")
    run_simple("127.0.0.1", parser.parse_args().port, application, threaded=True)
