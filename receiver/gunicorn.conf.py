"""gunicorn settings for the receiver:

    gunicorn -c receiver/gunicorn.conf.py 'receiver.app:create_app()'

ONE worker process with threads, on purpose: the per-service in-flight guard, the background
action threads and the Prometheus counters live in the process. Several workers would each
have their own guard (two could act on one service at once; Swarm's compare-and-swap would
still stop the second update, but as a conflict, not a clean "already in progress") and
their own counters (/metrics would show whichever worker answered). Threads are plenty: a
webhook is parsed and acknowledged in about a millisecond; the slow work runs in the
Dispatcher's own threads, not in request threads.
"""
import os

bind = os.environ.get("SWARMGUARD_BIND", "0.0.0.0:8000")
workers = 1
worker_class = "gthread"
threads = int(os.environ.get("SWARMGUARD_THREADS", "8"))
# Not preloaded: the app (and its thread pool) is built in the worker that serves it.
preload_app = False
# A request never waits for Docker, so a long timeout would only hide a hung worker.
timeout = 30
# On SIGTERM, give an in-flight update call time to return; Swarm finishes the rolling
# update itself whatever happens to the receiver.
graceful_timeout = 30
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("SWARMGUARD_LOG_LEVEL", "info").lower()
# gunicorn >= 24 opens a control socket at one fixed path per user; two receivers on one
# machine (the lab's race test) would fight over it, and nothing here uses it. Older
# gunicorn ignores the unknown setting.
control_socket_disable = True
