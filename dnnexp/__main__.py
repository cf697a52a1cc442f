from dnnexp.cli import main

raise SystemExit(main())
