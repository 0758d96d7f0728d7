from watchsync.cli.main import main

raise SystemExit(main())
