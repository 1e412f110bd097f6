"""`python -m exporter`: see exporter.main."""

from exporter.main import main

raise SystemExit(main())
