"""Edge side: one collaborative inference with a cloud.

  python edge_api.py [-i IP] [-p PORT] [-d cpu|cuda] -t MODEL [--bandwidth MBPS|3g|lte|wifi]
                     [--rtt MS] [--partition K] [--image FILE] [--local-cloud] [--json]
                     [--timeout S]

The cut is chosen from the latency predictors and the uplink (measured unless --bandwidth is
given); the edge runs units 1..K, the cloud the rest. `--local-cloud` runs the whole thing on
this machine.
"""
import sys

from net.apps.edge import main

if __name__ == "__main__":
    sys.exit(main(description=__doc__))
