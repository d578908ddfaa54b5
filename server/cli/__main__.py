"""`python -m meshfed.server.cli`: the same entry point as the `meshfed` script."""

import sys

from meshfed.server.cli.main import main

sys.exit(main())
