"""gunicorn settings for the stress app:

    gunicorn -c stress/gunicorn.conf.py 'stress.app:create_app()'

One worker with threads: which stress runs is state held by the worker process, so
/stress/stop and /stress/status must reach the same process that started it.
"""

import os
import time

from stress.config import ConfigError, ServingConfig

# Read through the app's configuration loader (stress/config.py), so that a bad value stops
# gunicorn here, before it listens, with a sentence naming the variable (SystemExit:
# gunicorn would print a traceback for anything else).
try:
    SERVING = ServingConfig.from_env()
except ConfigError as error:
    raise SystemExit(f"stress: {error}") from None

bind = SERVING.address
workers = 1
worker_class = "gthread"
threads = SERVING.threads
timeout = 30
# Docker's stop grace period is 10 s: finish in-flight requests well within it.
graceful_timeout = 5
keepalive = 5
# The heartbeat file on tmpfs: a container's overlay /tmp can stall the worker's
# heartbeat under disk pressure and get it killed.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
errorlog = "-"
loglevel = SERVING.log_level
accesslog = SERVING.access_log
# Recent gunicorn opens a management socket under $HOME by default; this app needs none,
# and as a non-root user with HOME=/ it could only fail. (Older versions ignore this.)
control_socket_disable = True


def on_starting(server):
    # Before the master binds the port: a slow starter (STRESS_STARTUP_DELAY_SECONDS,
    # stress/config.py) refuses connections until its start-up is over. Read through the
    # app's configuration loader, so a bad value stops the app here as it would later.
    from stress.config import StressConfig

    delay = StressConfig.from_env().startup_delay_s
    if delay > 0:
        server.log.info("Starting up: the port opens in %.1f s (STRESS_STARTUP_DELAY_SECONDS)", delay)
        time.sleep(delay)


def worker_exit(server, worker):
    # SIGTERM (docker stop, service update, scale down) ends the worker gracefully;
    # take every running stress down with it instead of leaving it to its deadline.
    from stress.runner import stop_all

    stop_all()
