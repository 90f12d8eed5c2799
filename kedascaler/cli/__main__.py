from kedascaler.cli.main import main

raise SystemExit(main())
