"""`python -m seq2seq`, the form `torchrun -m seq2seq train ...` starts each process with."""

import sys

from seq2seq.cli import main

sys.exit(main())
