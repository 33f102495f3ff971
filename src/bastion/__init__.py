"""bastion: secure machine-learning models against adversarial attack across their whole life."""

__version__ = "0.1.0"
