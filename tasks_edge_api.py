"""Edge side, multi-task mode: a queue of inference tasks against one cloud.

  python tasks_edge_api.py [-i IP] [-p PORT] [-d cpu|cuda] [--num-tasks N --seed S | --tasks a,b,c]
                           [--interval S] [--bandwidth MBPS | --bandwidth-trace FILE.csv]
                           [--rtt MS] [--edge-slowdown F] [--local-cloud] [--report PATH] [--timeout S]

The uplink is re-measured every --interval seconds in the background (against the cloud's
bandwidth monitor on PORT + 1); each task picks its cut from the latest measurement.
"""
import sys

from net.apps.tasks_edge import main

if __name__ == "__main__":
    sys.exit(main(description=__doc__))
