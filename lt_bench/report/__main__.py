"""``python -m lt_bench.report DIR ...``"""

import sys

from lt_bench.report.cli import main

sys.exit(main())
