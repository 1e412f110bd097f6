"""make soak: mixed services and a seeded fault schedule on a bigger lab, with SwarmGuard's
invariants checked over the whole run (model.py: what is planned and what is observed;
plan.py: the services and the schedule; invariants.py: the checks; report.py: JSON and
PNG; run.py: the one part that drives the lab)."""
