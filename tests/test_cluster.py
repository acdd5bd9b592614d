"""The EKS cluster and GPU node groups under the Pulumi mocks: version, encryption, access, IRSA, nodes."""

from __future__ import annotations

import json

from tests.conftest import one, rendered, resources_of


def test_cluster_version_comes_from_config_and_secrets_are_encrypted_with_a_rotating_kms_key() -> None:
    result = rendered("prod")
    cluster = one(result, "aws:eks/cluster:Cluster")
    assert cluster["version"] == "1.35"
    assert cluster["encryptionConfig"]["resources"] == ["secrets"]
    key = one(result, "aws:kms/key:Key")
    assert key["enableKeyRotation"] is True
    assert cluster["encryptionConfig"]["provider"]["keyArn"].endswith("llm-serving-prod-secrets-key")


def test_prod_endpoint_is_private_and_dev_public_endpoint_has_an_allow_list() -> None:
    prod = one(rendered("prod"), "aws:eks/cluster:Cluster")["vpcConfig"]
    assert prod["endpointPublicAccess"] is False and prod["endpointPrivateAccess"] is True
    dev = one(rendered("dev"), "aws:eks/cluster:Cluster")["vpcConfig"]
    assert dev["endpointPublicAccess"] is True
    assert dev["publicAccessCidrs"] == ["203.0.113.0/24"]


def test_oidc_provider_for_irsa_and_the_ebs_csi_role_trusts_only_its_service_account() -> None:
    result = rendered("staging")
    oidc = one(result, "aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert oidc["clientIdLists"] == ["sts.amazonaws.com"]
    assert oidc["url"].startswith("https://oidc.eks.us-east-1.amazonaws.com/id/")
    role = one(result, "aws:iam/role:Role", "llm-serving-staging-ebs-csi-role")
    statement = json.loads(role["assumeRolePolicy"])["Statement"][0]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    subjects = {key: value for key, value in statement["Condition"]["StringEquals"].items() if key.endswith(":sub")}
    assert list(subjects.values()) == ["system:serviceaccount:kube-system:ebs-csi-controller-sa"]


def test_system_node_group_is_cpu_on_demand_with_scaling_from_config() -> None:
    group = one(rendered("prod"), "aws:eks/nodeGroup:NodeGroup", "llm-serving-prod-system")
    assert group["amiType"] == "AL2023_x86_64_STANDARD"
    assert group["capacityType"] == "ON_DEMAND"
    assert group["instanceTypes"] == ["m7i.xlarge", "m6i.xlarge"]
    assert group["scalingConfig"] == {"minSize": 3, "desiredSize": 3, "maxSize": 6}
    assert "taints" not in group


def test_gpu_node_group_uses_the_nvidia_ami_the_gpu_taint_and_labels_pods_select() -> None:
    # prod's 4-GPU group is the stacks' one `provisioner: managed` group.
    group = one(rendered("prod"), "aws:eks/nodeGroup:NodeGroup", "llm-serving-prod-gpu-l40s-x4")
    assert group["amiType"] == "AL2023_x86_64_NVIDIA"
    assert group["capacityType"] == "ON_DEMAND"
    assert group["instanceTypes"] == ["g6e.12xlarge"]
    assert group["scalingConfig"] == {"minSize": 2, "desiredSize": 2, "maxSize": 3}
    assert group["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert group["labels"]["llm-serving/node-group"] == "llm-serving-prod-gpu-l40s-x4"
    assert group["labels"]["llm-serving/gpu-model"] == "L40S"
    assert group["labels"]["nvidia.com/gpu.present"] == "true"
    # The Karpenter groups get no managed node group.
    assert not [r for r in resources_of(rendered("dev"), "aws:eks/nodeGroup:NodeGroup") if "gpu" in r.name]


def test_every_launch_template_requires_imdsv2_and_an_encrypted_gp3_root_volume() -> None:
    for stack in ("dev", "staging", "prod"):
        templates = resources_of(rendered(stack), "aws:ec2/launchTemplate:LaunchTemplate")
        assert len(templates) == 1 + len([r for r in templates if "gpu" in r.name])
        for template in templates:
            metadata = template.inputs["metadataOptions"]
            assert metadata["httpTokens"] == "required"
            assert metadata["httpPutResponseHopLimit"] == 1
            ebs = template.inputs["blockDeviceMappings"][0]["ebs"]
            assert ebs["encrypted"] == "true" and ebs["volumeType"] == "gp3"


def test_gpu_root_volume_grows_with_the_weights_it_caches() -> None:
    def size(stack: str, name: str) -> int:
        # A managed group's launch template, or a Karpenter pool's EC2NodeClass ("100Gi").
        templates = [
            r for r in resources_of(rendered(stack), "aws:ec2/launchTemplate:LaunchTemplate") if r.name == f"{name}-lt"
        ]
        if templates:
            return int(templates[0].inputs["blockDeviceMappings"][0]["ebs"]["volumeSize"])
        node_class = one(rendered(stack), "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass", f"{name}-node-class")
        return int(node_class["spec"]["blockDeviceMappings"][0]["ebs"]["volumeSize"].removesuffix("Gi"))

    # dev caches a 4-bit 8B model (~5 GiB) on the node; prod's 8B FP8 group caches ~8 GiB: both above the floor.
    assert size("dev", "llm-serving-dev-gpu-a10g") == 100
    assert size("prod", "llm-serving-prod-gpu-l40s") == 100
    # the 70B's weights live on a PVC, so its node only needs the image.
    assert size("prod", "llm-serving-prod-gpu-l40s-x4") == 100


def test_node_roles_get_only_the_three_worker_policies() -> None:
    expected = [
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
        "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
        "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    ]
    attachments = resources_of(rendered("prod"), "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    for role in ("llm-serving-prod-gpu-l40s-x4-role", "llm-serving-prod-karpenter-node-role"):
        # The managed group's nodes and the nodes Karpenter launches: no SSM (the upstream template adds it).
        assert sorted(r.inputs["policyArn"] for r in attachments if r.inputs["role"] == role) == expected, role


def test_kubeconfig_authenticates_through_aws_eks_get_token() -> None:
    provider = one(rendered("dev"), "pulumi:providers:kubernetes")
    kubeconfig = json.loads(provider["kubeconfig"])
    user = kubeconfig["users"][0]["user"]["exec"]
    assert user["command"] == "aws"
    assert user["args"] == ["eks", "get-token", "--cluster-name", "llm-serving-dev", "--region", "us-east-1"]


def test_a_default_encrypted_gp3_storage_class_backs_the_volume_claims() -> None:
    objects = rendered("prod").kubernetes_objects()
    classes = [obj for obj in objects if obj["kind"] == "StorageClass"]
    assert [obj["metadata"]["name"] for obj in classes] == ["gp3"]
    assert classes[0]["provisioner"] == "ebs.csi.aws.com"
    assert classes[0]["parameters"] == {
        "type": "gp3",
        "encrypted": "true",
        "fsType": "ext4",
        "throughput": "250",
        "iops": "3000",
    }
    assert classes[0]["volumeBindingMode"] == "WaitForFirstConsumer"
    assert not [obj for obj in rendered("local").kubernetes_objects() if obj["kind"] == "StorageClass"]
