"""Networking: the wire protocol, link emulation, the cloud server, the edge client, the bandwidth monitor."""
