"""`python -m circuitd.mockupstream [--port 0 ...]`, the same as `circuitd mock-upstream`."""

import sys

from circuitd.mockupstream.server import main

sys.exit(main())
