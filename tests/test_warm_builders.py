"""builders.mode 'warm': config, the per-project daemon the program creates, its certificates, its CI/CD
variables, and the pack's checks (every piece attacked with variants)."""

from __future__ import annotations

import base64
import copy
import datetime
from collections.abc import Callable
from typing import Any

import pytest
from conftest import make_config
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from components import builder_certificates as certs
from components.config import ConfigError, parse_config
from components.warm_builder import address, gc_flags
from verify.harness import ProgramRun, run_program, unwrap_secrets
from verify.policy_client import PolicyPack, ResourceInput

WARM = {"mode": "warm"}
STATEFULSET = "kubernetes:apps/v1:StatefulSet"


def error_of(raw: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return str(info.value)


@pytest.fixture(scope="module")
def warm_run() -> ProgramRun:
    return run_program(make_config(builders=WARM))


def resources_of(run: ProgramRun) -> list[ResourceInput]:
    return [ResourceInput(r.type, r.name, r.urn, r.inputs) for r in run.resources if r.custom]


def mandatory(pack: PolicyPack, resources: list[ResourceInput]) -> list[str]:
    return sorted({d.policy for d in pack.analyze_all(resources) if d.level == "mandatory"})


def messages(pack: PolicyPack, resources: list[ResourceInput], policy: str) -> list[str]:
    return [d.message for d in pack.analyze_all(resources) if d.policy == policy]


def changed(resources: list[ResourceInput], typ: str, name: str, change: Callable[[dict[str, Any]], None]) -> list[ResourceInput]:
    out = []
    for r in resources:
        props = copy.deepcopy(dict(unwrap_secrets(r.props)))
        if r.type == typ and r.name == name:
            change(props)
        out.append(ResourceInput(r.type, r.name, r.urn, props))
    return out


# --- config --------------------------------------------------------------------------------------------


def test_ephemeral_is_the_default_and_creates_no_daemon() -> None:
    run = run_program(make_config())
    assert parse_config(make_config()).builders.mode == "ephemeral"
    assert not run.of_type(STATEFULSET)
    assert not [r for r in run.of_type("gitlab:index/projectVariable:ProjectVariable") if r.inputs["key"].startswith("BUILDKIT_TLS")]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"builders": {"mode": "hot"}}, "builders.mode = \"hot\": Input should be 'ephemeral' or 'warm'"),
        (
            {"builders": {**WARM, "warm": {"namespace": "gitlab-runner-jobs"}}},
            'builders.warm.namespace = "gitlab-runner-jobs": must differ',
        ),
        (
            {"builders": {**WARM, "warm": {"storage": "10Gi", "gcMaxUsedSpace": "9.5Gi"}}},
            'builders.warm.gcMaxUsedSpace = "9.5Gi": must be at most 90%',
        ),
        ({"builders": {**WARM, "warm": {"cpuRequest": "8", "cpuLimit": "4"}}}, 'builders.warm.cpuRequest = "8": exceeds cpuLimit'),
        (
            {"builders": {**WARM, "warm": {"certificateValidityDays": 30, "certificateRenewBeforeDays": 30}}},
            "builders.warm.certificateRenewBeforeDays = 30: must be below certificateValidityDays",
        ),
        ({"builders": {**WARM, "warm": {"storage": "lots"}}}, "builders.warm.storage"),
        ({"builders": {**WARM, "warm": {"tls": True}}}, "builders.warm.tls: unknown key"),
    ],
)
def test_bad_warm_config_is_refused_naming_the_key(overrides: dict, fragment: str) -> None:
    assert fragment in error_of(make_config(**overrides))


def test_gc_keeps_the_state_below_the_configured_size() -> None:
    warm = parse_config(make_config(builders={**WARM, "warm": {"storage": "20Gi", "gcMaxUsedSpace": "10Gi"}})).builders.warm
    assert gc_flags(warm) == ["--oci-worker-gc", "--oci-worker-gc-keepstorage=1073,1073,10737"]  # MB of 10^6: reserved, free, max
    default = parse_config(make_config(builders=WARM)).builders.warm
    assert default.max_used_bytes() == int(50 * 2**30 * 0.7)


