import sys

from elsabro.cli.main import main

sys.exit(main())
