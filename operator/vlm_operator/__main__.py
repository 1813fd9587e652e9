"""`python -m vlm_operator` is `vlmctl`."""

from vlm_operator.cli import main

raise SystemExit(main())
