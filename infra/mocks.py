"""What the cloud would answer, for the offline render and the tests: stable ids and plausible outputs.

Every id and ARN is derived from the resource's name, never random, so two renders are byte-identical.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pulumi

ACCOUNT_ID = "123456789012"


class RenderMocks(pulumi.runtime.Mocks):
    def __init__(self, region: str) -> None:
        self.region = region

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        name = args.name
        state.setdefault("arn", f"arn:aws:mock:{self.region}:{ACCOUNT_ID}:{args.typ.split(':')[-1].lower()}/{name}")
        if args.typ == "aws:eks/cluster:Cluster":
            state["endpoint"] = f"https://{name}.gr7.{self.region}.eks.amazonaws.com"
            state["certificateAuthority"] = {"data": "LS0tLS1CRUdJTi1NT0NLLUNB"}
            # EKS creates the cluster security group and reports its id.
            state["vpcConfig"] = {**state.get("vpcConfig", {}), "clusterSecurityGroupId": f"sg-{name}"}
            state["identities"] = [
                {"oidcs": [{"issuer": f"https://oidc.eks.{self.region}.amazonaws.com/id/{name.upper()}"}]}
            ]
        elif args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state["latestVersion"] = 1
        elif args.typ == "aws:ecr/repository:Repository":
            state["registryId"] = ACCOUNT_ID
            state["repositoryUrl"] = f"{ACCOUNT_ID}.dkr.ecr.{self.region}.amazonaws.com/{state.get('name', name)}"
        elif args.typ == "docker-build:index:Image":
            # The pushed tag with the digest the registry would answer (docker-build's `ref` output): a stand-in
            # derived from the tag, so a new content tag shows as a new ref in the render.
            tag = str((state.get("tags") or [name])[0])
            state["digest"] = "sha256:" + hashlib.sha256(tag.encode()).hexdigest()
            state["ref"] = f"{tag}@{state['digest']}"
        elif args.typ == "aws:iam/role:Role":
            state.setdefault("name", name)
        return f"{name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {
                "names": [f"{self.region}{zone}" for zone in "abc"],
                "zoneIds": [f"use1-az{i}" for i in (1, 2, 4)],
            }, []
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/render",
                "userId": "render",
            }, []
        if args.token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            # A registry password the render must never show (tests/test_secrets_leak.py): marked secret by the caller.
            return {
                "authorizationToken": "QVdTOm1vY2stZWNyLXBhc3N3b3Jk",
                "userName": "AWS",
                "password": "mock-ecr-password",
                "proxyEndpoint": f"https://{ACCOUNT_ID}.dkr.ecr.{self.region}.amazonaws.com",
                "expiresAt": "2026-01-01T12:00:00Z",
                "registryId": ACCOUNT_ID,
            }, []
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com"}, []
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region}, []
        return {}, []
