"""gunicorn settings for the receiver:

    gunicorn -c receiver/gunicorn.conf.py 'receiver.app:create_app()'

ONE worker process with threads, on purpose: the per-service in-flight guard, the background
action threads and the Prometheus counters live in the process. Several workers would each
have their own guard (two could act on one service at once; Swarm's compare-and-swap would
still stop the second update, but as a conflict, not a clean "already in progress") and
their own counters (/metrics would show whichever worker answered). Threads are plenty: a
webhook is parsed and acknowledged in about a millisecond; the slow work runs in the
Dispatcher's own threads, not in request threads.

The worker is gthread with requests read whole in its event loop before a thread takes
them (receiver/serving.py): slow clients cannot hold the threads. On SIGTERM the app stops
taking work at once (503, Alertmanager resends) and, after the last request, gives the
work in progress SWARMGUARD_SHUTDOWN_DEADLINE seconds (receiver/app.py finish_work).
"""
import signal

from receiver.config import ConfigError, load_server_settings
from receiver.serving import worker_class as worker_class_for_this_gunicorn

# The receiver's own settings (receiver/config.py, ServerSettings): the same variables and
# YAML file as the app's, so a bad value stops gunicorn here, before it listens, with a
# sentence naming the variable (SystemExit: gunicorn would print a traceback for anything
# else).
try:
    SETTINGS = load_server_settings()
except ConfigError as error:
    raise SystemExit(f"receiver: {error}") from None

bind = SETTINGS.bind
workers = 1
worker_class = worker_class_for_this_gunicorn()
threads = SETTINGS.threads
# Open connections, idle and slow ones included. Past it the worker closes the one that has
# waited longest without sending a whole request (receiver/serving.py), so a new client
# always gets in; each costs a socket and a few KiB (the bytes being read are capped in
# all by serving.PREREAD_BUDGET_BYTES). docs/contract.md, "Receiver HTTP API".
worker_connections = 1000
# Not preloaded: the app (and its thread pool) is built in the worker that serves it.
preload_app = False
# A request never waits for Docker, so a long timeout would only hide a hung worker.
timeout = 30
# On SIGTERM: the in-flight requests end in milliseconds, then the work in progress gets
# the shutdown deadline. gunicorn's arbiter kills the worker at graceful_timeout, so it is
# the deadline plus a margin; stack.yml's stop_grace_period is larger again, so that
# Docker's SIGKILL comes last.
graceful_timeout = int(SETTINGS.shutdown_deadline) + 5
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = SETTINGS.log_level.lower()
# gunicorn >= 24 opens a control socket at one fixed path per user; two receivers on one
# machine (the lab's race test) would fight over it, and nothing here uses it. Older
# gunicorn ignores the unknown setting.
control_socket_disable = True


def post_fork(server, worker):
    """The worker's log output, before it builds the app."""
    from receiver.app import configure_logging
    configure_logging()


def post_worker_init(worker):
    """Stop taking work the moment SIGTERM arrives; gunicorn's own handler (which ends the
    serving loop) still runs."""
    from receiver.app import stop_taking_work
    app = worker.wsgi
    if "swarmguard" not in getattr(app, "extensions", {}):
        return  # another app under these settings (the benchmarks' bare Flask endpoint)
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        stop_taking_work(app)
        if callable(previous):
            previous(signum, frame)
    signal.signal(signal.SIGTERM, on_sigterm)


def worker_exit(server, worker):
    """After the last request: finish what is in progress, within the deadline."""
    app = getattr(worker, "wsgi", None)
    if "swarmguard" in getattr(app, "extensions", {}):
        from receiver.app import finish_work
        finish_work(app)
