"""The Kubernetes manifests (k8s/): every kustomization renders with
`kubectl kustomize`, the output passes `kubernetes-validate --strict` for a
current Kubernetes, the files pass yamllint, and the rendered objects hold
together (probes, limits, non-root, read-only root, the migration gate, the
references between objects). No cluster runs here: what only a real one shows
is listed in docs/scaling.md."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.project import PROJECT_DIR

K8S = PROJECT_DIR / "k8s"
KUSTOMIZATIONS = ["base", "overlays/aws"]
# The newest Kubernetes that kubernetes-validate (requirements-dev.txt) has schemas for.
KUBERNETES_VERSION = "1.37.0"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """The pinned tool in .venv (requirements-dev.txt), else one on PATH."""
    if (BIN / name).exists():
        return str(BIN / name)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (scripts/test.sh installs it from requirements-dev.txt)")
    return found


def k8s_copy(tmp_path: Path, *, with_secrets: bool = True) -> Path:
    """k8s/ as an operator has it: each overlay's git-ignored secrets.env filled
    in (here from its example)."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("secrets.env"))
    if with_secrets:
        for example in copy.rglob("secrets.env.example"):
            shutil.copy(example, example.with_suffix(""))
    return copy


def render(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run([tool("kubectl"), "kustomize", str(directory)], capture_output=True, text=True)


def rendered(tmp_path: Path, kustomization: str) -> list[dict]:
    result = render(k8s_copy(tmp_path) / kustomization)
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, str(path)],
        capture_output=True,
        text=True,
    )


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def test_every_kustomization_is_tested():
    on_disk = sorted(str(p.parent.relative_to(K8S)) for p in K8S.rglob("kustomization.yaml"))
    assert on_disk == sorted(KUSTOMIZATIONS)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_each_kustomization_renders_and_validates_strictly(tmp_path, kustomization):
    objects = rendered(tmp_path, kustomization)
    kinds = {o["kind"] for o in objects}
    assert {
        "Deployment",
        "Job",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "Secret",
    } <= kinds
    output = tmp_path / "rendered.yaml"
    output.write_text(yaml.safe_dump_all(objects))
    result = validate(output)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = [line for line in result.stdout.splitlines() if " passed for resource " in line]
    assert len(passed) == len(objects), result.stdout


def test_strict_validation_refuses_an_unknown_field(tmp_path):
    """The validator really checks: a misspelt field in the Deployment fails."""
    objects = rendered(tmp_path, "base")
    one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    output = tmp_path / "broken.yaml"
    output.write_text(yaml.safe_dump_all(objects))
    result = validate(output)
    assert result.returncode != 0
    assert "readinesProbe" in result.stdout + result.stderr


def test_yamllint_passes():
    files = [str(p) for p in sorted(K8S.rglob("*.yaml"))]
    result = subprocess.run(
        [tool("yamllint"), "--strict", "-c", str(K8S / ".yamllint.yml"), *files],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def image_uid() -> int:
    """The app image's own user (docker/app.Dockerfile), which owns its files."""
    match = re.search(r"--uid (\d+)", (PROJECT_DIR / "docker" / "app.Dockerfile").read_text())
    assert match, "docker/app.Dockerfile no longer creates its user with a fixed --uid"
    return int(match[1])


def pod_containers(pod_spec: dict) -> list[dict]:
    return pod_spec.get("initContainers", []) + pod_spec["containers"]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_pods_run_as_non_root_on_a_read_only_root_with_limits(tmp_path, kustomization):
    objects = rendered(tmp_path, kustomization)
    for owner in (one(objects, "Deployment"), one(objects, "Job")):
        pod = owner["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == image_uid()
        assert pod["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod_containers(pod):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_probes_migration_gate_and_references_hold_together(tmp_path, kustomization):
    objects = rendered(tmp_path, kustomization)
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    app = pod["containers"][0]

    readiness, liveness = app["readinessProbe"]["httpGet"], app["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/healthz"
    assert liveness["path"] == "/"  # a database outage must not restart every pod
    for probe in (readiness, liveness):
        assert probe["port"] == "http"
        # A Host the app always answers: the default (the pod's address) is refused.
        assert {"name": "Host", "value": "localhost"} in probe["httpHeaders"]
    assert any(p["name"] == "http" and p["containerPort"] == 8000 for p in app["ports"])

    # New pods serve only after the migration Job: their init container waits for it.
    (gate,) = pod["initContainers"]
    assert "migrate --check" in " ".join(gate["command"])
    job_command = one(objects, "Job")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert job_command == ["python", "manage.py", "migrate", "--noinput"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

    # Configuration from the ConfigMap, secrets from the Secret, by their generated names.
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for owner in (deployment, one(objects, "Job")):
        for container in pod_containers(owner["spec"]["template"]["spec"]):
            sources = container["envFrom"]
            config = [s["configMapRef"]["name"] for s in sources if "configMapRef" in s]
            secret = [s["secretRef"]["name"] for s in sources if "secretRef" in s]
            assert len(config) == len(secret) == 1
            assert ("ConfigMap", config[0]) in names
            assert ("Secret", secret[0]) in names
    settings = one(objects, "ConfigMap")["data"]
    assert "DJANGO_SECRET_KEY" not in settings and "DATABASE_URL" not in settings
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= set(one(objects, "Secret")["data"])

    service = one(objects, "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    backend = one(objects, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": service["metadata"]["name"], "port": {"name": "http"}}
    assert one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = one(objects, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


def test_the_aws_overlay_uses_rds_elasticache_an_alb_and_git_ignored_secrets(tmp_path):
    objects = rendered(tmp_path, "overlays/aws")
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {"shortener"}
    ingress = one(objects, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "alb"
    assert ingress["metadata"]["annotations"]["alb.ingress.kubernetes.io/target-type"] == "ip"
    images = {c["image"] for c in pod_containers(one(objects, "Deployment")["spec"]["template"]["spec"])}
    assert len(images) == 1 and ".dkr.ecr." in images.pop()

    example = (K8S / "overlays/aws/secrets.env.example").read_text()
    assert ".rds.amazonaws.com" in example and "rediss://" in example and ".cache.amazonaws.com" in example
    # The real file never enters git, and without it nothing renders.
    assert "secrets.env" in (K8S / ".gitignore").read_text().splitlines()
    missing = render(k8s_copy(tmp_path / "bare", with_secrets=False) / "overlays/aws")
    assert missing.returncode != 0
    assert "secrets.env" in missing.stderr


def test_the_base_secret_is_a_placeholder():
    """The base renders without secrets, and nobody could mistake its values for real ones."""
    base = yaml.safe_load((K8S / "base/kustomization.yaml").read_text())
    (generator,) = base["secretGenerator"]
    values = dict(literal.split("=", 1) for literal in generator["literals"])
    assert "PLACEHOLDER" in values["DJANGO_SECRET_KEY"]
    assert "PLACEHOLDER" in values["DATABASE_URL"]
