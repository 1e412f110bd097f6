"""One way to configure every SwarmGuard component: a frozen dataclass whose fields are
read from prefixed environment variables (docs/contract.md, "Environment variables";
the rules are in swarmguard_config/loading.py).

Shared by receiver/, exporter/ and stress/; each image copies this package beside its own
and none the others'. So it is also the one home of what two components must read alike:
the service label that opts a service in (swarmguard_config/opt_in.py), which the receiver
and the exporter both read; what a gunicorn bind address may be
(swarmguard_config/listening.py), which the receiver and the stress app both check; RFC 3339
times (swarmguard_config/rfc3339.py), Alertmanager's for the receiver and Docker's for the
exporter; and where a process's cgroups are (swarmguard_config/cgroup_paths.py), a task's
for the exporter and its own for the stress app.
"""
from swarmguard_config.loading import (
    NOT_FROM_ENV,
    NOT_NEGATIVE,
    POSITIVE,
    ConfigError,
    Layer,
    env_name,
    load,
)
from swarmguard_config.listening import listen_address

__all__ = ["ConfigError", "Layer", "NOT_FROM_ENV", "NOT_NEGATIVE", "POSITIVE", "env_name",
           "listen_address", "load"]
