"""tasks_cloud_api.py's body: the cloud and the bandwidth monitor server in one process."""
from __future__ import annotations

import sys

from net.apps.cloud import main as cloud_main


def main(argv=None, description: str = "") -> int:
    return cloud_main(argv, description, with_monitor=True)


if __name__ == "__main__":
    sys.exit(main())
