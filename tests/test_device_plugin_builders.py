"""The device plugin's pure builders, against NVIDIA's static manifest
(NVIDIA/k8s-device-plugin deployments/static/nvidia-device-plugin.yml: the kubelet's device-plugin directory as a
hostPath, nothing else) and its config-file docs (CONFIG_FILE env var)."""

from __future__ import annotations

from components.device_plugin import plugin_container, plugin_pod_spec
from tests.plain import plain


def test_whole_gpus_need_only_the_kubelet_socket_directory() -> None:
    pod = plain(plugin_pod_spec("plugin:1", None))
    assert pod["volumes"] == [
        {"name": "device-plugin", "hostPath": {"path": "/var/lib/kubelet/device-plugins", "type": "Directory"}}
    ]
    (container,) = pod["containers"]
    assert container["env"] == [{"name": "FAIL_ON_INIT_ERROR", "value": "true"}]
    assert container["volumeMounts"] == [{"name": "device-plugin", "mountPath": "/var/lib/kubelet/device-plugins"}]
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]}]


def test_time_slicing_mounts_the_config_read_only_and_points_the_plugin_at_it() -> None:
    pod = plain(plugin_pod_spec("plugin:1", "dp-config"))
    assert pod["volumes"][-1] == {"name": "config", "configMap": {"name": "dp-config"}}
    container = plain(plugin_container("plugin:1", "dp-config"))
    assert container["env"][-1] == {"name": "CONFIG_FILE", "value": "/etc/nvidia-device-plugin/config.yaml"}
    assert container["volumeMounts"][-1] == {
        "name": "config",
        "mountPath": "/etc/nvidia-device-plugin",
        "readOnly": True,
    }
