"""Dataset audits, each returning an :class:`AuditResult` (a score and a flag per sample id).

Duplicates (exact, near, train/test leakage), outliers, label issues (cleanlab's confident learning)
and suspected poison (spectral signatures, activation clustering and their consensus under a
false-positive budget). Every score reads the same way: higher = more suspicious.
"""

from bastion.data.audit.duplicates import content_hashes, exact_duplicates, leakage, near_duplicates
from bastion.data.audit.label_issues import label_issues
from bastion.data.audit.outliers import outliers
from bastion.data.audit.poison import poison_audit
from bastion.data.audit.result import AuditResult

__all__ = ["AuditResult", "content_hashes", "exact_duplicates", "label_issues", "leakage", "near_duplicates",
           "outliers", "poison_audit"]
