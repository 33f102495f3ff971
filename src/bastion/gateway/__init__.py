"""The hardened inference gateway behind ``bastion serve``: ``bastion.gateway.app.create_app(settings)`` builds
the FastAPI app (imported from its module, so that the CLI's key and audit commands do not load FastAPI).

Modules: ``settings`` (BASTION_* variables), ``keys`` (API keys), ``throttle`` (rate limits and budgets),
``policy`` (the YAML policy), ``pipeline`` (validation, sanitisation, detectors, decision), ``outputs``
(output policies), ``inference`` (one request end to end), ``audit`` (the hash-chained audit log),
``review`` (human review), ``replay``, ``console`` (reviewers' pages), ``routes/`` (the HTTP routes).
"""
