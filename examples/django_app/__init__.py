"""authrelay with Django: a one-settings project (no manage.py needed).

Run under ASGI: ``uvicorn examples.django_app.asgi:application``; under WSGI:
``python -m examples.django_app`` (werkzeug's development server).
"""
