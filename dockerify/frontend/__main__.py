import sys

from dockerify.frontend.main import main

sys.exit(main(sys.argv[1:]))
