"""Datasets: loading (files, folders, built-ins) with validation; later manifests and audits."""

from bastion.data.sources import Dataset, load_dataset

__all__ = ["Dataset", "load_dataset"]
