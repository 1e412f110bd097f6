"""The benchmark's yardstick: a Flask endpoint that only answers 200, served by gunicorn
with the receiver's own settings. The receiver's throughput is reported against it."""
from flask import Flask


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/alerts")
    def alerts():
        return "", 200

    return app
