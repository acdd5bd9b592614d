"""The stack configuration schema: one pydantic model for everything a stack file may say.

A stack file (`stacks/Pulumi.<env>.yaml`) holds one structured key, `llm-serving:platform`, validated by
`PlatformConfig`, plus a few secrets (`SECRET_KEYS`) that stay Pulumi secrets end to end. Every model forbids unknown
keys, so a typo is an error, and `load_platform_config` turns every problem into one line that names the stack, the
key path, the bad value and what is accepted.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Annotated, Any, Literal

from llm_gateway.config import AliasConfig, BalancingConfig, PriceConfig, RouteConfig, TeamLimits
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from infra.eks_versions import EKS_VERSIONS, SupportType
from infra.models import ModelArchitecture
from infra.stores_config import StoresConfig

PROJECT = "llm-serving"
PLATFORM_KEY = f"{PROJECT}:platform"

# Secrets never live in `platform`; each is its own Pulumi secret config key (`pulumi config set --secret`).
SECRET_KEYS: dict[str, str] = {
    "hfToken": "Hugging Face token the vLLM pods use to pull gated weights",
    "vllmApiKey": "API key the vLLM servers require; only the gateway knows it",
    "openaiApiKey": "key for the managed OpenAI-compatible API the gateway fails over to",
    "grafanaAdminPassword": "Grafana admin password",
    "teamKeys": 'JSON object {"team": ["key", ...]}: the API keys of each team (the gateway stores only hashes)',
    "ledgerDbPassword": "password of the ledger's PostgreSQL user (stores.ledger); 16+ URL-safe characters",
    "limitStoreAuthToken": "AUTH token of the limits' Valkey (stores.limits); 16-128 URL-safe characters",
}

# Regions we know prices and GPU offerings for (EC2 GPU instances are not in every region).
AWS_REGIONS = (
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "eu-north-1",
    "ap-northeast-1",
    "ap-southeast-2",
)
# EKS versions with cited support dates (infra/eks_versions.py) that the bundled schemas (kubernetes-validate) cover;
# whether one may be used today depends on the day and the upgrade policy (infra/semantics.py).
KUBERNETES_VERSIONS = tuple(EKS_VERSIONS)

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
_HF_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$|^/[\w./-]+$")


def _dns_label(value: str) -> str:
    if not _DNS_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use 1-40 lowercase letters, digits and '-', starting with a letter"
        )
    return value


DnsLabel = Annotated[str, Field(min_length=1, max_length=40)]


LogType = Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]
DEFAULT_LOG_TYPES: tuple[LogType, ...] = ("api", "audit", "authenticator")


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors and values are not coerced silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Scaling(Strict):
    """Size of a node group (or of a set of replicas)."""

    min_size: int = Field(ge=0, le=100, description="Fewest nodes the group scales down to.")
    desired_size: int = Field(ge=0, le=100, description="Nodes at creation; the autoscaler owns it afterwards.")
    max_size: int = Field(ge=1, le=100, description="Most nodes the group may grow to (caps spend).")

    @model_validator(mode="after")
    def _ordered(self) -> Scaling:
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError(
                f"min_size {self.min_size} <= desired_size {self.desired_size} <= max_size {self.max_size} must hold"
            )
        return self


class AwsConfig(Strict):
    region: str = Field(description=f"AWS region; one of {', '.join(AWS_REGIONS)}.")
    tags: dict[str, str] = Field(default_factory=dict, description="Tags put on every AWS resource.")

    @field_validator("region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        if value not in AWS_REGIONS:
            raise ValueError(f"unknown region {value!r}; accepted: {', '.join(AWS_REGIONS)}")
        return value


class NetworkConfig(Strict):
    """A new VPC with public and private subnets in 2-3 AZs and NAT, or an existing VPC."""

    vpc_cidr: str = Field(default="10.0.0.0/16", description="CIDR of a new VPC, /16 to /20.")
    availability_zones: int = Field(default=2, ge=2, le=3, description="AZs to spread subnets over (2 or 3).")
    nat_gateways: Literal["single", "per_az"] = Field(
        default="single", description="One NAT gateway (cheap) or one per AZ (survives an AZ outage)."
    )
    existing_vpc_id: str | None = Field(default=None, description="Use this VPC instead of creating one.")
    existing_private_subnet_ids: list[str] = Field(default_factory=list)
    existing_public_subnet_ids: list[str] = Field(default_factory=list)

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            network = ipaddress.IPv4Network(value)
        except ValueError as error:
            raise ValueError(f"{value!r} is not an IPv4 CIDR such as 10.0.0.0/16 ({error})") from None
        if not 16 <= network.prefixlen <= 20:
            raise ValueError(f"prefix /{network.prefixlen} is outside /16../20 (room for 2x3 subnets)")
        return value

    @model_validator(mode="after")
    def _existing(self) -> NetworkConfig:
        if self.existing_vpc_id is not None:
            if not re.match(r"^vpc-[0-9a-f]{8,17}$", self.existing_vpc_id):
                raise ValueError(f"existing_vpc_id {self.existing_vpc_id!r} is not a VPC id like vpc-0abc12345")
            if len(self.existing_private_subnet_ids) < 2:
                raise ValueError("an existing VPC needs existing_private_subnet_ids in at least 2 AZs")
        for subnet in [*self.existing_private_subnet_ids, *self.existing_public_subnet_ids]:
            if not re.match(r"^subnet-[0-9a-f]{8,17}$", subnet):
                raise ValueError(f"{subnet!r} is not a subnet id like subnet-0abc12345")
        return self


class SystemNodesConfig(Strict):
    """The CPU node group that runs the gateway, monitoring and cluster add-ons."""

    instance_types: list[str] = Field(min_length=1, description="CPU instance types from the catalog.")
    scaling: Scaling
    disk_size_gib: int = Field(default=50, ge=20, le=1000)


class UpgradePolicyConfig(Strict):
    """What EKS does when the cluster's version leaves standard support (the cluster's `upgradePolicy`)."""

    support_type: SupportType = Field(
        default="STANDARD",
        description="STANDARD: EKS auto-upgrades at the end of standard support and never bills extended support "
        "($0.10/h). EXTENDED (EKS's own default): the cluster stays on its version for 12 more months at $0.60/h.",
    )


def _ipv4_cidrs(values: list[str]) -> list[str]:
    for value in values:
        try:
            ipaddress.IPv4Network(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv4 CIDR such as 10.0.0.0/8") from None
        if value == "0.0.0.0/0":
            raise ValueError("0.0.0.0/0 opens the API server to everyone; list your office/VPN/runner CIDRs")
    return values


class ClusterConfig(Strict):
    kubernetes_version: str = Field(description=f"EKS version, one of {', '.join(KUBERNETES_VERSIONS)}.")
    endpoint_public_access: bool = Field(default=False, description="Expose the API server on the internet.")
    public_access_cidrs: list[str] = Field(
        default_factory=list, description="Allow-list for the public endpoint; required when it is public."
    )
    endpoint_private_access: bool = True
    private_access_cidrs: list[str] = Field(
        default_factory=list,
        description="Networks allowed to reach the private endpoint on 443 (a VPN, a peered VPC, the subnet of a CI "
        "runner); each becomes an ingress rule on the cluster security group.",
    )
    private_access_security_group_ids: list[str] = Field(
        default_factory=list,
        description="Security groups (e.g. of a deploy runner inside the VPC) allowed to reach the private endpoint "
        "on 443; each becomes an ingress rule on the cluster security group.",
    )
    upgrade_policy: UpgradePolicyConfig = Field(default_factory=UpgradePolicyConfig)
    log_types: list[LogType] = Field(default_factory=lambda: list(DEFAULT_LOG_TYPES))
    system_nodes: SystemNodesConfig

    @field_validator("kubernetes_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value not in KUBERNETES_VERSIONS:
            raise ValueError(f"unsupported version {value!r}; accepted: {', '.join(KUBERNETES_VERSIONS)}")
        return value

    @field_validator("private_access_cidrs")
    @classmethod
    def _private_cidrs(cls, values: list[str]) -> list[str]:
        return _ipv4_cidrs(values)

    @field_validator("private_access_security_group_ids")
    @classmethod
    def _security_groups(cls, values: list[str]) -> list[str]:
        for value in values:
            if not re.match(r"^sg-[0-9a-f]{8,17}$", value):
                raise ValueError(f"{value!r} is not a security group id like sg-0abc12345")
        return values

    @field_validator("public_access_cidrs")
    @classmethod
    def _cidrs(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.IPv4Network(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an IPv4 CIDR such as 203.0.113.0/24") from None
            if value == "0.0.0.0/0":
                raise ValueError("0.0.0.0/0 opens the API server to the internet; list your office/VPN CIDRs")
        return values

    @model_validator(mode="after")
    def _access(self) -> ClusterConfig:
        if self.endpoint_public_access and not self.public_access_cidrs:
            raise ValueError("endpoint_public_access needs public_access_cidrs (an allow-list)")
        if not self.endpoint_public_access and not self.endpoint_private_access:
            raise ValueError("the API endpoint must be public, private or both")
        private_sources = self.private_access_cidrs or self.private_access_security_group_ids
        if private_sources and not self.endpoint_private_access:
            raise ValueError("private_access_cidrs/private_access_security_group_ids need endpoint_private_access")
        if not self.endpoint_public_access and not private_sources:
            # The cluster security group admits only the nodes; Pulumi itself must reach the API server to create
            # the Kubernetes objects, so a private-only cluster with no way in cannot even finish its first `up`.
            raise ValueError(
                "a private-only endpoint needs a way in for the deployer: set private_access_cidrs (VPN, peered "
                "network, runner subnet) or private_access_security_group_ids (a runner in the VPC), or make the "
                "endpoint public with public_access_cidrs"
            )
        return self


class GpuNodeGroupConfig(Strict):
    """An EKS managed node group on the NVIDIA AMI."""

    name: DnsLabel = Field(description="Name; vLLM models select it with `node_group`.")
    instance_types: list[str] = Field(
        min_length=1,
        description="GPU instance types from the catalog; all with the same GPU model and count.",
    )
    capacity_type: Literal["ON_DEMAND", "SPOT"] = "ON_DEMAND"
    provisioner: Literal["karpenter", "managed"] = Field(
        default="karpenter",
        description="karpenter: a NodePool + EC2NodeClass; nodes follow the pods, down to none (scaling.min_size and "
        "desired_size must be 0, max_size caps the GPUs). managed: an EKS managed node group of a fixed size range "
        "(for capacity reservations or nodes that must always run). See docs/scaling.md.",
    )
    ami_alias: str = Field(
        default="al2023@latest",
        pattern=r"^al2023@(latest|v[0-9]{8})$",
        description="Karpenter pools: the EKS-optimized AL2023 AMI (Karpenter picks the NVIDIA variant for GPU "
        "types); `al2023@latest` follows new AMIs (nodes drift and are replaced), `al2023@v20251120` pins one.",
    )
    scaling: Scaling
    disk_size_gib: int | None = Field(
        default=None,
        ge=50,
        le=4000,
        description="Root volume; by default sized for the weights of its models.",
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Extra node labels.")

    _name = field_validator("name")(classmethod(lambda cls, v: _dns_label(v)))


class DevicePluginConfig(Strict):
    time_slicing_replicas: int | None = Field(
        default=None,
        ge=2,
        le=16,
        description="Share each GPU between this many pods (dev only; no isolation).",
    )


class ModelCacheConfig(Strict):
    kind: Literal["emptyDir", "pvc"] = "emptyDir"
    size_gib: int | None = Field(default=None, ge=1, le=4000, description="Default: weights x 1.5.")
    storage_class: str = "gp3"


class ModelAutoscalingConfig(Strict):
    max_replicas: int = Field(ge=1, le=64)
    target_waiting_requests: float = Field(
        default=4.0, gt=0, description="Requests waiting per replica that trigger a scale-up."
    )
    min_replicas: int | None = Field(
        default=None,
        ge=0,
        le=64,
        description="Fewest replicas; 0 = scale to zero when idle (the gateway holds requests while it wakes). "
        "Default: 0 in dev and staging, the model's `replicas` elsewhere.",
    )
    idle_minutes: int = Field(
        default=15, ge=1, le=1440, description="Minutes with no request before a model at min_replicas 0 goes to zero."
    )
    wake_deadline_s: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="How long the gateway holds a request while the model wakes from zero; must cover the planned "
        "cold start (node launch + image pull + weight load). Default: the cold start estimate.",
    )


class ModelConfig(Strict):
    """One vLLM Deployment."""

    name: DnsLabel = Field(description="Served model name and the Kubernetes name of its objects.")
    hf_model: str = Field(description="Hugging Face repo id (org/name) or a path inside the image.")
    revision: str | None = Field(default=None, description="Git revision of the weights (pin it in prod).")
    catalog: str | None = Field(default=None, description="Key in the model catalog (infra/models.py).")
    architecture: ModelArchitecture | None = Field(
        default=None, description="Shapes from the model's config.json, for a model not in the catalog."
    )
    node_group: str | None = Field(default=None, description="GPU node group to run on; None = CPU (local).")
    quantization: Literal["none", "awq", "gptq", "fp8"] = "none"
    checkpoint_quant_method: Literal["none", "compressed-tensors", "fp8", "awq", "gptq"] | None = Field(
        default=None,
        description="`quantization_config.quant_method` of the checkpoint's config.json ('none': 16-bit weights, "
        "vLLM quantizes on the fly); needed with `quantization` when hf_model is not in the checkpoint catalog.",
    )
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    kv_cache_dtype: Literal["auto", "fp8"] = "auto"
    max_model_len: int = Field(ge=128, le=1_048_576)
    gpu_memory_utilization: float = Field(default=0.90, gt=0.1, le=0.98)
    max_num_seqs: int = Field(default=64, ge=1, le=1024)
    gpus: int = Field(default=1, ge=1, le=8, description="GPUs per replica = tensor parallel size.")
    replicas: int = Field(default=1, ge=1, le=64)
    enable_prefix_caching: bool = True
    enforce_eager: bool = False
    extra_args: list[str] = Field(default_factory=list, description="More `vllm serve` flags; still validated.")
    cache: ModelCacheConfig = Field(default_factory=ModelCacheConfig)
    autoscaling: ModelAutoscalingConfig | None = None
    cpu_kv_cache_gib: int = Field(default=1, ge=1, le=64, description="KV cache size on the CPU backend (local).")
    resources_cpu: str | None = Field(default=None, description="CPU request/limit (CPU backend), e.g. '2'.")
    resources_memory: str | None = Field(default=None, description="Memory request/limit, e.g. '8Gi'.")
    balancing: BalancingConfig | None = Field(
        default=None,
        description="How the gateway shares this model's requests among its pods (the gateway's own schema); "
        "unset: least_outstanding. prefix_aware needs enable_prefix_caching.",
    )

    _name = field_validator("name")(classmethod(lambda cls, v: _dns_label(v)))

    @field_validator("hf_model")
    @classmethod
    def _repo(cls, value: str) -> str:
        if not _HF_REPO.match(value):
            raise ValueError(f"{value!r} is not a Hugging Face repo id like meta-llama/Llama-3.1-8B-Instruct")
        return value

    @model_validator(mode="after")
    def _arch(self) -> ModelConfig:
        if (self.catalog is None) == (self.architecture is None):
            raise ValueError("give exactly one of `catalog` (a catalog key) or `architecture`")
        if self.autoscaling is not None and self.autoscaling.max_replicas < self.replicas:
            raise ValueError(
                f"autoscaling.max_replicas {self.autoscaling.max_replicas} is below replicas {self.replicas}"
            )
        if self.balancing is not None and self.balancing.policy == "prefix_aware" and not self.enable_prefix_caching:
            # Routing by prefix to pods that keep no prefix cache only unbalances them.
            raise ValueError(
                "balancing.policy 'prefix_aware' needs enable_prefix_caching: true; "
                "accepted with caching off: 'least_outstanding' or 'session'"
            )
        return self


class ManagedApiConfig(Strict):
    """A managed OpenAI-compatible API (key from the `openaiApiKey` secret)."""

    name: DnsLabel
    base_url: str = Field(pattern=r"^https://[^\s/]+(/\S*)?$", description="e.g. https://api.openai.com/v1")
    model: str = Field(min_length=1, description="Model name the API expects.")


class IngressConfig(Strict):
    kind: Literal["none", "nlb", "ingress"] = "none"
    host: str | None = None
    tls_secret_name: str | None = Field(
        default=None, description="Not used: the ALB of an `ingress` terminates TLS with `certificate_arn` (ACM)."
    )
    certificate_arn: str | None = Field(default=None, description="ACM certificate of the NLB or of the ALB.")
    internal: bool = Field(default=True, description="Reachable only inside the VPC.")

    @model_validator(mode="after")
    def _tls(self) -> IngressConfig:
        # `ingress` is an ALB of the AWS Load Balancer Controller: it cannot use a Kubernetes TLS Secret.
        if self.kind == "ingress" and (self.host is None or self.certificate_arn is None):
            raise ValueError("an ingress (ALB) needs `host` and `certificate_arn` (TLS is not optional)")
        if self.tls_secret_name is not None:
            raise ValueError(
                "the ALB terminates TLS with an ACM certificate: set `certificate_arn`, not `tls_secret_name`"
            )
        if self.kind == "nlb" and self.certificate_arn is None:
            raise ValueError("an NLB needs `certificate_arn` (TLS is not optional)")
        return self


class GatewayConfig(Strict):
    replicas: int = Field(default=2, ge=1, le=50)
    max_replicas: int = Field(default=6, ge=1, le=100, description="HPA ceiling (CPU-based).")
    image: str | None = Field(
        default=None,
        description="Gateway image built from gateway_image/. Unset on AWS: `pulumi up` builds it into the stack's "
        "ECR repository, tagged by its content (components/gateway_image.py). Required without `aws`.",
    )
    request_timeout_s: float = Field(default=120, gt=0, le=3600)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    stream_recovery: bool = False
    audit_include_prompts: bool = False
    managed_apis: list[ManagedApiConfig] = Field(default_factory=list)
    # Routes, aliases, teams and prices are the gateway's own models (gateway_image/llm_gateway/config.py): what the
    # gateway accepts there a stack can say, and the checks across them (names that must exist or be unique) are
    # the gateway's, run on the rendered config by infra/semantics.py with each problem named by its stack key.
    routes: list[RouteConfig] = Field(
        default_factory=list,
        description="Default: one route per model. A target's backend is a model name (vLLM) or a managed API name.",
    )
    aliases: list[AliasConfig] = Field(
        default_factory=list, description="Semantic routing: one public name that picks a route per request."
    )
    teams: list[TeamLimits] = Field(min_length=1, description="Teams and their limits; their keys: secret teamKeys.")
    pricing: dict[str, PriceConfig] = Field(
        default_factory=dict, description="USD per million tokens, by route name or backend model name."
    )
    ingress: IngressConfig = Field(default_factory=IngressConfig)


class AlertThresholds(Strict):
    """When the PrometheusRule alerts fire (components/alerts.py); each alert's runbook is in docs/runbooks.md."""

    requests_waiting: int = Field(default=10, ge=1, description="Waiting requests per pod that alert.")
    requests_waiting_for_minutes: int = Field(default=5, ge=1)
    kv_cache_usage_ratio: float = Field(default=0.9, gt=0, le=1)
    kv_cache_for_minutes: int = Field(default=10, ge=1, description="How long the KV cache must stay that full.")
    gateway_error_ratio: float = Field(default=0.05, gt=0, le=1)
    fallback_ratio: float = Field(default=0.1, gt=0, le=1)
    team_budget_ratio: float = Field(default=0.8, gt=0, le=1)
    pod_not_ready_minutes: int = Field(
        default=10, ge=1, description="vLLM start-up (weights download, compile) may legitimately take minutes."
    )


