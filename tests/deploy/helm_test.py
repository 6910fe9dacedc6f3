#!/usr/bin/python3
"""deploy/helm/tandem: its YAML, its value references, the manifests it
renders, and the command lines it gives the containers, run for real.

usage: helm_test.py TANDEM CHART_DIR CONTAINERFILE MODELS_DIR

Helm is not installed in CI, so the chart is rendered by gotmpl.py (the Go
template subset the chart uses; anything else fails). Checks:
- Chart.yaml and values.yaml parse; Chart.yaml has what Helm v3 needs;
- every .Values path the templates use exists in values.yaml, and every
  value in values.yaml is used by some template;
- the chart renders with the defaults and with every option on; each
  document is YAML with a kind and a name; selectors match pod labels;
  probes name declared ports; mounts name declared volumes; the workers'
  --router points at the control Service, which publishes the router before
  it is ready (the router is ready only once workers registered);
  terminationGracePeriodSeconds outlasts --drain-timeout-ms;
- the router, prefill and decode containers' args (defaults, plus free
  loopback ports and an API key; then again with the disk tier on) start
  the real binary:
  $(POD_IP) and $(POD_NAME) expanded as the kubelet does, the control
  Service's name resolved to 127.0.0.1, the image's paths mapped to this
  checkout (the model directory from the Containerfile's COPY), volumes to
  temporary directories, the Secret to a file. Every probe answers 200, the
  router's /metrics (with the key) shows both workers registered, the
  workers' ids are their pod names; without the disk tier a chat completion
  crosses prefill -> UCX (tcp, the chart's UCX_TLS) -> decode, with it each
  store is on its volume; SIGTERM stops all three with status 0.
"""
import copy
import glob
import os
import re
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gotmpl  # noqa: E402
from deploylib import Proc, chat, families, free_ports, http, wait_http  # noqa: E402
from container_test import parse_containerfile  # noqa: E402

TANDEM, CHART, CONTAINERFILE, MODELS = sys.argv[1:5]
RELEASE = {"Name": "t", "Namespace": "serving", "Service": "Helm",
           "IsInstall": True, "IsUpgrade": False}
ROLES = ("prefill", "decode")
# Everything optional on, for the render checks.
ALL_ON = {
    "model.id": "tiny", "model.volume.type": "pvc", "model.volume.claimName": "models",
    "apiKeys.keys": ["k1"], "ucx.netDevices": "eth0",
    "router.extraArgs": ["--ctx", "4096"], "router.resources.requests": {"cpu": 1},
    "metrics.serviceMonitor.enabled": True, "metrics.podMonitor.enabled": True,
    "metrics.labels": {"release": "prom"}, "podAnnotations": {"a": "b"},
    "imagePullSecrets": [{"name": "reg"}], "nodeSelector": {"gpu": "h200"},
    "tolerations": [{"key": "gpu", "operator": "Exists"}],
    "affinity": {"podAntiAffinity": {}},
    "router.service.annotations": {"x": "y"},
}
for _r in ROLES:
    ALL_ON.update({_r + ".kvStore.enabled": True, _r + ".kvStore.storageClassName": "fast",
                   _r + ".gpus": 1, _r + ".threads": 4, _r + ".extraArgs": ["--ctx", "4096"],
                   _r + ".resources.limits": {"memory": "64Gi"}})
ALL_ON["decode.kvRegionMib"] = 512


