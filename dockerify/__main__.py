import sys

from dockerify.cli import main

sys.exit(main())
