"""deploy/k8s/: every manifest is valid against the Kubernetes schema (kubernetes-validate,
strict: unknown fields are errors), and the facts the deployment relies on hold: the
processor (StatefulSet) keeps its state on a persistent volume claim, the server (Deployment)
mounts that claim on the processor's node and is ready only on the gRPC health service, each
Service selects the right pods, configuration comes from the ConfigMap (and is valid for
Pulse), secrets from the Secret."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from pulse.config import load_config

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
STATE_DIR = "/var/lib/pulse"
PROCESSOR_CLAIM = "state-pulse-0"  # <volumeClaimTemplate>-<StatefulSet>-<ordinal>


def manifests() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


def by_kind(kind: str) -> list[dict]:
    return [doc for _name, doc in manifests() if doc["kind"] == kind]


def one(kind: str, name: str) -> dict:
    found = [doc for doc in by_kind(kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name!r} in deploy/k8s, found {len(found)}"
    return found[0]


def workloads() -> dict[str, dict]:
    """The processor's StatefulSet and the server's Deployment, by the container they run."""
    return {"processor": one("StatefulSet", "pulse"), "serve": one("Deployment", "pulse-server")}


def pod_spec(container: str) -> dict:
    return workloads()[container]["spec"]["template"]["spec"]


def containers() -> dict[str, dict]:
    found = {}
    for name, workload in workloads().items():
        cs = workload["spec"]["template"]["spec"]["containers"]
        assert [c["name"] for c in cs] == [name], f"{workload['metadata']['name']}: {[c['name'] for c in cs]}"
        found[name] = cs[0]
    return found


def pod_labels(container: str) -> dict:
    return workloads()[container]["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict, labels: dict) -> bool:
    return selector.items() <= labels.items()


def validate(doc: dict) -> str:
    """Strict schema validation for the Kubernetes version kubernetes-validate defaults to."""
    return kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_there_are_manifests_of_each_kind():
    kinds = {doc["kind"] for _name, doc in manifests()}
    assert {"StatefulSet", "Deployment", "Service", "ConfigMap", "Secret"} <= kinds


@pytest.mark.parametrize("name,doc", manifests(), ids=lambda v: v if isinstance(v, str) else v["metadata"]["name"])
def test_manifest_is_valid_against_the_kubernetes_schema(name, doc):
    try:
        version = validate(doc)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']} is invalid for Kubernetes "
                    f"{exc.version} at {where}: {exc.message}")
    except kubernetes_validate.SchemaNotFoundError as exc:  # a kind the schema does not know is an error too
        pytest.fail(f"{name}: {exc.message}")
    assert version == ".".join(kubernetes_validate.latest_version().split(".")[:2])


def test_the_validator_is_strict_about_unknown_and_mistyped_fields():
    sts = one("StatefulSet", "pulse")
    typo = copy.deepcopy(sts)
    typo["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # "resources" misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(typo)
    wrong_type = copy.deepcopy(sts)
    wrong_type["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(wrong_type)


def test_processor_keeps_rocksdb_and_recovery_on_a_persistent_volume_claim():
    sts = one("StatefulSet", "pulse")
    claims = {c["metadata"]["name"]: c for c in sts["spec"]["volumeClaimTemplates"]}
    assert "state" in claims and claims["state"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    processor = containers()["processor"]
    assert processor["args"] == ["run"]
    mounts = {m["name"]: m["mountPath"] for m in processor["volumeMounts"]}
    assert mounts["state"] == STATE_DIR
    env = {e["name"]: e for e in processor["env"]}
    assert env["PULSE_STATE_DIR"]["value"] == STATE_DIR
    # The claim is not also a pod volume (that would shadow the per-replica claim).
    assert "state" not in {v["name"] for v in sts["spec"]["template"]["spec"].get("volumes", [])}
    assert sts["spec"]["replicas"] == 1  # one writer per state directory


def test_workloads_have_distinct_components_and_select_their_own_pods():
    for name, workload in workloads().items():
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selects(selector, pod_labels(name)), name
        assert "app.kubernetes.io/component" in selector, name
    assert pod_labels("processor")["app.kubernetes.io/component"] == "processor"
    assert pod_labels("serve")["app.kubernetes.io/component"] == "server"
    # Neither workload's selector claims the other's pods.
    assert not selects(workloads()["processor"]["spec"]["selector"]["matchLabels"], pod_labels("serve"))
    assert not selects(workloads()["serve"]["spec"]["selector"]["matchLabels"], pod_labels("processor"))


def test_server_mounts_the_processors_claim_on_the_processors_node():
    sts = one("StatefulSet", "pulse")
    deployment = one("Deployment", "pulse-server")
    # The claim name the StatefulSet creates for its only replica.
    template = sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    assert sts["spec"]["replicas"] == 1
    assert f"{template}-{sts['metadata']['name']}-0" == PROCESSOR_CLAIM
    volumes = {v["name"]: v for v in pod_spec("serve")["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == PROCESSOR_CLAIM
    assert not volumes["state"]["persistentVolumeClaim"].get("readOnly", False)  # readers/<pid>/
    serve = containers()["serve"]
    mount = {m["name"]: m for m in serve["volumeMounts"]}["state"]
    assert mount["mountPath"] == STATE_DIR and not mount.get("readOnly", False)
    assert {e["name"]: e for e in serve["env"]}["PULSE_STATE_DIR"]["value"] == STATE_DIR
    # A ReadWriteOnce volume is shared only on one node: required affinity to the processor pod.
    terms = pod_spec("serve")["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert any(t["topologyKey"] == "kubernetes.io/hostname"
               and selects(t["labelSelector"]["matchLabels"], pod_labels("processor"))
               and not selects(t["labelSelector"]["matchLabels"], pod_labels("serve"))
               for t in terms), terms
    # One reader pod at a time: no surge pod during an update.
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_server_is_ready_only_when_grpc_health_says_so():
    serve = containers()["serve"]
    assert serve["args"] == ["serve"]
    probe = serve["readinessProbe"]
    assert probe["grpc"]["port"] == 50051 and "service" not in probe["grpc"]  # "" = overall health
    assert {p["name"]: p["containerPort"] for p in serve["ports"]}["grpc"] == 50051
    # Liveness must not use health: NOT_SERVING while the store is created is not a crash.
    assert "grpc" not in serve["livenessProbe"]
    grpc_service = one("Service", "pulse-grpc")
    assert grpc_service["spec"]["ports"][0]["port"] == 50051
    assert selects(grpc_service["spec"]["selector"], pod_labels("serve"))
    assert not selects(grpc_service["spec"]["selector"], pod_labels("processor"))


def test_prometheus_reaches_processor_and_server_metrics():
    """Headless Services for scraping: processor metrics on 9464, server metrics on 9465, each
    Service selecting only the pods that serve that port."""
    sts = one("StatefulSet", "pulse")
    governing = one("Service", sts["spec"]["serviceName"])
    assert governing["spec"]["clusterIP"] == "None"
    assert selects(governing["spec"]["selector"], pod_labels("processor"))
    container_ports = {name: {p["containerPort"] for p in c["ports"]} for name, c in containers().items()}
    reached = {"processor": set(), "serve": set()}
    for service in by_kind("Service"):
        if service["spec"].get("clusterIP") != "None":
            continue
        for name in reached:
            if selects(service["spec"]["selector"], pod_labels(name)):
                for port in service["spec"]["ports"]:
                    target = port.get("targetPort", port["port"])
                    # A Service selecting a pod without its port would give Prometheus a dead target.
                    assert target in container_ports[name], (service["metadata"]["name"], name, target)
                    reached[name].add(target)
    assert 9464 in reached["processor"] and 9465 in reached["serve"], reached


SECRET_ENV = {
    "processor": {"PULSE_KAFKA_CONSUMER__SASL_PASSWORD": "sasl-password",
                  "PULSE_KAFKA_PRODUCER__SASL_PASSWORD": "sasl-password",
                  "PULSE_PRIVACY_PII_SECRET": "pii-secret"},
    "serve": {"PULSE_KAFKA_PRODUCER__SASL_PASSWORD": "sasl-password",
              "PULSE_SERVING_ADMIN_API_KEY": "admin-api-key"},
}


def test_secrets_come_from_the_secret_and_config_from_the_configmap():
    secret = one("Secret", "pulse-secrets")
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    toml = one("ConfigMap", "pulse-config")["data"]["pulse.toml"]
    for name, container in containers().items():
        volumes = {v["name"]: v for v in pod_spec(name)["volumes"]}
        assert volumes["config"]["configMap"]["name"] == "pulse-config", name
        env = {e["name"]: e for e in container["env"]}
        mount = {m["name"]: m for m in container["volumeMounts"]}["config"]
        assert mount["readOnly"] is True
        assert env["PULSE_CONFIG"]["value"] == mount["mountPath"] + "/pulse.toml", name
        for var, key in SECRET_ENV[name].items():
            ref = env[var]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "pulse-secrets" and ref["key"] == key and key in keys, (name, var)
        for e in container["env"]:  # nothing secret spelled out
            assert "valueFrom" in e or not any(w in e["name"] for w in ("PASSWORD", "SECRET", "KEY")), e
    # The PII secret is required (the processor refuses to start without it); the admin key is not.
    processor_env = {e["name"]: e for e in containers()["processor"]["env"]}
    assert not processor_env["PULSE_PRIVACY_PII_SECRET"]["valueFrom"]["secretKeyRef"].get("optional", False)
    # No secret in the ConfigMap.
    for word in ("password", "pii_secret", "admin_api_key"):
        assert word not in toml.lower(), word


def test_configmap_is_a_valid_pulse_configuration(tmp_path):
    toml = one("ConfigMap", "pulse-config")["data"]["pulse.toml"]
    tomllib.loads(toml)
    path = tmp_path / "pulse.toml"
    path.write_text(toml)
    for name, container in containers().items():
        env = {e["name"]: e.get("value", "from-secret") for e in container["env"]}
        cfg = load_config(path, env)
        assert cfg.state.dir == STATE_DIR, name
        assert cfg.kafka.producer["sasl.password"] == "from-secret", name
        if name == "processor":
            assert cfg.kafka.consumer["sasl.password"] == "from-secret"
        # Reachable from outside the pod: Prometheus scrapes, clients call gRPC.
        assert cfg.processor.metrics_host == cfg.serving.metrics_host == "0.0.0.0"
        assert cfg.serving.grpc_address == "0.0.0.0:50051"
        ports = {p["containerPort"] for p in container["ports"]}
        expected = {"processor": {cfg.processor.metrics_port}, "serve": {cfg.serving.metrics_port, 50051}}[name]
        assert ports == expected, name


def test_pods_run_as_non_root_with_limits_and_no_service_link_variables():
    for name, c in containers().items():
        spec = pod_spec(name)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        # Both pods write the shared volume as the same group.
        assert spec["securityContext"]["fsGroup"] == pod_spec("processor")["securityContext"]["fsGroup"], name
        # Service links would inject PULSE_GRPC_PORT & co., which Pulse rejects as unknown settings.
        assert spec["enableServiceLinks"] is False, name
        assert c["securityContext"]["allowPrivilegeEscalation"] is False, name
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], name
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{name}: {kind}"


def test_configmap_segments_are_valid_and_mounted_where_the_configuration_points(tmp_path):
    from operators.segments import parse_segments

    data = one("ConfigMap", "pulse-config")["data"]
    cfg = load_config(_write(tmp_path / "pulse.toml", data["pulse.toml"]), {})
    segset = parse_segments(data["segments.yaml"], "configmap:segments.yaml")
    assert len(segset.segments) >= 10
    assert (REPO / "deploy" / "segments.yaml").read_text().strip() == data["segments.yaml"].strip(), \
        "the ConfigMap's segments.yaml drifted from deploy/segments.yaml"
    mount = one("StatefulSet", "pulse")["spec"]["template"]["spec"]
    config_volume = next(v for v in mount["volumes"] if v["name"] == "config")
    paths = {item["path"] for item in config_volume["configMap"]["items"]}
    mount_path = next(m["mountPath"] for c in mount["containers"] for m in c["volumeMounts"] if m["name"] == "config")
    assert cfg.segments.path == f"{mount_path}/segments.yaml" and "segments.yaml" in paths


def _write(path, text):
    path.write_text(text)
    return path
