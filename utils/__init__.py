"""Helpers shared by the packages: provenance of numbers, devices, images, reports."""