# --- what the program creates ----------------------------------------------------------------------------


def test_one_daemon_volume_certificate_and_service_per_project(warm_run: ProgramRun) -> None:
    daemons = {r.inputs["metadata"]["name"]: r.inputs for r in warm_run.of_type(STATEFULSET)}
    assert sorted(daemons) == ["buildkitd-acme-api", "buildkitd-acme-web"]
    for name, sts in daemons.items():
        spec = sts["spec"]
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        assert sts["metadata"]["namespace"] == "gitlab-runner-builders"
        assert spec["replicas"] == 1 and [c["metadata"]["name"] for c in spec["volumeClaimTemplates"]] == ["state"]
        assert [v["secret"]["secretName"] for v in pod["volumes"]] == [f"{name}-tls"]
        assert pod["automountServiceAccountToken"] is False
        assert container["image"] == "moby/buildkit:v0.25.1-rootless"
        args = container["args"]
        for flag in ("--tlscacert", "--tlscert", "--tlskey"):
            assert flag in args
        assert "tcp://0.0.0.0:1234" in args and "--oci-worker-no-process-sandbox" in args
        assert container["securityContext"]["allowPrivilegeEscalation"] is True and "privileged" not in str(
            container["securityContext"]
        ).replace("'privileged': False", "")
    services = [r.inputs for r in warm_run.of_type("kubernetes:core/v1:Service")]
    assert {s["spec"]["clusterIP"] for s in services if s["metadata"]["namespace"] == "gitlab-runner-builders"} == {"None"}


def test_the_builders_namespace_admits_only_the_job_namespace(warm_run: ProgramRun) -> None:
    policies = {r.inputs["metadata"]["name"]: r.inputs for r in warm_run.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")}
    ingress = policies["buildkitd-ingress"]
    assert ingress["metadata"]["namespace"] == "gitlab-runner-builders"
    assert ingress["spec"]["ingress"] == [
        {
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gitlab-runner-jobs"}}, "podSelector": {}}],
            "ports": [{"protocol": "TCP", "port": 1234}],
        }
    ]
    jobs = policies["jobs-to-buildkitd"]
    assert jobs["metadata"]["namespace"] == "gitlab-runner-jobs"
    assert jobs["spec"]["egress"][0]["to"][0]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "gitlab-runner-builders"}
    }


def test_without_network_isolation_no_policy_closes_the_jobs_egress() -> None:
    run = run_program(make_config(builders=WARM, network={"enabled": False, "policyEngine": "calico"}))
    assert not run.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")


def test_each_project_gets_its_own_protected_masked_client_certificate(warm_run: ProgramRun) -> None:
    variables = [unwrap_secrets(r.inputs) for r in warm_run.of_type("gitlab:index/projectVariable:ProjectVariable")]
    tls = {(v["project"], v["key"]): v for v in variables if v["key"].startswith("BUILDKIT_")}
    for project in ("acme/web", "acme/api"):
        host = tls[(project, "BUILDKIT_HOST")]
        assert host["value"] == address(project.replace("/", "-"), "gitlab-runner-builders") and host["protected"]
        for key in ("BUILDKIT_TLS_CA_B64", "BUILDKIT_TLS_CERT_B64", "BUILDKIT_TLS_KEY_B64"):
            assert tls[(project, key)]["protected"] and tls[(project, key)]["masked"], key
            value = tls[(project, key)]["value"]
            assert "\n" not in value and len(value) >= 8  # GitLab masks one-line values of 8 characters or more
        assert tls[(project, "BUILDKIT_TLS_KEY_B64")]["hidden"] is True
    key = next(r for r in warm_run.of_type("gitlab:index/projectVariable:ProjectVariable") if r.inputs["key"] == "BUILDKIT_TLS_KEY_B64")
    assert key.secret_paths() == {"value"}  # a Pulumi secret in state
    tls = next(r for r in warm_run.of_type("kubernetes:core/v1:Secret") if r.inputs["metadata"]["name"] == "buildkitd-acme-web-tls")
    assert "stringData" in tls.secret_paths() or {"stringData.key.pem"} <= tls.secret_paths()
    dynamic = next(r for r in warm_run.of_type("pulumi-python:dynamic:Resource") if r.name == "builder-acme-web-tls")
    assert {"caKeyPem", "serverKeyPem", "clientKeyPem"} <= set(dynamic.additional_secret_outputs)


