"""Cloud side, multi-task mode: the inference server and the bandwidth monitor server together.

  python tasks_cloud_api.py [-i IP] [-p PORT] [-d cpu|cuda] [--monitor-port PORT]

The monitor listens on PORT + 1 by default; both run until Ctrl-C / SIGTERM.
"""
import sys

from net.apps.tasks_cloud import main

if __name__ == "__main__":
    sys.exit(main(description=__doc__))
