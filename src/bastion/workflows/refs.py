"""An evidence record's references to the model and the data a workflow ran on."""

from __future__ import annotations

from bastion.core.ids import array_digest
from bastion.core.records import ArtifactRef, DatasetRef
from bastion.data.sources import Dataset
from bastion.models.loading import LoadedModel


def model_ref(loaded: LoadedModel) -> ArtifactRef:
    """The record's reference to ``loaded``: its description, file hash, kind and the access it offers."""
    return ArtifactRef(description=loaded.description, sha256=loaded.sha256, kind=loaded.kind,
                       access=loaded.classifier.access)


def dataset_ref(dataset: Dataset, manifest_root: str | None = None) -> DatasetRef:
    """The record's reference to ``dataset``: description, size, hash of ``x`` then ``y``, shape, classes,
    and the Merkle root of its manifest when one was checked."""
    return DatasetRef(description=dataset.description, count=len(dataset), sha256=array_digest(dataset.x, dataset.y),
                      input_shape=list(dataset.input_shape), num_classes=len(dataset.class_names),
                      manifest_root=manifest_root)