Severity = Literal["critical", "warning", "info"]
_SECRET_KEY_NAME = re.compile(r"^[a-z][A-Za-z0-9]{2,62}$")


class AlertReceiverConfig(Strict):
    """Where Alertmanager sends alerts of some severities. The URL or key is never in the stack file: it is read from
    the Pulumi secret config key named by `secret` and mounted into Alertmanager as a file (never in helm values)."""

    name: DnsLabel = Field(description="Receiver name in the Alertmanager configuration.")
    kind: Literal["slack", "pagerduty", "webhook"] = Field(
        description="slack: incoming-webhook URL; pagerduty: Events API v2 routing key; webhook: an HTTPS URL."
    )
    secret: str = Field(
        description="Pulumi secret config key (camelCase, e.g. alertSlackUrl) holding the URL or routing key: "
        "`pulumi config set --secret llm-serving:<secret> <value>`."
    )
    severities: list[Severity] = Field(
        min_length=1, description="Alert severities routed here (the rules label alerts critical/warning/info)."
    )
    channel: str | None = Field(default=None, description="Slack channel such as #llm-alerts (slack only).")
    send_resolved: bool = Field(default=True, description="Also notify when the alert resolves.")

    _name = field_validator("name")(classmethod(lambda cls, v: _dns_label(v)))

    @field_validator("secret")
    @classmethod
    def _secret_key(cls, value: str) -> str:
        if not _SECRET_KEY_NAME.match(value):
            raise ValueError(
                f"{value!r} is not a config key name: use camelCase letters and digits, e.g. alertSlackUrl"
            )
        if value in SECRET_KEYS:
            raise ValueError(f"{value!r} is already the platform's {SECRET_KEYS[value]!r}; name a key of its own")
        return value

    @model_validator(mode="after")
    def _channel(self) -> AlertReceiverConfig:
        if self.channel is not None and self.kind != "slack":
            raise ValueError(f"`channel` applies to slack receivers only, not {self.kind}")
        if self.channel is not None and not re.match(r"^[#@][\w.-]{1,80}$", self.channel):
            raise ValueError(f"channel {self.channel!r} is not a Slack channel like #llm-alerts")
        return self