def _pem(b64: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(b64))


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except (ValueError, TypeError, Exception):
        return False


def test_a_client_certificate_is_accepted_only_by_its_own_projects_ca(warm_run: ProgramRun) -> None:
    variables = [unwrap_secrets(r.inputs) for r in warm_run.of_type("gitlab:index/projectVariable:ProjectVariable")]
    get = {(v["project"], v["key"]): v["value"] for v in variables}
    web_ca, api_ca = _pem(get[("acme/web", "BUILDKIT_TLS_CA_B64")]), _pem(get[("acme/api", "BUILDKIT_TLS_CA_B64")])
    web_client = _pem(get[("acme/web", "BUILDKIT_TLS_CERT_B64")])
    assert _signed_by(web_client, web_ca) and not _signed_by(web_client, api_ca)
    assert web_client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    secrets = {
        r.inputs["metadata"]["name"]: unwrap_secrets(r.inputs)["stringData"]
        for r in warm_run.of_type("kubernetes:core/v1:Secret")
        if r.inputs["metadata"]["name"].endswith("-tls")
    }
    server = x509.load_pem_x509_certificate(secrets["buildkitd-acme-web-tls"]["cert.pem"].encode())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "buildkitd-acme-web.gitlab-runner-builders.svc" in names
    assert _signed_by(server, web_ca) and not _signed_by(server, api_ca)


def test_certificates_renew_with_the_same_ca_and_replace_on_a_new_identity() -> None:
    provider = certs.CertificatesProvider()
    props = {"project": "acme-web", "serverNames": ["d.ns.svc"], "validityDays": 90, "renewBeforeDays": 30}
    now = datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC)
    outs = certs.issue(props, now=now)
    assert not provider.diff("id", outs, props).changes or certs.due(outs, 30)  # fresh: nothing to do (unless the clock is past)
    assert certs.due(outs, 30, now=now + datetime.timedelta(days=61)) and not certs.due(outs, 30, now=now + datetime.timedelta(days=59))
    renewed = certs.issue(props, ca=(outs["caPem"], outs["caKeyPem"]), now=now + datetime.timedelta(days=61))
    assert renewed["caPem"] == outs["caPem"] and renewed["clientCertPem"] != outs["clientCertPem"]
    old_client = x509.load_pem_x509_certificate(outs["clientCertPem"].encode())
    assert _signed_by(old_client, x509.load_pem_x509_certificate(renewed["caPem"].encode()))  # running jobs keep working
    assert provider.diff("id", outs, {**props, "project": "acme-api"}).replaces == ["project"]
    key = x509.load_pem_x509_certificate(outs["serverCertPem"].encode()).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)


# --- the pack ---------------------------------------------------------------------------------------------


def test_the_warm_stack_passes_its_pack(pack: PolicyPack, warm_run: ProgramRun) -> None:
    assert mandatory(pack, resources_of(warm_run)) == []


