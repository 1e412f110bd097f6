"""The `swarmguard` command: drain, undrain, rebalance and status through the receiver's
maintenance API (cli.py: flags and commands; client.py: the HTTP calls; follow.py:
watching a drain or rebalance through GET /status; render.py: the text, pure).

Imports neither the receiver nor Docker: it talks to the receiver over HTTP only.
"""
