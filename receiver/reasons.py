"""Why an alert was not acted on, and how an action ended: every value, defined once.

Skip reasons are the `reason` label of swarmguard_alerts_skipped_total and the `reason` of
skip events; results are the `result` label of swarmguard_actions_total and of outcome
events (docs/contract.md, "Skip reasons and action results", explains each; docs/runbook.md
what to do).
"""
from __future__ import annotations

# -- skip reasons ------------------------------------------------------------------------
# Decided on the alert and the cluster (decisions.py).
STALE = "stale"  # no longer true of the cluster, or older than the last action
NOT_OPTED_IN = "not_opted_in"
COOLDOWN = "cooldown"
IN_PROGRESS = "in_progress"  # an action on the service runs, or Swarm's own update does
AT_LIMIT = "at_limit"  # at the service's replica bound
NO_ELIGIBLE_NODE = "no_eligible_node"  # no node could take it, or every one is hot
UNSUPPORTED = "unsupported"  # a global or job service
BAD_LABEL = "bad_label"  # a swarmguard.* label SwarmGuard cannot read
BUDGET = "budget"  # over a storm budget: judged again when Alertmanager resends it
STATEFUL = "stateful"  # its tasks keep data on their node (safety.py)
UNSAFE = "unsafe"  # the move would be an outage: one task, no health check (safety.py)
FUTILE = "futile"  # the last move did not help: the heat is the task's own (futile.py)
# Given by the dispatcher before deciding (worker.py).
DUPLICATE = "duplicate"  # the same alert instance was handled within seconds
SUPERSEDED = "superseded"  # a newer alert for the service replaced this waiting one
INTERNAL_ERROR = "internal_error"  # a bug: logged with its traceback
# Given by the actuator (actuator.py).
DOCKER_ERROR = "docker_error"  # Docker could not even be read, after retries
UNCONFIRMED = "unconfirmed"  # no Prometheus asked fires this alert (confirmation.py)
PROMETHEUS_UNREACHABLE = "prometheus_unreachable"  # Prometheus could not say: nothing acts

# -- action results ----------------------------------------------------------------------
SUCCESS = "success"
DRY_RUN = "dry_run"  # decided, logged, nothing written
FAILED = "failed"
TIMEOUT = "timeout"  # a migration not settled within SWARMGUARD_MIGRATION_TIMEOUT
ROLLED_BACK = "rolled_back"  # Swarm rolled the update back
# Announced, not made: an attempt failed without writing, and the alert, decided again,
# is skipped (the skip's reason and why in the outcome's reason).
WITHDRAWN = "withdrawn"
SKIPPED = "skipped"  # not an action: the decision was a skip

# -- work dropped at shutdown (swarmguard_work_dropped_total, "dropped" events) --------
DROPPED_WAITING = "shutdown_waiting"  # acknowledged, not started
# Running at the shutdown deadline, nothing written to Docker yet (and nothing ever will be).
DROPPED_UNFINISHED = "shutdown_unfinished"
# Running at the shutdown deadline past its first write (its `decision act`): its end
# goes unrecorded; Swarm completes or rolls back an update itself.
DROPPED_UNWATCHED = "shutdown_unwatched"

# -- every value of each kind, in the order the help texts and docs/contract.md list them --
SKIP_REASONS = (STALE, NOT_OPTED_IN, COOLDOWN, IN_PROGRESS, AT_LIMIT, NO_ELIGIBLE_NODE,
                BUDGET, UNSUPPORTED, STATEFUL, UNSAFE, BAD_LABEL, FUTILE, DUPLICATE,
                SUPERSEDED, INTERNAL_ERROR, DOCKER_ERROR, UNCONFIRMED, PROMETHEUS_UNREACHABLE)
ACTION_RESULTS = (SUCCESS, DRY_RUN, FAILED, TIMEOUT, ROLLED_BACK, WITHDRAWN)
# The results that mean SwarmGuard could not act (SwarmGuardCannotAct{reason="actions_failing"}).
FAILED_RESULTS = (FAILED, TIMEOUT, ROLLED_BACK)
DROPPED_REASONS = (DROPPED_WAITING, DROPPED_UNFINISHED, DROPPED_UNWATCHED)
