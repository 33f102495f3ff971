"""Poison detectors on a model's penultimate features (scikit-learn style: ``fit`` returns self).

``SpectralSignatures`` (Tran et al. 2018) and ``ActivationClustering`` (Chen et al. 2018) score
every sample within its class; ``PoisonConsensus`` combines them (and the label-issue score) and
flags under an explicit false-positive budget. ``penultimate_features`` extracts what they read.
"""

from bastion.defenses.poison.activation_clustering import ActivationClustering, ClassClusters
from bastion.defenses.poison.consensus import PoisonConsensus, check_budget, class_pooled_fpr
from bastion.defenses.poison.features import last_linear, penultimate_features
from bastion.defenses.poison.spectral import SpectralSignatures

__all__ = ["ActivationClustering", "ClassClusters", "PoisonConsensus", "SpectralSignatures", "check_budget",
           "class_pooled_fpr", "last_linear", "penultimate_features"]
