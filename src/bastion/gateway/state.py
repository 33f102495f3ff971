"""Everything one running gateway holds: database, keys, limits, audit log, the served model under its
policy, the extraction monitor and metrics. Built when the app starts, never at import."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from bastion.core.errors import ConfigError
from bastion.data.sources import load_dataset
from bastion.defenses.detectors import build_detector
from bastion.gateway.audit import AuditLog
from bastion.gateway.batching import MicroBatcher
from bastion.gateway.guard import TextGuards
from bastion.gateway.keys import KeyCache
from bastion.gateway.metrics import GatewayMetrics
from bastion.gateway.pipeline import PolicyPipeline, in_layout
from bastion.gateway.policy import Policy, load_policy
from bastion.gateway.settings import GatewaySettings
from bastion.gateway.text_pipeline import TextPipeline, check_text_policy
from bastion.gateway.throttle import Throttle
from bastion.models.base import Classifier
from bastion.models.loading import LoadedModel, load_classifier
from bastion.models.text_adapter import TextClassifier
from bastion.monitor.extraction import ExtractionMonitor
from bastion.storage.checkpoints import BackgroundCheckpoints
from bastion.storage.database import Database, open_database

logger = logging.getLogger(__name__)


@dataclass
class ServedModel:
    """The model behind ``/v2/models/{name}``: its name, version, file hash and the policy pipeline."""

    name: str
    version: str
    sha256: str | None
    description: str
    kind: str
    pipeline: PolicyPipeline | TextPipeline
    policy_sha256: str

    @property
    def takes_text(self) -> bool:
        """Whether the model takes strings (OIP v2 ``BYTES``) rather than tensors."""
        return isinstance(self.pipeline, TextPipeline)

    @property
    def num_classes(self) -> int:
        return int(self.pipeline.model.num_classes)


@dataclass
class GatewayState:
    """The running gateway (``app.state.gateway``)."""

    settings: GatewaySettings
    database: Database
    keys: KeyCache
    throttle: Throttle
    audit: AuditLog
    served: ServedModel
    monitor: ExtractionMonitor | None
    metrics: GatewayMetrics
    guards: TextGuards
    batcher: MicroBatcher | None = None
    checkpoints: BackgroundCheckpoints | None = None
    throttled_keys: set[str] = field(default_factory=set)
    in_flight: int = 0  # inference requests being served (the micro-batcher waits for them)

    def close(self) -> None:
        """Flush the audit log, stop the batching and guard threads and close the database."""
        self.audit.close()
        self.guards.close()
        if self.batcher is not None:
            self.batcher.close()
        if self.checkpoints is not None:
            self.checkpoints.stop()
        self.database.dispose()


def load_reference(policy: Policy, input_shape: tuple[int, ...]) -> torch.Tensor | None:
    """The policy's reference inputs ``(R, *input_shape)`` (its first ``reference_limit`` samples), or ``None``."""
    if policy.reference is None:
        return None
    dataset = load_dataset(policy.reference, limit=policy.reference_limit)
    if tuple(dataset.input_shape) != tuple(input_shape):
        raise ConfigError(f"the policy's reference {policy.reference} has inputs of shape {list(dataset.input_shape)}"
                          f", the model takes {list(input_shape)}")
    return torch.from_numpy(dataset.x)


def check_policy(policy: Policy, input_shape: tuple[int, ...] | None, *, classifier: Classifier | None = None) -> None:
    """Fail early on what the policy names: unknown detectors or parameters, an unreadable or misshapen
    reference, tensor rules for a text model (``input_shape`` ``None``) or text rules for a tensor model, and a
    ``memory_format`` that ``classifier`` (when given) cannot run in (``InputError``/``ConfigError`` saying which)."""
    if input_shape is None:
        check_text_policy(policy)
        return
    _refuse_text_section(policy)
    for rule in policy.detectors:
        build_detector(rule.kind, **rule.params)
    load_reference(policy, input_shape)
    if classifier is not None:
        in_layout(classifier, policy.memory_format)


def _refuse_text_section(policy: Policy) -> None:
    if policy.text is not None:
        raise ConfigError("the policy has a `text:` section, which applies to text models (scikit-learn pipelines "
                          "on strings); this model takes tensors: remove it")