def load_chart():
    with open(os.path.join(CHART, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    with open(os.path.join(CHART, "values.yaml")) as f:
        values = yaml.safe_load(f)
    for key in ("apiVersion", "name", "version"):
        assert key in chart, "Chart.yaml: no " + key
    assert chart["apiVersion"] == "v2", "Chart.yaml: apiVersion v2 (Helm 3)"
    templates = {os.path.basename(p): open(p).read()
                 for p in sorted(glob.glob(os.path.join(CHART, "templates", "*")))}
    return chart, values, templates


def leaves(v, prefix=""):
    if isinstance(v, dict) and v:
        for k, x in v.items():
            yield from leaves(x, prefix + "." + k)
    else:
        yield prefix


def check_references(values, templates):
    """Every .Values.a.b used exists; every value is used. `$w` is
    `index $.Values $role` in workers.yaml: each role's values."""
    used, missing = set(), []
    for name, src in templates.items():
        for path in re.findall(r"\.Values((?:\.\w+)+)", src):
            used.add(path)
        if name == "workers.yaml":
            # Role-specific keys sit under `if eq $role ...`: a $w path must
            # exist for some role (the strict renderer, which runs every
            # branch with ALL_ON, fails on one missing where it is read).
            assert "{{- $w := index $.Values $role }}" in src
            for path in re.findall(r"\$w((?:\.\w+)+)", src):
                have = {"." + role + path for role in ROLES if exists(values, "." + role + path)}
                used |= have
                if not have:
                    missing.append("$w" + path)
    missing += [p for p in used if not exists(values, p)]
    assert not missing, "templates use values that values.yaml lacks: %s" % sorted(missing)
    unused = [leaf for leaf in leaves(values)
              if not any(leaf == u or leaf.startswith(u + ".") for u in used)]
    assert not unused, "values.yaml keys no template reads: %s" % unused
    return len(used)


def exists(values, path):
    v = values
    for k in path[1:].split("."):
        if not isinstance(v, dict) or k not in v:
            return False
        v = v[k]
    return True


def render(chart, values, templates, overrides):
    values = copy.deepcopy(values)
    for k, v in overrides.items():
        gotmpl.set_path(values, k, v)
    r = gotmpl.Renderer(values, {"Name": chart["name"], "Version": chart["version"],
                                 "AppVersion": chart.get("appVersion", "")}, RELEASE)
    trees = {name: r.load(name, src) for name, src in templates.items()}
    docs, notes = [], None
    for name, tree in trees.items():
        if name.startswith("_"):
            continue
        out = r.render(tree)
        if name == "NOTES.txt":
            notes = out
            continue
        try:
            docs += [d for d in yaml.safe_load_all(out) if d is not None]
        except yaml.YAMLError as e:
            raise AssertionError("%s does not render to YAML: %s\n%s" % (name, e, out))
    return docs, notes


def pod_specs(docs):
    """{workload name: (workload, pod spec)} of Deployments and StatefulSets."""
    return {d["metadata"]["name"]: (d, d["spec"]["template"]["spec"])
            for d in docs if d["kind"] in ("Deployment", "StatefulSet")}


def check_manifests(docs, values):
    seen = set()
    for d in docs:
        assert d.get("apiVersion") and d.get("kind") and d["metadata"].get("name"), d
        key = (d["kind"], d["metadata"]["name"])
        assert key not in seen, "two %s" % (key,)
        seen.add(key)
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    for name, (w, spec) in pod_specs(docs).items():
        labels = w["spec"]["template"]["metadata"]["labels"]
        for k, v in w["spec"]["selector"]["matchLabels"].items():
            assert labels.get(k) == v, "%s: selector %s=%s not on its pods" % (name, k, v)
        if w["kind"] == "StatefulSet":
            assert w["spec"]["serviceName"] in services, name + ": no headless Service"
        volumes = {v["name"] for v in spec.get("volumes") or []}
        volumes |= {c["metadata"]["name"] for c in w["spec"].get("volumeClaimTemplates", [])}
        for c in spec["containers"]:
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe in c:
                    assert c[probe]["httpGet"]["port"] in ports, "%s: %s port" % (name, probe)
            for m in c.get("volumeMounts") or []:
                assert m["name"] in volumes, "%s: mount of unknown volume %s" % (name, m["name"])
            args = c["args"]
            assert all(isinstance(a, str) for a in args), "%s: args must be strings" % name
            if args[0] in ROLES:
                url = args[args.index("--router") + 1]
                m = re.match(r"tcp://([^.:]+)\.%s\.svc:(\d+)$" % RELEASE["Namespace"], url)
                assert m, "%s: --router %s" % (name, url)
                svc = services.get(m.group(1))
                assert svc and svc["spec"].get("publishNotReadyAddresses"), \
                    "%s: --router must reach the router before it is ready" % name
                assert int(m.group(2)) in [p["port"] for p in svc["spec"]["ports"]]
                drain = int(args[args.index("--drain-timeout-ms") + 1])
                assert spec["terminationGracePeriodSeconds"] * 1000 > drain, \
                    "%s: terminationGracePeriodSeconds shorter than the drain" % name
    for d in docs:
        if d["kind"] == "Service":
            sel = d["spec"]["selector"]
            assert any(all(w["spec"]["template"]["metadata"]["labels"].get(k) == v
                           for k, v in sel.items()) for w, _ in pod_specs(docs).values()), \
                "Service %s selects no pods" % d["metadata"]["name"]


# ------------------------------------------------------------ the real run

def kube_env(workload, container):
    """The container's environment as the kubelet would set it on pod 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UCX_")}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            path = e["valueFrom"]["fieldRef"]["fieldPath"]
            env[e["name"]] = {"metadata.name": workload["metadata"]["name"] + "-0"
                              if workload["kind"] == "StatefulSet" else "router-pod",
                              "status.podIP": "127.0.0.1"}[path]
    return env


def local_argv(args, env, mounts):
    """$(VAR) expanded, the control Service's DNS name resolved to loopback,
    paths under the container's mounts mapped to local directories."""
    out = []
    for a in args:
        a = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a)
        a = re.sub(r"tcp://[\w-]+\.%s\.svc:" % RELEASE["Namespace"], "tcp://127.0.0.1:", a)
        for inside, local in mounts.items():
            if a == inside or a.startswith(inside + "/"):
                a = local + a[len(inside):]
        out.append(a)
    return [TANDEM] + out


def run_for_real(chart, values, templates, kv_store):
    """One install's three pods as processes. Without the disk tier: a
    request crosses prefill -> UCX -> decode before the stop. With it: the
    stores are on their volumes, the disk tier's families are exported, and
    the states the request left in memory go to disk at the stop (exit 0,
    which an ASan build makes fail on any leak)."""
    ports = free_ports(6)
    over = {"router.httpPort": ports[0], "router.controlPort": ports[1],
            "prefill.controlPort": ports[2], "prefill.metricsPort": ports[3],
            "decode.controlPort": ports[4], "decode.metricsPort": ports[5],
            "prefill.threads": 1, "decode.threads": 1,
            "prefill.kvStore.enabled": kv_store, "decode.kvStore.enabled": kv_store,
            "apiKeys.keys": ["deploy-test-key"]}
    docs, _ = render(chart, values, templates, over)
    check_manifests(docs, values)
    secret = next(d for d in docs if d["kind"] == "Secret")
    cf = parse_containerfile(CONTAINERFILE)
    image_model = cf["copies"].get("models/tiny-v4")
    assert image_model, "the Containerfile copies models/tiny-v4 into the image"

    procs = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for name, (w, spec) in sorted(pod_specs(docs).items(),
                                          key=lambda kv: kv[1][0]["kind"] != "Deployment"):
                c = spec["containers"][0]
                mounts = {image_model: os.path.join(MODELS, "tiny-v4")}
                for m in c.get("volumeMounts") or []:
                    local = os.path.join(tmp, name, m["name"])
                    os.makedirs(local)
                    if m["name"] == "api-keys":
                        for k, v in secret["stringData"].items():
                            with open(os.path.join(local, k), "w") as f:
                                f.write(v)
                    mounts[m["mountPath"]] = local
                env = kube_env(w, c)
                procs[c["name"]] = (Proc(local_argv(c["args"], env, mounts), env=env),
                                    c, env, mounts)
            auth = {"Authorization": "Bearer deploy-test-key"}
            running = [p for p, *_ in procs.values()]
            for role, (p, c, env, mounts) in procs.items():
                ports_by_name = {q["name"]: q["containerPort"] for q in c["ports"]}
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    if probe in c:
                        g = c[probe]["httpGet"]
                        wait_http("http://127.0.0.1:%d%s" % (ports_by_name[g["port"]], g["path"]),
                                  procs=running)
            base = "http://127.0.0.1:%d" % ports[0]
            assert http(base + "/metrics")[0] == 401, "/metrics without the key"
            # /ready says one worker is there (one kind can answer whole);
            # both register within a heartbeat or two
            deadline = time.monotonic() + 20
            while True:
                text = wait_http(base + "/metrics", headers=auth)
                if all('tandem_workers{role="%s"} 1' % r in text for r in ROLES):
                    break
                assert time.monotonic() < deadline, "workers not registered:\n" + text
                time.sleep(0.05)
            fams = families(text)
            assert "tandem_placements_total" in fams
            assert chat(base, auth) == 200
            for role in ROLES:
                p, c, env, mounts = procs[role]
                port = [q["containerPort"] for q in c["ports"] if q["name"] == "metrics"][0]
                wtext = http("http://127.0.0.1:%d/metrics" % port)[1]
                assert 'worker_id="%s"' % env["POD_NAME"] in wtext, wtext
                if kv_store:
                    assert "tandem_kvstore_bytes_used" in wtext, role + ": no disk tier"
                    kv = [m for m in c["volumeMounts"] if m["name"] == "kv"][0]
                    assert os.path.isdir(os.path.join(mounts[kv["mountPath"]], "store")), \
                        role + ": the store is not on its volume"
                else:
                    # prefill counts its transfer on decode's ack, which may
                    # come after the answer
                    deadline = time.monotonic() + 10
                    while not re.search(r"^tandem_kv_transfers_total 1$", wtext, re.M):
                        assert time.monotonic() < deadline, \
                            role + ": the request's state did not cross over UCX:\n" + wtext
                        time.sleep(0.05)
                        wtext = http("http://127.0.0.1:%d/metrics" % port)[1]
            problems = []
            for role in ("prefill", "decode", "router"):
                p = procs[role][0]
                rc = p.stop()
                if rc != 0:
                    problems.append("%s exited %d after SIGTERM:\n%s" % (role, rc, p.text()))
            assert not problems, "\n".join(problems)
        finally:
            for p, *_ in procs.values():
                if p.proc.poll() is None:
                    p.proc.kill()
                    p.proc.wait()
    return [" ".join(procs[r][0].argv[1:]) for r in ("router", "prefill", "decode")]


def main():
    chart, values, templates = load_chart()
    n = check_references(values, templates)
    print("ok: %d .Values paths, all in values.yaml; every value used" % n)
    for label, over in (("defaults", {}), ("every option on", ALL_ON),
                        ("hostPath model", {"model.volume.type": "hostPath",
                                            "model.volume.hostPath": "/data/m"})):
        docs, notes = render(chart, values, templates, over)
        check_manifests(docs, values)
        assert notes and "port-forward" in notes
        print("ok: renders with %s: %s" % (label, ", ".join(
            "%s/%s" % (d["kind"], d["metadata"]["name"]) for d in docs)))
    for kv_store in (False, True):
        for argv in run_for_real(chart, values, templates, kv_store):
            print("ok: ran tandem " + argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
