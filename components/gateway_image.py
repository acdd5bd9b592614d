"""The gateway image, shipped by `pulumi up`: the stack's ECR repository and the image built from gateway_image/.

The tag is a hash of what the build reads (the files the Dockerfile copies, the Dockerfile, its .dockerignore and
the build arguments), computed here in plain Python: the render shows a new tag exactly when a new image would be
built, and an immutable ECR tag never has to be moved.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pulumi
import pulumi_aws.ecr as ecr
import pulumi_docker_build as docker_build

TAG_PREFIX = "src-"
TAG_HEX_CHARS = 16
# What the repository keeps: untagged layers (a failed or superseded push) go after a week, and the 30 newest images
# stay, so a rollback to a recent gateway needs no rebuild. A rule with tagStatus "any" must have the highest
# rulePriority (https://docs.aws.amazon.com/AmazonECR/latest/userguide/LifecyclePolicies.html, "Lifecycle policy
# evaluation rules").
LIFECYCLE_POLICY = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "Expire untagged images after 7 days",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 7,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": "Keep the 30 newest images",
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 30},
            "action": {"type": "expire"},
        },
    ]
}


def copied_sources(dockerfile: str) -> list[str]:
    """The context paths that the Dockerfile's COPY/ADD instructions read (not `--from=` stages)."""
    sources: list[str] = []
    for line in dockerfile.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        arguments = [word for word in words[1:] if not word.startswith("--")]
        if any(word.startswith("--from=") for word in words[1:]):
            continue
        sources += arguments[:-1]
    return sources


def ignored(relative: PurePosixPath, patterns: list[str]) -> bool:
    """Whether a .dockerignore excludes this path or a folder above it; `**/` matches zero or more folders
    (https://docs.docker.com/build/concepts/context/#dockerignore-files)."""
    parts = relative.parts
    for pattern in patterns:
        body = pattern.strip("/")
        anywhere = body.startswith("**/")
        body = body.removeprefix("**/")
        for end in range(1, len(parts) + 1):
            starts = range(end) if anywhere else range(1)
            if any(fnmatch.fnmatchcase("/".join(parts[start:end]), body) for start in starts):
                return True
    return False


def content_tag(context_dir: str | Path, build_args: dict[str, str]) -> str:
    """A deterministic tag for the image built from `context_dir`: the same files and arguments, the same tag."""
    root = Path(context_dir)
    dockerfile = (root / "Dockerfile").read_text()
    ignore_file = root / ".dockerignore"
    patterns = []
    if ignore_file.exists():
        patterns = [
            line.strip() for line in ignore_file.read_text().splitlines() if line.strip() and not line.startswith("#")
        ]
    files: set[Path] = {root / "Dockerfile"} | ({ignore_file} if ignore_file.exists() else set())
    for source in copied_sources(dockerfile):
        for path in [root / source, *sorted((root / source).rglob("*"))]:
            if path.is_file() and not ignored(PurePosixPath(path.relative_to(root).as_posix()), patterns):
                files.add(path)
    digest = hashlib.sha256(json.dumps(build_args, sort_keys=True).encode())
    for path in sorted(files, key=lambda item: item.relative_to(root).as_posix()):
        content = path.read_bytes()
        # Name and length before the bytes, so moving bytes from one file to the next changes the hash.
        digest.update(f"\0{path.relative_to(root).as_posix()}\0{len(content)}\0".encode())
        digest.update(content)
    return TAG_PREFIX + digest.hexdigest()[:TAG_HEX_CHARS]


@dataclass
class GatewayImageArgs:
    """`repository_name`: the ECR repository to create; `context_dir`: the build context (with its Dockerfile),
    relative to the directory `pulumi up` runs in; `platforms`: e.g. linux/amd64; `build_args`: the Dockerfile's ARGs
    (also part of the tag). The repository's tags come from the AWS provider's default tags."""

    repository_name: str
    context_dir: str
    platforms: list[str]
    build_args: dict[str, str] = field(default_factory=dict)


class GatewayImage(pulumi.ComponentResource):
    repository_url: pulumi.Output[str]
    tag: str
    ref: pulumi.Output[str]

    def __init__(self, name: str, args: GatewayImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llm-serving:index:GatewayImage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        repository = ecr.Repository(
            f"{name}-repo",
            name=args.repository_name,
            # A tag names one build for good: a content tag that points elsewhere later would be a lie.
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            # Every image here is rebuilt from the repository's own source: `pulumi destroy` may remove them with it.
            force_delete=True,
            opts=child,
        )
        ecr.LifecyclePolicy(
            f"{name}-lifecycle", repository=repository.name, policy=json.dumps(LIFECYCLE_POLICY), opts=child
        )
        self.tag = content_tag(args.context_dir, args.build_args)
        token = ecr.get_authorization_token_output(
            registry_id=repository.registry_id, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        image = docker_build.Image(
            f"{name}-build",
            context=docker_build.BuildContextArgs(location=args.context_dir),
            dockerfile=docker_build.DockerfileArgs(location=f"{args.context_dir}/Dockerfile"),
            platforms=[docker_build.Platform(platform) for platform in args.platforms],
            build_args=args.build_args,
            tags=[repository.repository_url.apply(lambda url: f"{url}:{self.tag}")],
            push=True,
            registries=[
                docker_build.RegistryArgs(
                    address=repository.repository_url.apply(lambda url: url.split("/", 1)[0]),
                    username=token.user_name,
                    # The token is a password for 12 hours: it stays a secret in the state and in the render.
                    password=pulumi.Output.secret(token.password),
                )
            ],
            opts=child,
        )
        self.repository_url = repository.repository_url
        # The pushed tag with the digest it resolved to: a pod pulls exactly the image this update built.
        self.ref = image.ref
        self.register_outputs({"repository_url": self.repository_url, "ref": self.ref})
