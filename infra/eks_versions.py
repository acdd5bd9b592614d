"""EKS Kubernetes versions: each one's support dates, its phase on a given day, and the control-plane fee.

Dates are from the Amazon EKS Kubernetes release calendar (UTC): awsdocs/amazon-eks-user-guide@mainline
latest/ug/versioning/kubernetes-versions.adoc (1.29-1.34) and https://endoflife.date/amazon-eks, which mirrors it
(1.35: released 2026-01-28, standard support to 2027-03-27). "Billing for extended support starts at the beginning
of the day that the version reaches end of standard support, in the UTC+0 timezone" (same page), so a version is in
standard support *before* its end-of-standard date and in extended support *on* it.

Only versions that `kubernetes-validate` 1.37.0 has schemas for (1.25-1.37) may be listed; 1.36 and 1.37 are left out
until their EKS dates can be cited. Re-check the calendar when you add a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

SupportPhase = Literal["standard", "extended", "ended"]
SupportType = Literal["STANDARD", "EXTENDED"]

# https://aws.amazon.com/blogs/containers/amazon-eks-extended-support-for-kubernetes-versions-pricing/ :
# "$0.60 per cluster per hour" in extended support; "$0.10 per cluster per hour" in standard support.
STANDARD_SUPPORT_USD_PER_HOUR = 0.10
EXTENDED_SUPPORT_USD_PER_HOUR = 0.60


@dataclass(frozen=True)
class EksVersion:
    version: str
    standard_support_end: date
    extended_support_end: date


EKS_VERSIONS: dict[str, EksVersion] = {
    row.version: row
    for row in (
        EksVersion("1.30", date(2025, 7, 23), date(2026, 7, 23)),
        EksVersion("1.31", date(2025, 11, 26), date(2026, 11, 26)),
        EksVersion("1.32", date(2026, 3, 23), date(2027, 3, 23)),
        EksVersion("1.33", date(2026, 7, 29), date(2027, 7, 29)),
        EksVersion("1.34", date(2026, 12, 2), date(2027, 12, 2)),
        EksVersion("1.35", date(2027, 3, 27), date(2028, 3, 27)),
    )
}


def utc_today() -> date:
    """Today in UTC, the timezone of EKS's calendar (tests replace this to pin a day)."""
    return datetime.now(UTC).date()


def support_phase(version: str, on: date) -> SupportPhase:
    row = EKS_VERSIONS[version]
    if on < row.standard_support_end:
        return "standard"
    if on < row.extended_support_end:
        return "extended"
    return "ended"


def versions_in_standard_support(on: date) -> list[str]:
    return [version for version in EKS_VERSIONS if support_phase(version, on) == "standard"]


def control_plane_usd_per_hour(version: str, on: date) -> float:
    """What EKS bills for the control plane of a cluster on `version` on day `on`."""
    if support_phase(version, on) == "standard":
        return STANDARD_SUPPORT_USD_PER_HOUR
    return EXTENDED_SUPPORT_USD_PER_HOUR


def version_problem(version: str, support_type: SupportType, on: date, where: str) -> str | None:
    """Why a cluster on `version` with upgrade policy `support_type` cannot be created as configured on `on`."""
    row = EKS_VERSIONS[version]
    phase = support_phase(version, on)
    current = (
        ", ".join(versions_in_standard_support(on)) or "(none known: add the new versions to infra/eks_versions.py)"
    )
    if phase == "ended":
        # "On the end of extended support date, you can no longer create new Amazon EKS clusters with the
        # unsupported version" (kubernetes-versions.adoc, extended support FAQ).
        return (
            f"{where}.kubernetes_version = {version!r}: EKS extended support for {version} ended on "
            f"{row.extended_support_end.isoformat()}; EKS no longer creates clusters on it; accepted: a version in "
            f"standard support today ({current})"
        )
    if phase == "extended" and support_type == "STANDARD":
        # view-upgrade-policy.adoc: with STANDARD the cluster "will automatically upgrade to the next supported
        # Kubernetes version"; disable-extended-support.adoc: "You cannot disable extended support once your cluster
        # has entered it". Such a stack would either be upgraded under us or never converge: refuse it.
        return (
            f"{where}.kubernetes_version = {version!r}: {version} left EKS standard support on "
            f"{row.standard_support_end.isoformat()}, and with upgrade_policy.support_type = 'STANDARD' EKS "
            f"auto-upgrades the control plane (managed node groups stay behind); accepted: a version in standard "
            f"support today ({current}), or upgrade_policy.support_type: EXTENDED (billed "
            f"${EXTENDED_SUPPORT_USD_PER_HOUR:.2f}/h instead of ${STANDARD_SUPPORT_USD_PER_HOUR:.2f}/h)"
        )
    return None
