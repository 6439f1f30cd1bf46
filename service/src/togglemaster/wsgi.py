"""WSGI entry point for gunicorn: `togglemaster.wsgi:app`.

The app is built in each worker after fork (no preload), so every worker owns its pool.
"""
from togglemaster.app import create_app

app = create_app()