class AlertmanagerConfig(Strict):
    """Alertmanager's receivers and routing (components/monitoring.py renders them into the chart's config)."""

    receivers: list[AlertReceiverConfig] = Field(
        default_factory=list, description="Empty = alerts are only visible in Alertmanager's UI, nobody is told."
    )
    repeat_interval: str = Field(
        default="4h", pattern=r"^[0-9]+(m|h)$", description="How often a still-firing alert is sent again."
    )

    @model_validator(mode="after")
    def _unique(self) -> AlertmanagerConfig:
        names = [receiver.name for receiver in self.receivers]
        if "null" in names or len(set(names)) != len(names):
            raise ValueError(f"receiver names must be unique and not 'null' (got {names})")
        secrets = [receiver.secret for receiver in self.receivers]
        if len(set(secrets)) != len(secrets):
            raise ValueError(f"each receiver needs its own secret key (got {secrets})")
        return self


class TracingConfig(Strict):
    """Request tracing: an OpenTelemetry Collector in the monitoring namespace; the gateway and vLLM export to it."""

    enabled: bool = Field(default=False, description="Collector on, gateway spans on, vLLM --otlp-traces-endpoint.")
    sample_ratio: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Share of requests traced (the gateway decides; vLLM follows the traceparent's sampled flag).",
    )
    backend: Literal["tempo", "otlp"] = Field(
        default="tempo",
        description="tempo: Grafana Tempo in the monitoring namespace, a Grafana datasource; otlp: forward to "
        "otlp_endpoint (a vendor or a central collector).",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="backend otlp: the OTLP/HTTP base URL the collector forwards to (it appends /v1/traces).",
    )
    retention: str = Field(default="72h", pattern=r"^[0-9]+(h|m)$", description="Tempo's block retention.")
    storage_gib: int | None = Field(
        default=None, ge=1, le=4000, description="Tempo's volume; None = an emptyDir (traces lost with the pod)."
    )
    vllm_detailed_traces: list[Literal["model", "worker", "all"]] = Field(
        default_factory=list,
        description="vLLM's --collect-detailed-traces modules (costly, may block: vLLM's own warning); empty: none.",
    )

    @model_validator(mode="after")
    def _backend_fields(self) -> TracingConfig:
        if self.backend == "otlp" and self.otlp_endpoint is None:
            raise ValueError("backend `otlp` needs `otlp_endpoint` (an http(s):// OTLP/HTTP base URL)")
        if self.backend == "tempo" and self.otlp_endpoint is not None:
            raise ValueError("`otlp_endpoint` is for backend `otlp`; with `tempo` the collector sends to Tempo")
        if self.backend == "otlp" and self.storage_gib is not None:
            raise ValueError("`storage_gib` sizes Tempo's volume; backend `otlp` runs no Tempo")
        return self


