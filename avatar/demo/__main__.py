import sys

from avatar.demo.run import run

sys.exit(run())
