# SwarmGuard: the two commands a new user needs are `make demo` and `make test`.
# Both need root (the lab makes network namespaces, runs dockerd and edits iptables).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST := $(PY) -m pytest

.PHONY: help venv demo test test-bookworm test-soak test-current unit lab-up lab-down lab-status mutate

help:
	@echo "make demo        bring the lab up, run Scenario 1 (migrate) and 2 (scale) live, print timelines"
	@echo "make test        virtualenv + install, then unit, rule and lab tests on both lab flavours and an 8-minute soak (starts the lab)"
	@echo "make unit        unit and rule tests only (no lab)"
	@echo "make lab-up | lab-status | lab-down"
	@echo "make bench       end to end: 10 migrations and 3 scale cycles, baselines, overhead (lab; ~5 min)"
	@echo "make bench-detection   stress start -> webhook, stage by stage, 10 trials (lab)"
	@echo "make bench-receiver    webhook acks/s against a bare Flask endpoint, and a migration against one by hand (lab)"
	@echo "make bench-density     monitoring's cost as worker-1 fills with idle tasks (lab)"
	@echo "make bench-ground-truth   the receiver's detection-health reads at 500 services, 5,000 tasks: no lab needed"
	@echo "make bench-receiver-hardening   slow clients, a flood, acks/s: no lab needed"
	@echo "make bench-exporter-attack      scrapes and memory under 5,000 idle connections: no lab needed"
	@echo "make bench-scale  Prometheus's cost and detection against cluster size, per rules layout (no lab; ~15 min)"
	@echo "make bench-drain  taking worker-1 out: Swarm's drain against swarmguard drain, then undrain + rebalance (lab)"
	@echo "make soak        mixed services and seeded faults on a 4-worker lab, invariants checked throughout (SOAK_MINUTES=30, SOAK_SEED)"
	@echo "make mutate      mutation testing of the receiver's and exporter's logic (no lab; about an hour on 2 cores)"
	@echo "make mutate MUTATE_ONLY=receiver/storm.py   only those modules' mutants (comma-separated paths)"
	@echo "SWARMGUARD_LAB_FLAVOUR=current (default: Engine 28.5, Prometheus 3.5) or bookworm (Engine 20.10, Prometheus 2.42)"

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $@

venv: $(VENV)/.installed

lab-up: venv
	$(PY) -m tests.lab up

lab-status: venv
	$(PY) -m tests.lab status

lab-down: venv
	$(PY) -m tests.lab down

demo: lab-up
	$(PY) -m tests.lab.demo

# Both lab flavours, the default (current) last so the lab is left as `make demo` wants
# it. Each lab is brought up first so its progress is visible and a lab that cannot
# start fails the run at once; the session fixture then reuses it. A lab of the other
# flavour is taken down first (one lab, one flavour).
test: test-bookworm test-soak test-current

# bookworm (Engine 20.10, Prometheus 2.42, Alertmanager 0.25): unit and rule tests, and
# the compatibility subset of the lab tests (detection, racing receivers, Scenario 1).
test-bookworm: venv
	$(PY) -m tests.lab down
	SWARMGUARD_LAB_FLAVOUR=bookworm $(PY) -m tests.lab up
	SWARMGUARD_LAB_FLAVOUR=bookworm $(PYTEST) -v -m "not lab or compat" tests

# The soak's 8-minute form on a 4-worker `current` lab (`make soak` below). CI is a gate
# that must say the same of the same code: one schedule every run (seed 4: the receiver
# stopped by SIGTERM during an action, then the manager's detection Prometheus down 30 s);
# `make soak` draws a new schedule each run for people.
CI_SOAK_SEED := 4
test-soak: venv
	$(MAKE) soak SOAK_MINUTES=8 SOAK_SEED=$(CI_SOAK_SEED)

# current (Engine 28.5, Prometheus 3.5, Alertmanager 0.33): the whole suite.
test-current: venv
	@$(PY) -m tests.lab fits || $(PY) -m tests.lab down
	$(PY) -m tests.lab up
	$(PYTEST) -v --durations=10 tests

unit: venv
	$(PYTEST) -v -m "not lab" tests

# Mutation testing, no lab: mutmut mutates the modules listed in pyproject.toml
# ([tool.mutmut]) and runs their spec files against each mutant; prints progress, a score
# per module, and writes artifacts/mutate.json. A fresh run each time, at low CPU
# priority; MUTATE_JOBS (default 2) mutants at once. MUTATE_ONLY=receiver/storm.py (paths
# from that list, comma-separated) tests and scores only those modules' mutants.
$(VENV)/.mutate-installed: pyproject.toml $(VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[test,mutate]'
	@touch $@

mutate: $(VENV)/.mutate-installed
	nice -n 19 $(PY) -m tests.mutate

.PHONY: bench-detection
bench-detection: lab-up
	$(PY) -m tests.bench.detection

.PHONY: bench-receiver
bench-receiver: lab-up
	@command -v wrk >/dev/null || apt-get install -y -qq wrk
	$(PY) -m tests.bench.receiver

# No lab: the receiver under gunicorn on loopback, dry run, against a stand-in Docker.
.PHONY: bench-receiver-hardening
bench-receiver-hardening: venv
	@command -v wrk >/dev/null || apt-get install -y -qq wrk
	$(PY) -m tests.bench.receiver_hardening

# No lab: the exporter on loopback against a fake node, under idle connections.
.PHONY: bench-exporter-attack
bench-exporter-attack: venv
	$(PY) -m tests.bench.exporter_attack

# No lab: Prometheus and Alertmanager from the lab's `current` root filesystem (built by
# `make lab-up` once) against a fake cluster on loopback, up to 10,000 tasks on 50 nodes,
# in each layout of the rules; SCALE_ARGS=--quick for a smoke run.
.PHONY: bench-scale
bench-scale: venv
	$(PY) -m tests.bench.scale $(SCALE_ARGS)

# Mixed services and a seeded fault schedule on a bigger lab (`current` flavour), with
# SwarmGuard's invariants checked the whole time (tests/soak/); writes artifacts/soak.json
# and artifacts/soak.png, and fails when an invariant did not hold. A lab of another
# size or flavour is taken down first (one lab, one size).
SOAK_MINUTES ?= 30
SOAK_SEED ?=
SOAK_WORKERS ?= 4
SOAK_LAB := SWARMGUARD_LAB_FLAVOUR=current SWARMGUARD_LAB_WORKERS=$(SOAK_WORKERS)
.PHONY: soak
soak: venv
	@$(SOAK_LAB) $(PY) -m tests.lab fits || $(PY) -m tests.lab down
	$(SOAK_LAB) $(PY) -m tests.lab up
	$(SOAK_LAB) SOAK_MINUTES=$(SOAK_MINUTES) SOAK_SEED=$(SOAK_SEED) $(PY) -m tests.soak

.PHONY: bench
bench: lab-up
	$(PY) -m tests.bench.end_to_end

# Maintenance of a node: Swarm's drain against `swarmguard drain` (four single-replica
# services on worker-1, one a slow starter), then undrain and rebalance.
.PHONY: bench-drain
bench-drain: lab-up
	$(PY) -m tests.bench.drain

# Monitoring cost against containers per node (idle tasks in steps on worker-1).
.PHONY: bench-density
bench-density: lab-up
	$(PY) -m tests.bench.density

# Unit benchmark, no lab: the receiver's ground truth (detection health) with 500 services
# and 5,000 tasks against a fake Docker API; scrape and refresh times.
.PHONY: bench-ground-truth
bench-ground-truth: venv
	$(PY) -m tests.bench.ground_truth
