"""docs/kubernetes and the Dockerfile, checked offline (neither is run on a cluster or built here):
every manifest against the Kubernetes API's schemas (kubernetes-validate, strict), the probes,
the selectors, the ConfigMap's params.py through the module's own settings check, and the
Dockerfile's install steps against the Makefile's."""
import re
from pathlib import Path

import pytest
import yaml

from params.recognition import load_recognition_settings

kubernetes_validate = pytest.importorskip("kubernetes_validate",
                                          reason="the test extra: pip install kubernetes-validate")

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = sorted((REPO / "docs" / "kubernetes").glob("*.yaml"))
KUBERNETES_VERSION = "1.30.0"


def resources():
    return {(doc["kind"], doc["metadata"]["name"]): doc
            for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_each_manifest_fits_the_kubernetes_schema(path):
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_deployment_probes_ready_and_health_and_everything_selects_it():
    found = resources()
    deployment = found[("Deployment", "rec-system")]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["command"][:4] == ["hub", "serving", "start", "-m"]
    port = container["command"][container["command"].index("-p") + 1]
    assert container["ports"][0]["containerPort"] == int(port)
    for kind in ("Service", "PodDisruptionBudget"):
        spec = found[(kind, "rec-system")]["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector.items() <= pod_labels.items(), kind
    assert found[("HorizontalPodAutoscaler", "rec-system")]["spec"]["scaleTargetRef"]["name"] == "rec-system"
    assert found[("PodDisruptionBudget", "rec-system")]["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    [mount] = container["volumeMounts"]
    config_map = found[("ConfigMap", deployment["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"])]
    assert mount["subPath"] in config_map["data"]


def test_the_configmap_params_pass_the_modules_check_with_the_gallery_on_the_milvus_service():
    config_map = resources()[("ConfigMap", "rec-system-params")]
    namespace = {}
    exec(config_map["data"]["params.py"], namespace)  # noqa: S102 - our own manifest, as PaddleHub imports it
    settings = load_recognition_settings(namespace["PARAMS"])
    milvus_service = resources()[("Service", "milvus")]
    assert settings.gallery.index_backend == "milvus"
    assert settings.gallery.milvus.uri == f"http://milvus:{milvus_service['spec']['ports'][0]['port']}"


def test_the_dockerfile_installs_what_the_makefile_does():
    dockerfile, makefile = (REPO / "Dockerfile").read_text(), (REPO / "Makefile").read_text()
    assert "NOT BUILT HERE" in dockerfile
    no_deps = re.search(r"--no-deps (.+)", makefile).group(1).strip()
    assert f"--no-deps {no_deps}" in dockerfile
    assert "derived_models prepare" in dockerfile and "constraints.txt" in dockerfile
    assert re.search(r"'\./src\[server,milvus\]'", dockerfile) and "[server," in makefile
