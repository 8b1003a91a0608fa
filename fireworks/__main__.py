import sys

from fireworks.cli import main

sys.exit(main())
