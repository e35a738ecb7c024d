"""`python -m synthetic` is the same as `ltceval synth`."""
import sys

from ltceval.cli import main

sys.exit(main(["synth", *sys.argv[1:]]))
