import sys

from salient_pipes.cli import main

sys.exit(main())
