import sys

from fometa.cli import main

sys.exit(main())
