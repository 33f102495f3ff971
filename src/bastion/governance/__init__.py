"""Governance: threat-model documents and the release gates derived from them.

A team writes a threat model (:mod:`bastion.governance.threat_model`, YAML kept with the model) whose
attack paths name the evidence that answers them; :mod:`bastion.governance.gates` reads evidence records
(``scan.json``, ``privacy.json``, ``audit.json``...) and decides, gate by gate, whether a version may ship.
"""
