from __future__ import annotations

from wildchat_dag.loggen.cli import main

raise SystemExit(main())