class MonitoringConfig(Strict):
    enabled: bool = True
    light: bool = Field(default=False, description="A laptop-sized stack (local): no alertmanager, no PVCs.")
    retention: str = Field(default="15d", pattern=r"^[0-9]+(h|d|w)$")
    storage_gib: int | None = Field(default=None, ge=1, le=4000, description="None = no persistent volume.")
    storage_class: str = Field(default="gp3", min_length=1, description="StorageClass of Prometheus' volume.")
    scrape_interval: str = Field(
        default="15s", pattern=r"^[0-9]+s$", description="How often vLLM, gateway and DCGM are scraped."
    )
    alerts: AlertThresholds = Field(default_factory=AlertThresholds)
    alertmanager: AlertmanagerConfig = Field(default_factory=AlertmanagerConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)

    @model_validator(mode="after")
    def _light(self) -> MonitoringConfig:
        if self.tracing.enabled and not self.enabled:
            raise ValueError("tracing.enabled needs monitoring.enabled: the collector runs in the monitoring stack")
        if self.light and self.storage_gib is not None:
            raise ValueError("`light` monitoring keeps no persistent volume: remove `storage_gib` or `light`")
        if self.light and self.alertmanager.receivers:
            raise ValueError("`light` monitoring runs no Alertmanager: remove `alertmanager.receivers` or `light`")
        return self


