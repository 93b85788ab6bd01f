import sys

from BratsUNetLib.cli import main

sys.exit(main())
