"""Cloud side, single-task mode: serve collaborative inference requests.

  python cloud_api.py [-i IP] [-p PORT] [-d cpu|cuda] [--weights MODEL=FILE ...]

Binds 127.0.0.1:9999 by default; the cloud also answers bandwidth probes on this port.
"""
import sys

from net.apps.cloud import main

if __name__ == "__main__":
    sys.exit(main(description=__doc__))