def serve_model(loaded: LoadedModel, policy: Policy, *, name: str, version: str) -> ServedModel:
    """Fit the policy's detectors for ``loaded`` and wrap both as the served model (a text model gets a
    :class:`TextPipeline`)."""
    pipeline: PolicyPipeline | TextPipeline
    if isinstance(loaded.classifier, TextClassifier):
        pipeline = TextPipeline(loaded.classifier, policy)
    else:
        _refuse_text_section(policy)
        reference = load_reference(policy, tuple(loaded.classifier.input_shape))
        pipeline = PolicyPipeline(loaded.classifier, policy, reference=reference)
    return ServedModel(name=name, version=version, sha256=loaded.sha256, description=loaded.description,
                       kind=loaded.kind, pipeline=pipeline, policy_sha256=policy.sha256())


def extraction_monitor(policy: Policy) -> ExtractionMonitor | None:
    """The policy's extraction monitor (``None`` when off). Its expected out-of-distribution rate is the sum of
    the detectors' false-positive rates: a bound on how often ordinary traffic is flagged by any of them."""
    rules = policy.extraction
    if not rules.enabled:
        return None
    expected = min(sum(rule.false_positive_rate for rule in policy.detectors), 0.5) or 0.05
    return ExtractionMonitor(shapiro_threshold=rules.shapiro_threshold, min_queries=rules.min_queries,
                             ood_rate_expected=expected, coverage=rules.coverage, budget=rules.budget)


def load_registry_version(settings: GatewaySettings) -> tuple[LoadedModel, str, str]:
    """The model ``settings.registry`` (``NAME:ALIAS``) points to, loaded from the registry's stored artifacts,
    with the name and version it is served under (the model's name, the version's number).

    Only a release is served: an alias that is set, on an approved version; a version number is refused
    (``ModelRegistry.released`` says why).

    Raises:
        InputError: ``settings.registry`` is not a set alias of an approved version (the message says which
            ``bastion registry`` command releases one), or the version does not load.
    """
    from bastion.governance.registry import open_registry

    with open_registry(settings.home, url=settings.database_url, create=False) as registry:
        release = registry.released(settings.registry or "")
        loaded, info = registry.load(release.ref)
    return loaded, info.name, str(info.number)


def build_state(settings: GatewaySettings, *, loaded: LoadedModel | None = None, policy: Policy | None = None,
                metrics: GatewayMetrics | None = None) -> GatewayState:
    """Open the database, load the model (``loaded`` if given, else ``settings.model``), fit the policy and
    start the audit writer.

    Raises:
        ConfigError: no model given, a bad policy or limit; InputError from the loaders.
    """
    name, version = settings.model_name, settings.model_version
    if settings.registry is not None and loaded is None:
        loaded, name, version = load_registry_version(settings)
    if loaded is None:
        if settings.model is None:
            raise ConfigError("no model to serve: pass --model or --registry (or set BASTION_MODEL)")
        loaded = load_classifier(settings.model, weights=settings.weights)
    policy = policy if policy is not None else load_policy(settings.policy)
    served = serve_model(loaded, policy, name=name, version=version)
    throttle = Throttle(settings.limits_url, global_rate=settings.global_rate, default_rate=settings.default_rate,
                        default_budget=settings.default_budget)
    database = open_database(settings.database_url, home=settings.home, sync_every_commit=settings.audit_sync)
    checkpoints = BackgroundCheckpoints(database)  # SQLite's checkpoints off the answering thread
    guards = TextGuards(max_chars=settings.guard_max_chars, threshold=settings.guard_threshold,
                        long_threshold=settings.guard_long_threshold, rules_only=settings.guard_rules_only)
    try:
        audit = AuditLog(database, sync=settings.audit_sync)
        audit.save_policy(policy.document(), served.policy_sha256)
        guards.save_parameters(audit)
        audit.start()
        checkpoints.start()
    except BaseException:
        guards.close()
        database.dispose()
        raise
    keys = KeyCache(database.sessions, secret=settings.secret_key.get_secret_value(), ttl=settings.key_cache_seconds)
    monitor = extraction_monitor(policy)
    batcher = None if settings.batch_instances < 2 else MicroBatcher(max_instances=settings.batch_instances,
                                                                     wait_seconds=settings.batch_wait_ms / 1000)
    logger.info("gateway ready", extra={"model": served.name, "version": served.version, "sha256": served.sha256,
                                        "policy": served.policy_sha256, "database": database.display_url})
    return GatewayState(settings=settings, database=database, keys=keys, throttle=throttle, audit=audit,
                        served=served, monitor=monitor, metrics=metrics or GatewayMetrics(), guards=guards,
                        batcher=batcher,
                        checkpoints=checkpoints)
