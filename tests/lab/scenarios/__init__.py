"""SwarmGuard's two scenarios, scripted once: the demo prints them, the lab tests assert
on them, the end-to-end benchmark repeats and aggregates them. results.py holds what a
run returns (pure); run.py drives the lab."""
