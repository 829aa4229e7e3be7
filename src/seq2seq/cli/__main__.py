"""`python -m seq2seq.cli`, the same as `seq2seq`."""

import sys

from seq2seq.cli import main

sys.exit(main())
