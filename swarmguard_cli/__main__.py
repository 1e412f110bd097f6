"""`python -m swarmguard_cli`: see swarmguard_cli.cli."""

from swarmguard_cli.cli import main

raise SystemExit(main())