class PlatformConfig(Strict):
    """Everything one environment says. `aws: null` means no AWS at all (the `local` stack)."""

    environment: Literal["dev", "staging", "prod", "local"]
    namespace: DnsLabel = Field(default="llm-serving", description="Namespace of the serving workloads.")
    aws: AwsConfig | None = None
    network: NetworkConfig | None = None
    cluster: ClusterConfig | None = None
    kubernetes_version: str | None = Field(
        default=None, description="Cluster version when there is no EKS cluster (local); schemas follow it."
    )
    gpu_node_groups: list[GpuNodeGroupConfig] = Field(default_factory=list)
    device_plugin: DevicePluginConfig = Field(default_factory=DevicePluginConfig)
    models: list[ModelConfig] = Field(min_length=1)
    gateway: GatewayConfig
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    stores: StoresConfig | None = Field(
        default=None, description="Usage ledger (PostgreSQL) and shared limits (Valkey); infra/stores_config.py."
    )

    @property
    def cluster_version(self) -> str:
        if self.cluster is not None:
            return self.cluster.kubernetes_version
        assert self.kubernetes_version is not None
        return self.kubernetes_version

    @model_validator(mode="after")
    def _consistent(self) -> PlatformConfig:
        problems: list[str] = []
        if self.aws is None:
            if self.network or self.cluster or self.gpu_node_groups:
                problems.append("without `aws`, `network`, `cluster` and `gpu_node_groups` must be absent")
            if self.gateway.ingress.kind != "none":
                # Both kinds are served by the AWS Load Balancer Controller, which only runs on EKS.
                problems.append("without `aws`, gateway.ingress.kind must be `none` (use kubectl port-forward locally)")
            if self.kubernetes_version not in KUBERNETES_VERSIONS:
                problems.append(
                    f"without `aws`, `kubernetes_version` must name the cluster's version "
                    f"(got {self.kubernetes_version!r}; accepted: {', '.join(KUBERNETES_VERSIONS)})"
                )
        elif self.network is None or self.cluster is None:
            problems.append("with `aws`, `network` and `cluster` are required")
        _unique(problems, "gpu_node_groups", [group.name for group in self.gpu_node_groups])
        _unique(problems, "models", [model.name for model in self.models])
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _unique(problems: list[str], where: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            problems.append(f"{where}: name {name!r} is used twice")
        seen.add(name)


class ConfigError(Exception):
    """Bad stack configuration: one line per problem, each naming the stack, key path, value and what is accepted."""

    def __init__(self, stack: str, problems: list[str]) -> None:
        self.stack = stack
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"stack {stack!r}: {len(problems)} problem(s) in its configuration:\n{lines}")


