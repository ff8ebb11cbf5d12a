import sys

from circuitd.cli import main

sys.exit(main())
