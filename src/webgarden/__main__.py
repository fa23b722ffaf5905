from webgarden.cli.main import main

raise SystemExit(main())