def key_path(location: tuple[Any, ...]) -> str:
    path = PLATFORM_KEY
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_.-]+", str(part)):
            path += f".{part}"
        else:
            # A key with spaces or control characters would break the one-line-per-problem message.
            path += f"[{str(part)!r}]"
    return path


_BOUNDS = {
    "greater_than": "> {gt}",
    "greater_than_equal": ">= {ge}",
    "less_than": "< {lt}",
    "less_than_equal": "<= {le}",
    "too_short": "at least {min_length} item(s)",
    "too_long": "at most {max_length} item(s)",
    "string_pattern_mismatch": "a string matching {pattern}",
}


def describe_error(error: Any) -> str:
    path = key_path(tuple(part for part in error["loc"] if not str(part).startswith("function-after")))
    kind = error["type"]
    value = error.get("input")
    context = error.get("ctx", {})
    if kind == "extra_forbidden":
        return f"{path}: unknown key (typo?); remove it or use one of the documented keys"
    if kind == "missing":
        return f"{path}: required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind == "literal_error":
        message = f"accepted: {context.get('expected', '')}"
    elif kind in _BOUNDS:
        message = f"{message}; accepted: {_BOUNDS[kind].format(**context)}"
    shown = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else repr(value)
    if len(shown) > 120:
        shown = shown[:117] + "..."
    return f"{path} = {shown}: {message}"


def validate_schema(stack: str, raw: Any) -> PlatformConfig:
    """The shape of the raw `platform` object only; raise ConfigError with every problem. The checks that need
    the catalogs and the planner run after this one (infra/validation.py `parse_platform`)."""
    if not isinstance(raw, dict):
        raise ConfigError(stack, [f"{PLATFORM_KEY}: must be a mapping, got {type(raw).__name__}"])
    try:
        return PlatformConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(stack, [describe_error(item) for item in error.errors()]) from None
