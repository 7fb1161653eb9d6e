from rke2fleet.cli import main

raise SystemExit(main())
