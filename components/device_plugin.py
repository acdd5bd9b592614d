"""NVIDIA's Kubernetes device plugin: advertises each node's GPUs to the kubelet as `nvidia.com/gpu`.

Follows NVIDIA's static manifest (NVIDIA/k8s-device-plugin deployments/static/nvidia-device-plugin.yml): an
unprivileged DaemonSet that only needs the kubelet's device-plugin socket directory. Optional CUDA time-slicing
advertises each GPU several times (dev clusters: more pods per GPU, no memory or fault isolation).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components.naming import GPU_PRESENT_LABEL, GPU_TAINT_KEY

# Latest 0.18 release seen pinned in public manifests (v0.18.2); 0.19 ships only through the GPU Operator so far.
DEVICE_PLUGIN_IMAGE = "nvcr.io/nvidia/k8s-device-plugin:v0.18.2"
DEVICE_PLUGIN_DIR = "/var/lib/kubelet/device-plugins"
CONFIG_DIR = "/etc/nvidia-device-plugin"
CONFIG_FILE = "config.yaml"


@dataclass(frozen=True)
class DevicePluginArgs:
    namespace: str = "kube-system"
    image: str = DEVICE_PLUGIN_IMAGE
    # Advertise each GPU this many times (CUDA time-slicing); None = whole GPUs.
    time_slicing_replicas: int | None = None
    labels: dict[str, str] = field(default_factory=dict)


def sharing_config(time_slicing_replicas: int) -> str:
    """The plugin's config file (format `version: v1`) that turns on time-slicing for `nvidia.com/gpu`."""
    config = {
        "version": "v1",
        "flags": {"migStrategy": "none"},
        "sharing": {
            "timeSlicing": {
                # Keep the resource name: workloads keep requesting `nvidia.com/gpu`.
                "renameByDefault": False,
                # A pod asking for 2 slices would get no more compute than for 1; NVIDIA recommends refusing it
                # so nobody believes otherwise. Models with gpus > 1 do not belong on a time-sliced node group.
                "failRequestsGreaterThanOne": True,
                "resources": [{"name": "nvidia.com/gpu", "replicas": time_slicing_replicas}],
            }
        },
    }
    return yaml.safe_dump(config, sort_keys=False)


def gpu_node_affinity() -> k8s.core.v1.AffinityArgs:
    """Only GPU nodes: our GPU node groups label theirs `nvidia.com/gpu.present=true` (components/gpu_node_group.py)."""
    return k8s.core.v1.AffinityArgs(
        node_affinity=k8s.core.v1.NodeAffinityArgs(
            required_during_scheduling_ignored_during_execution=k8s.core.v1.NodeSelectorArgs(
                node_selector_terms=[
                    k8s.core.v1.NodeSelectorTermArgs(
                        match_expressions=[
                            k8s.core.v1.NodeSelectorRequirementArgs(
                                key=GPU_PRESENT_LABEL, operator="In", values=["true"]
                            )
                        ]
                    )
                ]
            )
        )
    )


def plugin_container(image: str, config_map_name: pulumi.Input[str] | None) -> k8s.core.v1.ContainerArgs:
    """The plugin container; with a config map (time-slicing) it also mounts and reads the config file."""
    env = [
        # On a node selected by gpu.present a failed NVML init is a broken node: crash loudly instead of
        # advertising zero GPUs.
        k8s.core.v1.EnvVarArgs(name="FAIL_ON_INIT_ERROR", value="true"),
    ]
    volume_mounts = [k8s.core.v1.VolumeMountArgs(name="device-plugin", mount_path=DEVICE_PLUGIN_DIR)]
    if config_map_name is not None:
        env.append(k8s.core.v1.EnvVarArgs(name="CONFIG_FILE", value=f"{CONFIG_DIR}/{CONFIG_FILE}"))
        volume_mounts.append(k8s.core.v1.VolumeMountArgs(name="config", mount_path=CONFIG_DIR, read_only=True))
    return k8s.core.v1.ContainerArgs(
        name="nvidia-device-plugin",
        image=image,
        env=env,
        security_context=k8s.core.v1.SecurityContextArgs(
            allow_privilege_escalation=False,
            capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
            # It writes only its socket, in the hostPath /var/lib/kubelet/device-plugins.
            read_only_root_filesystem=True,
        ),
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": "50m", "memory": "64Mi"},
            limits={"cpu": "200m", "memory": "256Mi"},
        ),
        volume_mounts=volume_mounts,
    )


def plugin_pod_spec(image: str, config_map_name: pulumi.Input[str] | None) -> k8s.core.v1.PodSpecArgs:
    volumes = [
        k8s.core.v1.VolumeArgs(
            name="device-plugin",
            host_path=k8s.core.v1.HostPathVolumeSourceArgs(path=DEVICE_PLUGIN_DIR, type="Directory"),
        )
    ]
    if config_map_name is not None:
        volumes.append(
            k8s.core.v1.VolumeArgs(
                name="config", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=config_map_name)
            )
        )
    return k8s.core.v1.PodSpecArgs(
        # Without it a full node could evict the plugin, and with it every GPU on the node.
        priority_class_name="system-node-critical",
        tolerations=[k8s.core.v1.TolerationArgs(key=GPU_TAINT_KEY, operator="Exists", effect="NoSchedule")],
        affinity=gpu_node_affinity(),
        automount_service_account_token=False,
        security_context=k8s.core.v1.PodSecurityContextArgs(
            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault")
        ),
        containers=[plugin_container(image, config_map_name)],
        volumes=volumes,
    )


class DevicePlugin(pulumi.ComponentResource):
    """The plugin's DaemonSet on every GPU node, and its config map when time-slicing is on."""

    daemonset_name: pulumi.Output[str]

    def __init__(self, name: str, args: DevicePluginArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-serving:index:DevicePlugin", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = {
            **args.labels,
            "app.kubernetes.io/name": "nvidia-device-plugin",
            "app.kubernetes.io/instance": name,
        }
        annotations: dict[str, str] = {}
        config_map_name: pulumi.Output[str] | None = None
        if args.time_slicing_replicas is not None:
            content = sharing_config(args.time_slicing_replicas)
            config_map = k8s.core.v1.ConfigMap(
                f"{name}-config",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{name}-config", namespace=args.namespace, labels=labels),
                data={CONFIG_FILE: content},
                opts=child,
            )
            config_map_name = config_map.metadata.name
            # The plugin reads its config once at start: a changed config must roll the pods.
            annotations["llm-serving/config-sha256"] = hashlib.sha256(content.encode()).hexdigest()

        daemonset = k8s.apps.v1.DaemonSet(
            name,
            metadata=k8s.meta.v1.ObjectMetaArgs(name=name, namespace=args.namespace, labels=labels),
            spec=k8s.apps.v1.DaemonSetSpecArgs(
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                update_strategy=k8s.apps.v1.DaemonSetUpdateStrategyArgs(type="RollingUpdate"),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels, annotations=annotations or None),
                    spec=plugin_pod_spec(args.image, config_map_name),
                ),
            ),
            opts=child,
        )
        self.daemonset_name = daemonset.metadata.name
        self.register_outputs({"daemonset_name": self.daemonset_name})