def _container(props: dict[str, Any]) -> dict[str, Any]:
    return props["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda p: p["spec"].update(replicas=2), "replicas 2"),
        (lambda p: p["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox"}), "exactly one container"),
        (
            lambda p: _container(p).update(image="evil.example/moby/buildkit:v0.25.1-rootless"),
            "is not admitted by the runner's allowed_images",
        ),
        (lambda p: _container(p).update(args=["--addr", "tcp://0.0.0.0:1234"]), "a TCP address without --tlscacert"),
        (lambda p: _container(p)["args"].extend(["--addr", "tcp://0.0.0.0:2375"]), "--addr 'tcp://0.0.0.0:2375'"),
        (lambda p: _container(p).update(env=[{"name": "BUILDKITD_FLAGS", "value": "--addr tcp://0.0.0.0:2375"}]), "no environment"),
        (
            lambda p: p["spec"]["template"]["spec"]["volumes"][0]["secret"].update(secretName="buildkitd-acme-api-tls"),
            "exactly one Secret volume, its own",
        ),
        (lambda p: p["spec"]["template"]["spec"].update(automountServiceAccountToken=True), "automountServiceAccountToken must be false"),
        (
            lambda p: p["spec"]["template"]["metadata"]["labels"].update({"gitlab-buildkit-runner/project": "acme-api"}),
            "one project per daemon",
        ),
        (lambda p: p["spec"]["template"]["spec"]["volumes"].append({"name": "cache", "emptyDir": {}}), "only its TLS Secret"),
        # the flags hidden in a shell: no --addr token for the TLS check to see
        (
            lambda p: _container(p).update(command=["sh", "-c"], args=["rootlesskit buildkitd --addr tcp://0.0.0.0:1234"]),
            "exactly ['rootlesskit', 'buildkitd']",
        ),
    ],
)
def test_a_daemon_that_is_not_as_designed_is_refused(
    pack: PolicyPack, warm_run: ProgramRun, change: Callable[[dict[str, Any]], None], fragment: str
) -> None:
    found = messages(pack, changed(resources_of(warm_run), STATEFULSET, "builder-acme-web-daemon", change), "warm-builders-as-designed")
    assert any(fragment in m for m in found), found


def test_a_workload_elsewhere_claiming_to_be_a_daemon_is_checked_as_one(pack: PolicyPack, warm_run: ProgramRun) -> None:
    """Another kind, another namespace: a Deployment in the job namespace labelled buildkitd."""
    sts = next(r for r in warm_run.of_type(STATEFULSET) if r.name == "builder-acme-web-daemon")
    props = copy.deepcopy(dict(unwrap_secrets(sts.inputs)))
    props["metadata"].update(namespace="gitlab-runner-jobs", name="buildkitd-shadow")
    props["spec"].pop("volumeClaimTemplates")
    intruder = ResourceInput(
        "kubernetes:apps/v1:Deployment", "shadow", "urn:pulumi:dev::gitlab-buildkit-runner::kubernetes:apps/v1:Deployment::shadow", props
    )
    found = messages(pack, [*resources_of(warm_run), intruder], "warm-builders-as-designed")
    assert any("must be a StatefulSet" in m for m in found) and any("only in a builders namespace" in m for m in found), found


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda p: p["spec"].update(type="NodePort"), "type 'NodePort'"),
        (lambda p: p["spec"].update(externalIPs=["203.0.113.9"]), "no external IPs"),
        (lambda p: p["spec"]["ports"][0].update(port=2375), "port 2375"),
        (lambda p: p["spec"].pop("selector"), "without a selector"),
    ],
)
def test_a_daemon_service_reachable_otherwise_is_refused(
    pack: PolicyPack, warm_run: ProgramRun, change: Callable[[dict[str, Any]], None], fragment: str
) -> None:
    found = messages(
        pack, changed(resources_of(warm_run), "kubernetes:core/v1:Service", "builder-acme-web-service", change), "warm-builders-as-designed"
    )
    assert any(fragment in m for m in found), found


@pytest.mark.parametrize(
    "peer",
    [
        {"ipBlock": {"cidr": "0.0.0.0/0"}},
        {"namespaceSelector": {}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "default"}}},
        {"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "Exists"}]}},
    ],
)
def test_the_builders_namespace_admits_nobody_else(pack: PolicyPack, warm_run: ProgramRun, peer: dict[str, Any]) -> None:
    def widen(props: dict[str, Any]) -> None:
        props["spec"]["ingress"][0]["from"].append(peer)

    found = messages(
        pack,
        changed(resources_of(warm_run), "kubernetes:networking.k8s.io/v1:NetworkPolicy", "builders-buildkitd-ingress", widen),
        "warm-builders-as-designed",
    )
    assert any("only pods of the job namespace 'gitlab-runner-jobs'" in m for m in found), found


