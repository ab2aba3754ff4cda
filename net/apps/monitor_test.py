"""Run the monitor server and client on loopback and print the measured uplink.

  python -m net.apps.monitor_test [--bandwidth MBPS|3g|lte|wifi] [--rtt MS]

Without --bandwidth the link is loopback itself; with it, the client shapes its uplink to that
rate (the emulation the edge uses), and the monitor should measure about that rate.
"""
import argparse

from net.apps.cli import bandwidth_arg, non_negative_ms
from net.cloud.monitor import MonitorServer
from net.edge.bandwidth import measure
from net.emulation.link import LinkPacer


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bandwidth", type=bandwidth_arg, default=None, help="emulated uplink, Mbit/s or preset")
    p.add_argument("--rtt", type=non_negative_ms, default=0.0, help="emulated RTT in ms")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    with MonitorServer("127.0.0.1", 0).start() as server:
        host, port = server.address
        pacer = LinkPacer(args.bandwidth) if args.bandwidth else None
        rate = measure(host, port, pacer=pacer, rtt_ms=args.rtt, rounds=args.rounds)
    link = f"paced at {args.bandwidth:g} Mbit/s" if args.bandwidth else "unshaped loopback"
    print(f"monitor on {host}:{port}, {link}, RTT {args.rtt:g} ms: measured uplink {rate:.2f} Mbit/s")


if __name__ == "__main__":
    main()
