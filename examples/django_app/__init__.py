"""authrelay with Django: a one-settings project (no manage.py needed).

Run it from the project root, against the test identity provider::

    authrelay idp                                   # in one terminal
    python -m examples.django_app                   # in another (WSGI, werkzeug)

or ``uvicorn examples.django_app.asgi:application`` for ASGI; then open
http://127.0.0.1:8000/me (sign in as alice). ``examples/authrelay.toml``'s ``${VAR}``s
default to ``authrelay idp``'s values (see ``examples/local_provider.py``).
"""