@pytest.mark.parametrize(
    ("key", "change", "fragment"),
    [
        ("BUILDKIT_TLS_KEY_B64", {"protected": False}, "must be protected"),
        ("BUILDKIT_TLS_KEY_B64", {"masked": False}, "must be masked"),
        ("BUILDKIT_TLS_CERT_B64", {"masked": False}, "must be masked"),
        ("BUILDKIT_HOST", {"protected": False}, "must be protected"),
        ("AWS_SECRET_ACCESS_KEY", {"protected": False}, "must be protected"),
        ("BUILDKIT_TLS_KEY_B64", {"key": "buildkit_tls_key_b64"}, "are spelled 'BUILDKIT_TLS_KEY_B64'"),
    ],
)
def test_credential_variables_stay_protected_and_masked(
    pack: PolicyPack, warm_run: ProgramRun, key: str, change: dict[str, Any], fragment: str
) -> None:
    target = next(r for r in warm_run.of_type("gitlab:index/projectVariable:ProjectVariable") if r.inputs["key"] == key)
    found = messages(
        pack, changed(resources_of(warm_run), target.type, target.name, lambda p: p.update(change)), "gitlab-credential-variables-protected"
    )
    assert any(fragment in m for m in found), found


def test_a_first_preview_of_a_warm_stack_passes_the_pack(pack: PolicyPack) -> None:
    """Nothing exists yet: certificates (and the restart hash derived from them) are unknown; the checks read only known fields."""
    run = run_program(make_config(builders=WARM), preview=True)
    assert mandatory(pack, resources_of(run)) == []


