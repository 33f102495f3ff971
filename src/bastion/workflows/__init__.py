"""Workflows behind ``bastion harden`` and ``bastion certify``: run, record, report."""