def test_the_daemons_egress_never_reaches_the_metadata_service(pack: PolicyPack, warm_run: ProgramRun) -> None:
    def open_metadata(props: dict[str, Any]) -> None:
        props["spec"]["egress"].append({"to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}]})

    found = messages(
        pack,
        changed(resources_of(warm_run), "kubernetes:networking.k8s.io/v1:NetworkPolicy", "builders-buildkitd-egress", open_metadata),
        "warm-builders-as-designed",
    )
    assert any("builders namespace: NetworkPolicy 'buildkitd-egress'" in m and "169.254.169.254" in m for m in found), found


MODES = {
    "confined": {"jobSecurityMode": "confined", "nodeOs": "ubuntu-24.04", "nodeSelector": {"kubernetes.io/arch": "amd64"}},
    "unconfined": {"jobSecurityMode": "unconfined", "acknowledgeUnconfined": True},
}


def mode_run(mode: str) -> ProgramRun:
    return run_program(make_config(builders=WARM, runner={"scope": {"type": "project_type", "projectId": 1}, **MODES[mode]}))


@pytest.mark.parametrize("mode", ["confined", "unconfined"])
def test_a_warm_daemon_gets_the_build_containers_profiles_and_passes_the_pack(pack: PolicyPack, mode: str) -> None:
    run = mode_run(mode)
    sts = next(r for r in run.of_type(STATEFULSET) if r.name == "builder-acme-web-daemon")
    context = sts.inputs["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    namespaces = {r.inputs["metadata"]["name"]: r.inputs["metadata"] for r in run.of_type("kubernetes:core/v1:Namespace")}
    jobs, builders = namespaces["gitlab-runner-jobs"], namespaces["gitlab-runner-builders"]
    assert builders["labels"] == jobs["labels"]
    assert {k: v for k, v in builders["annotations"].items() if "builders-for" not in k} == jobs["annotations"]
    if mode == "confined":
        assert context["seccompProfile"]["type"] == "Localhost"
        assert context["seccompProfile"]["localhostProfile"] == jobs["annotations"]["gitlab-buildkit-runner/seccomp-profile"]
    else:
        assert context["seccompProfile"] == {"type": "Unconfined"} and context["appArmorProfile"] == {"type": "Unconfined"}
    assert mandatory(pack, resources_of(run)) == []


@pytest.mark.parametrize(
    ("mode", "change", "fragment"),
    [
        # another Localhost profile than the build containers' (a node file the pack cannot see)
        ("confined", lambda c: c["seccompProfile"].update(localhostProfile="profiles/anything.json"), "seccompProfile"),
        ("confined", lambda c: c.update(seccompProfile={"type": "Unconfined"}), "seccompProfile"),
        ("confined", lambda c: c.pop("seccompProfile"), "seccompProfile None"),
        ("unconfined", lambda c: c.update(appArmorProfile={"type": "Localhost", "localhostProfile": "evil"}), "appArmorProfile"),
    ],
)
def test_a_daemon_with_other_profiles_than_the_build_containers_is_refused(
    pack: PolicyPack, mode: str, change: Callable[[dict[str, Any]], None], fragment: str
) -> None:
    run = mode_run(mode)
    found = messages(
        pack,
        changed(resources_of(run), STATEFULSET, "builder-acme-web-daemon", lambda p: change(_container(p)["securityContext"])),
        "warm-builders-as-designed",
    )
    assert any(fragment in m and "as the build containers" in m for m in found), found


def test_a_builders_namespace_cannot_claim_another_mode_than_the_jobs(pack: PolicyPack, warm_run: ProgramRun) -> None:
    """Baseline jobs; a builders namespace marked unconfined and privileged would let its daemons run Unconfined."""

    def escalate(props: dict[str, Any]) -> None:
        props["metadata"]["annotations"]["gitlab-buildkit-runner/job-security-mode"] = "unconfined"
        props["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "privileged"

    found = messages(
        pack, changed(resources_of(warm_run), "kubernetes:core/v1:Namespace", "builders-namespace", escalate), "warm-builders-as-designed"
    )
    assert any("differs from the job namespace's" in m for m in found), found


def test_a_workload_elsewhere_cannot_borrow_the_daemons_profile_exemption(pack: PolicyPack) -> None:
    """A Deployment in the job namespace labelled buildkitd with the confined Localhost profile: the Pod
    Security policies leave its profiles to the daemon check, which refuses it (not in a builders namespace)."""
    run = mode_run("confined")
    sts = next(r for r in run.of_type(STATEFULSET) if r.name == "builder-acme-web-daemon")
    props = copy.deepcopy(dict(unwrap_secrets(sts.inputs)))
    props["metadata"].update(namespace="gitlab-runner-jobs", name="buildkitd-borrow")
    intruder = ResourceInput(
        "kubernetes:apps/v1:Deployment", "borrow", "urn:pulumi:dev::gitlab-buildkit-runner::kubernetes:apps/v1:Deployment::borrow", props
    )
    found = messages(pack, [*resources_of(run), intruder], "warm-builders-as-designed")
    assert any("Deployment 'buildkitd-borrow'" in m and "the runtime default" in m for m in found), found
    assert "warm-builders-as-designed" in mandatory(pack, [*resources_of(run), intruder])


def test_long_project_paths_get_distinct_valid_names_labels_and_certificates() -> None:
    """Two projects whose paths share their first 60 characters: names within Kubernetes' limits (a
    StatefulSet's pods add -0 to 52, a label value 63), distinct, and certificate names within X.509's 64."""
    prefix = "acme/" + "platform-" * 6 + "services"
    apps = [{"name": "one", "projectPath": f"{prefix}/builder-one"}, {"name": "two", "projectPath": f"{prefix}/builder-two"}]
    run = run_program(make_config(builders=WARM, registry={"region": "eu-west-1", "applications": apps}))
    daemons = [r.inputs for r in run.of_type(STATEFULSET)]
    names = [d["metadata"]["name"] for d in daemons]
    assert len(set(names)) == 2 and all(len(n) <= 52 for n in names), names
    for daemon in daemons:
        labels = daemon["spec"]["template"]["metadata"]["labels"]
        assert all(len(v) <= 63 for v in labels.values()), labels
    keys = {r.inputs["metadata"]["name"] for r in run.of_type("kubernetes:core/v1:Secret") if r.inputs["metadata"]["name"].endswith("-tls")}
    assert keys == {f"{n}-tls" for n in names}
